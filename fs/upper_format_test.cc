#include "fs/upper_format.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <gtest/gtest.h>

namespace strata::fs {
namespace {

TEST(OverrideStatTest, ParsesContainersStorageForms) {
  auto o = ParseOverrideStat("1000:1001:0644", S_IFREG);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->uid, 1000u);
  EXPECT_EQ(o->gid, 1001u);
  EXPECT_EQ(o->mode, S_IFREG | 0644u);

  auto d = ParseOverrideStat("0:0:04755:dir", S_IFREG);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->mode, S_IFDIR | 04755u);

  auto c = ParseOverrideStat("0:0:0620:char-136-3", S_IFREG);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->mode & S_IFMT, static_cast<mode_t>(S_IFCHR));
  EXPECT_EQ(major(c->rdev), 136u);
  EXPECT_EQ(minor(c->rdev), 3u);
}

TEST(OverrideStatTest, RejectsMalformedValues) {
  for (const char* bad : {"", "1:2", "a:0:0644", "0:0:999", "0:0:0644:weird",
                          "0:0:0644:char-1", "0:0:0644:block-x-1"})
    EXPECT_FALSE(ParseOverrideStat(bad, S_IFREG)) << bad;
}

TEST(OverrideStatTest, FormatRoundTrips) {
  for (OverrideStat o : {OverrideStat{1, 2, S_IFREG | 0600, 0},
                         OverrideStat{0, 0, S_IFIFO | 0644, 0},
                         OverrideStat{5, 6, S_IFBLK | 0660, makedev(8, 1)},
                         OverrideStat{0, 0, S_IFDIR | 01777, 0}}) {
    auto back = ParseOverrideStat(FormatOverrideStat(o), S_IFREG);
    ASSERT_TRUE(back) << FormatOverrideStat(o);
    EXPECT_EQ(back->uid, o.uid);
    EXPECT_EQ(back->gid, o.gid);
    EXPECT_EQ(back->mode, o.mode);
    EXPECT_EQ(back->rdev, o.rdev);
  }
}

TEST(UpperFormatTest, NamesFollowTheNamespace) {
  UpperFormat root(XattrNs::kTrusted), user(XattrNs::kUser);
  EXPECT_EQ(root.Opaque(), "trusted.overlay.opaque");
  EXPECT_EQ(user.Opaque(), "user.overlay.opaque");
  EXPECT_EQ(root.Redirect(), "trusted.overlay.redirect");
  EXPECT_EQ(user.Origin(), "user.strata.origin");
  EXPECT_EQ(root.OtherOpaque(), "user.overlay.opaque");
}

TEST(UpperFormatTest, PrivateXattrsAreTheUnionsOwn) {
  for (const char* n : {"trusted.overlay.opaque", "user.overlay.redirect",
                        "trusted.strata.origin", "user.strata.nlink"})
    EXPECT_TRUE(UpperFormat::IsPrivateXattr(n)) << n;
  for (const char* n : {"user.overlayfs", "user.test", "security.capability",
                        "system.posix_acl_access", "trusted.other",
                        "user.containers.override_stat"})
    EXPECT_FALSE(UpperFormat::IsPrivateXattr(n)) << n;
}

}  // namespace
}  // namespace strata::fs
