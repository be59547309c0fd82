#include "layerdb/posix_acl.h"

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include "layerdb/base/temp_dir.h"

namespace strata::layerdb {
namespace {

// user::rw-, user:1001:rw-, group::r--, mask::rw-, other::r--, exactly as
// getxattr(2) returned it on ext4 after `setfacl -m u:1001:rw` on a 0644
// file (getfattr -e hex).
const std::string kKernelAcl(
    "\x02\x00\x00\x00"
    "\x01\x00\x06\x00\xff\xff\xff\xff"
    "\x02\x00\x06\x00\xe9\x03\x00\x00"
    "\x04\x00\x04\x00\xff\xff\xff\xff"
    "\x10\x00\x06\x00\xff\xff\xff\xff"
    "\x20\x00\x04\x00\xff\xff\xff\xff",
    44);

std::vector<AclEntry> KernelAclEntries() {
  return {{AclTag::kUserObj, 6, kAclUndefinedId},
          {AclTag::kUser, 6, 1001},
          {AclTag::kGroupObj, 4, kAclUndefinedId},
          {AclTag::kMask, 6, kAclUndefinedId},
          {AclTag::kOther, 4, kAclUndefinedId}};
}

TEST(PosixAclTest, ParsesKernelFormat) {
  auto acl = ParseAclXattr(kKernelAcl);
  ASSERT_TRUE(acl) << acl.error().ToString();
  EXPECT_EQ(*acl, KernelAclEntries());
}

TEST(PosixAclTest, EncodeSortsIntoKernelOrder) {
  std::vector<AclEntry> shuffled = KernelAclEntries();
  std::swap(shuffled[0], shuffled[4]);
  std::swap(shuffled[1], shuffled[3]);
  shuffled[0].id = 7;  // a qualifier on other:: is meaningless and dropped
  EXPECT_EQ(EncodeAclXattr(shuffled), kKernelAcl);
}

TEST(PosixAclTest, NamedEntriesSortById) {
  std::vector<AclEntry> acl = {{AclTag::kUserObj, 7, kAclUndefinedId},
                               {AclTag::kGroup, 5, 300},
                               {AclTag::kUser, 1, 20},
                               {AclTag::kGroup, 4, 100},
                               {AclTag::kUser, 2, 10},
                               {AclTag::kGroupObj, 5, kAclUndefinedId},
                               {AclTag::kMask, 7, kAclUndefinedId},
                               {AclTag::kOther, 0, kAclUndefinedId}};
  auto back = ParseAclXattr(EncodeAclXattr(acl));
  ASSERT_TRUE(back);
  ASSERT_EQ(back->size(), acl.size());
  EXPECT_EQ((*back)[1], (AclEntry{AclTag::kUser, 2, 10}));
  EXPECT_EQ((*back)[2], (AclEntry{AclTag::kUser, 1, 20}));
  EXPECT_EQ((*back)[4], (AclEntry{AclTag::kGroup, 4, 100}));
  EXPECT_EQ((*back)[5], (AclEntry{AclTag::kGroup, 5, 300}));
}

TEST(PosixAclTest, RejectsMalformedValues) {
  std::string bad_version = kKernelAcl;
  bad_version[0] = 1;
  std::string bad_tag = kKernelAcl;
  bad_tag[4] = 0x40;
  std::string bad_perm = kKernelAcl;
  bad_perm[6] = 8;
  for (const std::string& v :
       {std::string(), std::string("\x02\x00\x00", 3), kKernelAcl + "x",
        bad_version, bad_tag, bad_perm}) {
    auto acl = ParseAclXattr(v);
    ASSERT_FALSE(acl) << v.size();
    EXPECT_EQ(acl.error().code(), EINVAL);
  }
  EXPECT_TRUE(ParseAclXattr(std::string("\x02\x00\x00\x00", 4)));
}

TEST(PosixAclTest, IsAclXattrNamesBothKinds) {
  EXPECT_TRUE(IsAclXattr("system.posix_acl_access"));
  EXPECT_TRUE(IsAclXattr("system.posix_acl_default"));
  EXPECT_FALSE(IsAclXattr("user.posix_acl_access"));
  EXPECT_FALSE(IsAclXattr("system.posix_acl"));
}

struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

TEST(PosixAclTest, ArchiveEntryRoundTripRestoresXattrAndMode) {
  EntryPtr e(archive_entry_new());
  // A kernel mode with an ACL mask carries the mask in its group bits.
  archive_entry_set_mode(e.get(), S_IFREG | 02664);
  ASSERT_TRUE(
      AddAclToArchiveEntry(e.get(), kAclAccessXattr, KernelAclEntries()));
  std::vector<AclEntry> dflt = {{AclTag::kUserObj, 7, kAclUndefinedId},
                                {AclTag::kGroup, 5, 50},
                                {AclTag::kGroupObj, 5, kAclUndefinedId},
                                {AclTag::kMask, 5, kAclUndefinedId},
                                {AclTag::kOther, 0, kAclUndefinedId}};
  ASSERT_TRUE(AddAclToArchiveEntry(e.get(), kAclDefaultXattr, dflt));
  // Like bsdtar, the tar header then carries the owning group's bits.
  EXPECT_EQ(archive_entry_mode(e.get()), static_cast<mode_t>(S_IFREG | 02644));
  // archive_entry_acl_to_text returns a malloc'd string the caller frees.
  std::unique_ptr<char, decltype(&free)> text(
      archive_entry_acl_to_text(e.get(), nullptr,
                                ARCHIVE_ENTRY_ACL_TYPE_ACCESS),
      &free);
  ASSERT_NE(text, nullptr);
  EXPECT_STREQ(text.get(),
               "user::rw-\ngroup::r--\nother::r--\nuser:1001:rw-\nmask::rw-");

  auto back = AclXattrsFromArchiveEntry(e.get());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->mode, static_cast<uint32_t>(S_IFREG | 02664));
  ASSERT_EQ(back->xattrs.size(), 2u);
  EXPECT_EQ(back->xattrs[0].name, kAclAccessXattr);
  EXPECT_EQ(back->xattrs[0].value, kKernelAcl);
  EXPECT_EQ(back->xattrs[1].name, kAclDefaultXattr);
  EXPECT_EQ(back->xattrs[1].value, EncodeAclXattr(dflt));
}

TEST(PosixAclTest, ModeTakesGroupBitsFromTheMask) {
  // setfacl -m u:1000:r on a 0600 file: the kernel shows 0640.
  std::vector<AclEntry> acl = {{AclTag::kUserObj, 6, kAclUndefinedId},
                               {AclTag::kUser, 4, 1000},
                               {AclTag::kGroupObj, 0, kAclUndefinedId},
                               {AclTag::kMask, 4, kAclUndefinedId},
                               {AclTag::kOther, 0, kAclUndefinedId}};
  // Whatever the permission bits were, type and suid/sgid/sticky stay.
  EXPECT_EQ(ModeWithAccessAcl(S_IFREG | 06777, acl), S_IFREG | 06640u);
  EXPECT_EQ(ModeWithAccessAcl(S_IFDIR | 01000, acl), S_IFDIR | 01640u);
  // Without a mask the group bits are group::'s.
  std::vector<AclEntry> minimal = {{AclTag::kUserObj, 7, kAclUndefinedId},
                                   {AclTag::kGroupObj, 5, kAclUndefinedId},
                                   {AclTag::kOther, 1, kAclUndefinedId}};
  EXPECT_EQ(ModeWithAccessAcl(S_IFREG | 0, minimal), S_IFREG | 0751u);
  // Missing entries leave their bits alone.
  EXPECT_EQ(
      ModeWithAccessAcl(S_IFREG | 0123, {{AclTag::kMask, 6, kAclUndefinedId}}),
      S_IFREG | 0163u);
}

// GNU tar's header carries the mask (st_mode); libarchive overwrites the
// group bits with group:: when it parses the ACL text.
TEST(PosixAclTest, ArchiveModeWithTheMaskWhateverTheHeaderHad) {
  for (mode_t header : {S_IFREG | 0640, S_IFREG | 0600}) {
    EntryPtr e(archive_entry_new());
    archive_entry_set_mode(e.get(), header);
    ASSERT_EQ(
        archive_entry_acl_from_text(
            e.get(), "user::rw-,user:1000:r--,group::---,mask::r--,other::---",
            ARCHIVE_ENTRY_ACL_TYPE_ACCESS),
        ARCHIVE_OK);
    auto back = AclXattrsFromArchiveEntry(e.get());
    ASSERT_TRUE(back) << back.error().ToString();
    EXPECT_EQ(back->mode, static_cast<uint32_t>(S_IFREG | 0640)) << header;
    ASSERT_EQ(back->xattrs.size(), 1u);
  }
}

TEST(PosixAclTest, TrivialAccessAclGivesNoXattr) {
  EntryPtr e(archive_entry_new());
  archive_entry_set_mode(e.get(), S_IFREG | 0640);
  auto back = AclXattrsFromArchiveEntry(e.get());
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->xattrs.empty());
  EXPECT_EQ(back->mode, static_cast<uint32_t>(S_IFREG | 0640));
}

TEST(PosixAclTest, TextWithoutMaskGetsTheSetfaclMask) {
  EntryPtr e(archive_entry_new());
  archive_entry_set_mode(e.get(), S_IFREG | 0600);
  ASSERT_EQ(archive_entry_acl_from_text(e.get(),
                                        "user::rw-,user:7:r-x,group::-w-,"
                                        "other::---",
                                        ARCHIVE_ENTRY_ACL_TYPE_ACCESS),
            ARCHIVE_OK);
  auto back = AclXattrsFromArchiveEntry(e.get());
  ASSERT_TRUE(back) << back.error().ToString();
  ASSERT_EQ(back->xattrs.size(), 1u);
  auto acl = ParseAclXattr(back->xattrs[0].value);
  ASSERT_TRUE(acl);
  ASSERT_EQ(acl->size(), 5u);
  EXPECT_EQ((*acl)[3], (AclEntry{AclTag::kMask, 7, kAclUndefinedId}));
  EXPECT_EQ(back->mode, static_cast<uint32_t>(S_IFREG | 0670));
}

TEST(PosixAclTest, NameWithoutIdIsEinval) {
  EntryPtr e(archive_entry_new());
  archive_entry_set_mode(e.get(), S_IFREG | 0600);
  ASSERT_EQ(
      archive_entry_acl_add_entry(e.get(), ARCHIVE_ENTRY_ACL_TYPE_ACCESS, 4,
                                  ARCHIVE_ENTRY_ACL_USER, -1, "somebody"),
      ARCHIVE_OK);
  auto back = AclXattrsFromArchiveEntry(e.get());
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), EINVAL);
  EXPECT_NE(back.error().detail().find("somebody"), std::string::npos);
}

// The oracle: what the kernel itself stores for an ACL set by setfacl(1),
// and what getfacl(1) reads from bytes we encoded.
TEST(PosixAclTest, MatchesTheKernel) {
  if (std::system("command -v setfacl >/dev/null && command -v getfacl "
                  ">/dev/null") != 0)
    GTEST_SKIP() << "setfacl/getfacl not installed (Debian package acl)";
  auto scratch = TempDir::Make("/tmp/strata-acl-");
  ASSERT_TRUE(scratch) << scratch.error().ToString();
  std::string dir = scratch->path();
  std::string file = dir + "/f";
  ASSERT_EQ(std::system(("touch " + file + " && chmod 0644 " + file).c_str()),
            0);
  if (std::system(("setfacl -m u:1001:rw " + file + " 2>/dev/null").c_str()) !=
      0)
    GTEST_SKIP() << "the filesystem of /tmp does not support POSIX ACLs";
  char buf[256];
  ssize_t n =
      ::getxattr(file.c_str(), "system.posix_acl_access", buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), kKernelAcl);

  std::string mine = EncodeAclXattr({{AclTag::kUserObj, 7, kAclUndefinedId},
                                     {AclTag::kGroup, 5, 4242},
                                     {AclTag::kGroupObj, 1, kAclUndefinedId},
                                     {AclTag::kMask, 5, kAclUndefinedId},
                                     {AclTag::kOther, 0, kAclUndefinedId}});
  ASSERT_EQ(::setxattr(file.c_str(), "system.posix_acl_access", mine.data(),
                       mine.size(), 0),
            0)
      << errno;
  std::string out = dir + "/out";
  ASSERT_EQ(std::system(("getfacl -n -c " + file + " > " + out).c_str()), 0);
  std::string text;
  if (FILE* f = std::fopen(out.c_str(), "r")) {
    size_t got = std::fread(buf, 1, sizeof buf, f);
    text.assign(buf, got);
    std::fclose(f);
  }
  EXPECT_EQ(text,
            "user::rwx\ngroup::--x\ngroup:4242:r-x\nmask::r-x\nother::---\n\n");
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
}

}  // namespace
}  // namespace strata::layerdb
