#include "fs/dir_lower.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "layerdb/base/sys.h"
#include "layerdb/base/temp_dir.h"

namespace strata::fs {
namespace {

namespace stdfs = std::filesystem;

// The three ways a directory is made opaque.
enum class OpaqueForm { kTrustedXattr, kUserXattr, kOciMarker };

class DirLowerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = TempDir::Make("/tmp/dir_lower_test.");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    tmp_ = scratch_->path();
  }

  // Layer i's root (0 = topmost), created on first use.
  std::string L(int i) {
    std::string path = tmp_ + "/L" + std::to_string(i);
    ::mkdir(path.c_str(), 0755);
    return path;
  }
  std::string P(int layer, const std::string& rel) {
    return L(layer) + "/" + rel;
  }

  void Dir(int layer, const std::string& rel) {
    std::error_code ec;
    stdfs::create_directories(P(layer, rel), ec);
    ASSERT_FALSE(ec) << P(layer, rel) << ": " << ec.message();
  }
  void File(int layer, const std::string& rel, const std::string& data = "") {
    ASSERT_NO_FATAL_FAILURE(Dir(layer, stdfs::path(rel).parent_path()));
    ASSERT_TRUE(sys::WriteFileAtomic(P(layer, rel), data)) << P(layer, rel);
  }
  void Symlink(int layer, const std::string& rel, const std::string& target) {
    ASSERT_EQ(::symlink(target.c_str(), P(layer, rel).c_str()), 0)
        << P(layer, rel);
  }
  // Sets an xattr; false (with the test skipped) where the host refuses it.
  bool SetXattr(int layer, const std::string& rel, const std::string& name,
                const std::string& value) {
    std::string path = P(layer, rel);
    if (::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(),
                    0) == 0)
      return true;
    int err = errno;
    if (err == EPERM || err == ENOTSUP) {
      skipped_ = name + " on " + path + ": " + strerrordesc_np(err);
      return false;
    }
    ADD_FAILURE() << "lsetxattr " << name << " " << path << ": "
                  << strerrordesc_np(err);
    return false;
  }
  // A 0/0 character device; false (skip) when mknod needs root.
  bool CharWhiteout(int layer, const std::string& rel) {
    if (::mknod(P(layer, rel).c_str(), S_IFCHR | 0000, makedev(0, 0)) == 0)
      return true;
    int err = errno;
    if (err == EPERM) {
      skipped_ = "mknod 0/0 needs root (CAP_MKNOD)";
      return false;
    }
    ADD_FAILURE() << "mknod " << P(layer, rel) << ": " << strerrordesc_np(err);
    return false;
  }
  void MakeOpaque(int layer, const std::string& rel, OpaqueForm form) {
    switch (form) {
      case OpaqueForm::kTrustedXattr:
        SetXattr(layer, rel, "trusted.overlay.opaque", "y");
        return;
      case OpaqueForm::kUserXattr:
        SetXattr(layer, rel, "user.overlay.opaque", "y");
        return;
      case OpaqueForm::kOciMarker:
        File(layer, rel + "/.wh..wh..opq");
        return;
    }
  }

  // Opens layers 0..n-1.
  std::unique_ptr<DirLowerSource> Open(int n) {
    std::vector<std::string> dirs;
    dirs.reserve(n);
    for (int i = 0; i < n; ++i)
      dirs.push_back(L(i));
    auto src = DirLowerSource::Open(dirs);
    EXPECT_TRUE(src) << src.error().ToString();
    return src ? std::move(*src) : nullptr;
  }

  // The entry at a '/'-separated path from the root, nullopt if absent.
  static std::optional<LowerEntry> Find(LowerSource& src,
                                        const std::string& path) {
    LowerEntry e = src.Root();
    for (const auto& comp : stdfs::path(path)) {
      auto r = src.Lookup(e.ref, comp.string());
      EXPECT_TRUE(r) << path << ": " << r.error().ToString();
      if (!r || !*r) return std::nullopt;
      e = **r;
    }
    return e;
  }
  static std::vector<std::string> Names(LowerSource& src, LowerRef dir) {
    std::vector<std::string> names;
    Status s = src.ReadDir(dir, 0, [&](const LowerDirEntry& e) {
      names.emplace_back(e.name);
      return true;
    });
    EXPECT_TRUE(s) << s.error().ToString();
    return names;
  }
  std::vector<std::string> NamesAt(LowerSource& src, const std::string& path) {
    if (path.empty()) return Names(src, src.Root().ref);
    auto e = Find(src, path);
    EXPECT_TRUE(e) << path;
    return e ? Names(src, e->ref) : std::vector<std::string>{};
  }
  static std::string Content(LowerSource& src, LowerRef ref) {
    auto c = src.OpenContent(ref);
    EXPECT_TRUE(c) << c.error().ToString();
    if (!c) return "";
    EXPECT_TRUE(c->in_blob());
    std::string out(c->size, '\0');
    EXPECT_EQ(::pread(c->fd.get(), out.data(), out.size(), 0),
              static_cast<ssize_t>(out.size()));
    return out;
  }
  // The st_ino the contract gives the object at `host_path` in `layer`.
  static uint64_t ExpectedIno(int layer, const std::string& host_path) {
    struct stat st {};
    EXPECT_EQ(::lstat(host_path.c_str(), &st), 0) << host_path;
    return ((static_cast<uint64_t>(layer) + 1) << 48) | st.st_ino;
  }

  std::optional<TempDir> scratch_;
  std::string tmp_;
  std::string skipped_;  // why a helper could not build the case
};

using Strings = std::vector<std::string>;

TEST_F(DirLowerTest, PlainMergeShowsEveryLayer) {
  File(0, "a", "a0");
  File(1, "b", "b1");
  File(2, "c", "c2");
  File(0, "d/x");
  File(2, "d/y");
  auto src = Open(3);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"a", "b", "c", "d"}));
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"x", "y"}));
  EXPECT_EQ(Content(*src, Find(*src, "c")->ref), "c2");
}

TEST_F(DirLowerTest, FileHidesLowerFileAndOpenContentReadsItsLayer) {
  File(0, "f", "top");
  File(1, "f", "bottom bytes");
  File(1, "g", "only below");
  auto src = Open(2);
  ASSERT_TRUE(src);
  auto f = Find(*src, "f");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->st.st_size, 3);
  EXPECT_EQ(Content(*src, f->ref), "top");
  EXPECT_EQ(Content(*src, Find(*src, "g")->ref), "only below");
}

TEST_F(DirLowerTest, DirOverFileAndFileOverDir) {
  File(0, "x/inside");  // dir over file
  File(1, "x", "file");
  File(0, "y", "file");  // file over dir
  File(1, "y/inside");
  auto src = Open(2);
  ASSERT_TRUE(src);
  auto x = Find(*src, "x");
  ASSERT_TRUE(x);
  EXPECT_TRUE(S_ISDIR(x->st.st_mode));
  EXPECT_EQ(NamesAt(*src, "x"), (Strings{"inside"}));
  auto y = Find(*src, "y");
  ASSERT_TRUE(y);
  EXPECT_TRUE(S_ISREG(y->st.st_mode));
  EXPECT_EQ(Content(*src, y->ref), "file");
  auto in_y = src->Lookup(y->ref, "inside");
  ASSERT_TRUE(in_y);
  EXPECT_FALSE(*in_y);
}

TEST_F(DirLowerTest, DirectoryMergesSkipNonDirectoryBetween) {
  // Kernel rule: a non-directory in a middle layer ends the merge of a
  // directory above it, even if a directory of that name lies further down.
  File(0, "d/top");
  File(1, "d", "file");
  File(2, "d/bottom");
  auto src = Open(3);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"top"}));
}

TEST_F(DirLowerTest, CharDeviceWhiteoutHidesLowerName) {
  Dir(0, "d");
  if (!CharWhiteout(0, "f") || !CharWhiteout(0, "d/sub"))
    GTEST_SKIP() << skipped_;
  File(1, "f", "hidden");
  File(1, "keep");
  File(1, "d/sub/deep");
  File(1, "d/other");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"d", "keep"}));
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"other"}));
  auto f = src->Lookup(src->Root().ref, "f");
  ASSERT_TRUE(f);
  EXPECT_FALSE(*f);
}

TEST_F(DirLowerTest, CharDeviceWhiteoutWithNothingBelowIsNotShown) {
  if (!CharWhiteout(0, "gone")) GTEST_SKIP() << skipped_;
  // Since Linux 5.8 anyone may make a 0/0 whiteout; other devices need root.
  if (::mknod(P(0, "null").c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0)
    GTEST_SKIP() << "mknod 1/3: " << strerrordesc_np(errno);
  auto src = Open(1);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"null"}));  // a real device stays
  auto null = Find(*src, "null");
  ASSERT_TRUE(null);
  EXPECT_TRUE(S_ISCHR(null->st.st_mode));
  EXPECT_EQ(null->st.st_rdev, makedev(1, 3));
}

TEST_F(DirLowerTest, OciWhiteoutHidesLowerNameAndIsNeverShown) {
  File(0, ".wh.f");
  File(0, ".wh.d");
  File(1, "f", "hidden");
  File(1, "d/sub");
  File(1, "keep");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"keep"}));
  for (const char* name : {"f", "d", ".wh.f", ".wh.d"}) {
    auto r = src->Lookup(src->Root().ref, name);
    ASSERT_TRUE(r) << name;
    EXPECT_FALSE(*r) << name;
  }
}

TEST_F(DirLowerTest, OciWhiteoutDoesNotHideNameInItsOwnLayer) {
  // image-spec layer.md: whiteouts apply to lower layers only. A directory
  // beside its own whiteout is therefore recreated, not merged.
  File(0, ".wh.d");
  File(0, "d/new");
  File(1, "d/old");
  File(0, ".wh.f");
  File(0, "f", "new");
  File(1, "f", "old");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"d", "f"}));
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"new"}));
  EXPECT_EQ(Content(*src, Find(*src, "f")->ref), "new");
}

TEST_F(DirLowerTest, WhiteoutInMiddleLayerEndsDirectoryMerge) {
  File(0, "d/top");
  File(1, ".wh.d");
  File(2, "d/bottom");
  auto src = Open(3);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"top"}));
}

class XattrWhiteoutTest : public DirLowerTest,
                          public ::testing::WithParamInterface<const char*> {};

TEST_P(XattrWhiteoutTest, HidesLowerNameInsideOpaqueXDirectory) {
  const std::string ns = GetParam();  // "trusted" or "user"
  Dir(0, "d");
  File(0, "d/gone");          // zero-size: the whiteout
  File(0, "d/kept", "data");  // has the xattr, but is not empty
  if (!SetXattr(0, "d", ns + ".overlay.opaque", "x") ||
      !SetXattr(0, "d/gone", ns + ".overlay.whiteout", "") ||
      !SetXattr(0, "d/kept", ns + ".overlay.whiteout", ""))
    GTEST_SKIP() << skipped_;
  File(1, "d/gone", "lower");
  File(1, "d/lower_only", "merged, since \"x\" is not opaque");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"kept", "lower_only"}));
  auto d = Find(*src, "d");
  ASSERT_TRUE(d);
  auto gone = src->Lookup(d->ref, "gone");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(*gone);
}

TEST_P(XattrWhiteoutTest, IsAPlainFileOutsideOpaqueXDirectory) {
  const std::string ns = GetParam();
  File(0, "d/f");
  if (!SetXattr(0, "d/f", ns + ".overlay.whiteout", ""))
    GTEST_SKIP() << skipped_;
  File(1, "d/f", "lower");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"f"}));
  EXPECT_EQ(Content(*src, Find(*src, "d/f")->ref), "");
}

INSTANTIATE_TEST_SUITE_P(BothNamespaces, XattrWhiteoutTest,
                         ::testing::Values("trusted", "user"));

class OpaqueDirTest : public DirLowerTest,
                      public ::testing::WithParamInterface<OpaqueForm> {};

TEST_P(OpaqueDirTest, HidesLowerEntries) {
  File(0, "d/top");
  MakeOpaque(0, "d", GetParam());
  if (!skipped_.empty()) GTEST_SKIP() << skipped_;
  File(1, "d/lower");
  File(1, "d/top", "hidden too");
  File(2, "d/bottom");
  File(1, "beside");
  auto src = Open(3);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"top"}));  // marker never shown
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"beside", "d"}));
  EXPECT_EQ(Find(*src, "d")->st.st_nlink, 2U);
}

TEST_P(OpaqueDirTest, InMiddleLayerStillMergesAbove) {
  File(0, "d/top");
  File(1, "d/middle");
  MakeOpaque(1, "d", GetParam());
  if (!skipped_.empty()) GTEST_SKIP() << skipped_;
  File(2, "d/bottom");
  auto src = Open(3);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, "d"), (Strings{"middle", "top"}));
}

TEST_P(OpaqueDirTest, LayerRootIsNeverOpaque) {
  // The kernel stacks every lower root whatever their xattrs (ovl_get_root).
  File(0, "top");
  MakeOpaque(0, ".", GetParam());
  if (!skipped_.empty()) GTEST_SKIP() << skipped_;
  File(1, "bottom");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"bottom", "top"}));
}

INSTANTIATE_TEST_SUITE_P(EveryForm, OpaqueDirTest,
                         ::testing::Values(OpaqueForm::kTrustedXattr,
                                           OpaqueForm::kUserXattr,
                                           OpaqueForm::kOciMarker));

TEST_F(DirLowerTest, WhiteoutMetadataNamesAreNeverShown) {
  File(0, ".wh..wh.plnk/x");  // aufs hardlink dir
  File(0, ".wh..wh..opq");    // at a layer root: ignored, see above
  File(0, "f");
  File(1, "g");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""), (Strings{"f", "g"}));
  auto r = src->Lookup(src->Root().ref, ".wh..wh.plnk");
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
}

using XattrList = std::vector<std::pair<std::string, std::string>>;

TEST_F(DirLowerTest, UserOverlayXattrsHiddenOthersShown) {
  File(0, "f");
  if (!SetXattr(0, "f", "user.overlay.origin", "x") ||
      !SetXattr(0, "f", "user.test", "value") ||
      !SetXattr(0, "f", "user.overlayfs", "not private"))
    GTEST_SKIP() << skipped_;
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto x = src->Xattrs(Find(*src, "f")->ref);
  ASSERT_TRUE(x) << x.error().ToString();
  EXPECT_EQ(*x, (XattrList{{"user.overlayfs", "not private"},
                           {"user.test", "value"}}));
}

TEST_F(DirLowerTest, TrustedOverlayXattrsHiddenOthersShown) {
  Dir(0, "d");
  if (!SetXattr(0, "d", "trusted.overlay.opaque", "x") ||
      !SetXattr(0, "d", "trusted.other", "t") ||
      !SetXattr(0, "d", "user.overlay.opaque", "y"))
    GTEST_SKIP() << skipped_;
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto x = src->Xattrs(Find(*src, "d")->ref);
  ASSERT_TRUE(x) << x.error().ToString();
  EXPECT_EQ(*x, (XattrList{{"trusted.other", "t"}}));
  auto root = src->Xattrs(src->Root().ref);
  ASSERT_TRUE(root) << root.error().ToString();
}

TEST_F(DirLowerTest, XattrsOfSymlinkAreTheLinksOwn) {
  File(0, "target");
  if (!SetXattr(0, "target", "trusted.mark", "file")) GTEST_SKIP() << skipped_;
  Symlink(0, "link", "target");
  if (!SetXattr(0, "link", "trusted.mark", "link")) GTEST_SKIP() << skipped_;
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto x = src->Xattrs(Find(*src, "link")->ref);
  ASSERT_TRUE(x) << x.error().ToString();
  ASSERT_EQ(x->size(), 1U);
  EXPECT_EQ((*x)[0].second, "link");
}

TEST_F(DirLowerTest, InoIdentity) {
  File(0, "d/top");
  File(1, "d/low");
  File(1, "f");
  ASSERT_EQ(::link(P(1, "f").c_str(), P(1, "hard").c_str()), 0);
  File(0, "solo");
  auto src = Open(2);
  ASSERT_TRUE(src);
  LowerEntry root = src->Root();
  EXPECT_EQ(root.st.st_ino, ExpectedIno(0, L(0)));
  EXPECT_EQ(root.st.st_dev, 0U);
  auto d = Find(*src, "d");
  auto f = Find(*src, "f");
  auto hard = Find(*src, "hard");
  auto low = Find(*src, "d/low");
  ASSERT_TRUE(d && f && hard && low);
  EXPECT_EQ(d->st.st_ino, ExpectedIno(0, P(0, "d")));  // topmost for merged
  EXPECT_EQ(f->st.st_ino, ExpectedIno(1, P(1, "f")));
  EXPECT_EQ(low->st.st_ino, ExpectedIno(1, P(1, "d/low")));
  EXPECT_EQ(hard->st.st_ino, f->st.st_ino);  // hardlinks share st_ino
  EXPECT_NE(hard->ref, f->ref);
  EXPECT_EQ(f->st.st_nlink, 2U);  // the real nlink for non-directories
  EXPECT_EQ(f->st.st_dev, 0U);
  // readdir's st_ino is lookup's, and all stay below the union's range.
  std::map<std::string, uint64_t> inos;
  ASSERT_TRUE(src->ReadDir(root.ref, 0, [&](const LowerDirEntry& e) {
    inos[std::string(e.name)] = e.st_ino;
    auto looked = Find(*src, std::string(e.name));
    EXPECT_TRUE(looked && looked->st.st_ino == e.st_ino && looked->ref == e.ref)
        << e.name;
    EXPECT_EQ(e.type, looked->st.st_mode & S_IFMT) << e.name;
    return true;
  }));
  EXPECT_EQ(inos.size(), 4U);
  for (const auto& [name, ino] : inos)
    EXPECT_LT(ino, kUpperInoBase) << name;
  auto again = src->GetAttr(f->ref);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->st_ino, f->st.st_ino);
}

TEST_F(DirLowerTest, InoIsStableAcrossReopen) {
  File(0, "d/a");
  File(1, "d/b");
  auto first = Open(2);
  auto second = Open(2);
  ASSERT_TRUE(first && second);
  for (const char* path : {"d", "d/a", "d/b"})
    EXPECT_EQ(Find(*first, path)->st.st_ino, Find(*second, path)->st.st_ino)
        << path;
}

TEST_F(DirLowerTest, MergedDirectoryNlinkIsExact) {
  Dir(0, "d/a");
  Dir(0, "d/only_top");
  Dir(1, "d/a");  // merges with the top one: counted once
  Dir(1, "d/b");
  File(1, "d/file");
  Dir(1, "d/hidden");
  File(0, "d/.wh.hidden");
  Dir(1, "d/replaced");
  File(0, "d/replaced", "file over dir");
  auto src = Open(2);
  ASSERT_TRUE(src);
  auto d = Find(*src, "d");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->st.st_nlink, 2U + 3);  // a, only_top, b
  auto attr = src->GetAttr(d->ref);
  ASSERT_TRUE(attr);
  EXPECT_EQ(attr->st_nlink, 2U + 3);
  EXPECT_EQ(src->Root().st.st_nlink, 2U + 1);
  EXPECT_EQ(Find(*src, "d/a")->st.st_nlink, 2U);
}

TEST_F(DirLowerTest, ReadDirIsSortedByBytes) {
  for (const char* name : {"b", "B", "a", "\xc3\xa9", "A0", "_", "a.b"})
    File(0, name);
  File(1, "Z");
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(NamesAt(*src, ""),
            (Strings{"A0", "B", "Z", "_", "a", "a.b", "b", "\xc3\xa9"}));
}

TEST_F(DirLowerTest, ReadDirResumesFromOffsetAndOffsetsAreStable) {
  for (int i = 0; i < 50; ++i)
    File(i % 2, "f" + std::to_string(100 + i));
  auto src = Open(2);
  ASSERT_TRUE(src);
  LowerRef root = src->Root().ref;
  // Read 7 entries, stop; the 8th is not consumed.
  std::vector<std::pair<std::string, uint64_t>> first;
  ASSERT_TRUE(src->ReadDir(root, 0, [&](const LowerDirEntry& e) {
    if (first.size() == 7) return false;
    first.emplace_back(std::string(e.name), e.next_offset);
    return true;
  }));
  ASSERT_EQ(first.size(), 7U);
  std::vector<std::pair<std::string, uint64_t>> rest;
  ASSERT_TRUE(
      src->ReadDir(root, first.back().second, [&](const LowerDirEntry& e) {
        rest.emplace_back(std::string(e.name), e.next_offset);
        return true;
      }));
  ASSERT_EQ(rest.size(), 43U);
  EXPECT_EQ(rest.front().first, "f107");
  EXPECT_EQ(rest.back().first, "f149");
  // A full listing gives the same offsets, all in [1, 2^32).
  std::vector<std::pair<std::string, uint64_t>> all;
  ASSERT_TRUE(src->ReadDir(root, 0, [&](const LowerDirEntry& e) {
    EXPECT_GE(e.next_offset, 1U);
    EXPECT_LT(e.next_offset, uint64_t{1} << 32);
    all.emplace_back(std::string(e.name), e.next_offset);
    return true;
  }));
  first.insert(first.end(), rest.begin(), rest.end());
  EXPECT_EQ(all, first);
  // Past the end: nothing, no error.
  int calls = 0;
  ASSERT_TRUE(src->ReadDir(root, 1000, [&](const LowerDirEntry&) {
    ++calls;
    return true;
  }));
  EXPECT_EQ(calls, 0);
}

TEST_F(DirLowerTest, LookupIsMemoized) {
  File(0, "d/f");
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto a = Find(*src, "d/f");
  auto b = Find(*src, "d/f");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->ref, b->ref);
  EXPECT_EQ(Find(*src, "d")->ref, Find(*src, "d")->ref);
}

// Every path under the root two levels deep -> its ref, looking the
// directories up in an order rotated by `rotation` so that threads race to
// create different nodes first. A failure is recorded as ref 0.
std::map<std::string, LowerRef> LookUpAll(LowerSource& src, int rotation) {
  std::map<std::string, LowerRef> refs;
  for (int i = 0; i < 4; ++i) {
    std::string dir = "d" + std::to_string((i + rotation) % 4);
    auto d = src.Lookup(src.Root().ref, dir);
    if (!d || !*d) {
      refs[dir] = 0;
      continue;
    }
    refs[dir] = (*d)->ref;
    Status s = src.ReadDir((*d)->ref, 0, [&](const LowerDirEntry& e) {
      auto f = src.Lookup((*d)->ref, e.name);
      bool same = f && *f && (*f)->ref == e.ref;
      refs[dir + "/" + std::string(e.name)] = same ? e.ref : 0;
      return true;
    });
    if (!s) refs[dir + "/"] = 0;
  }
  return refs;
}

TEST_F(DirLowerTest, ConcurrentLookupsAgreeOnRefs) {
  for (int i = 0; i < 40; ++i)
    File(i % 3, "d" + std::to_string(i % 4) + "/f" + std::to_string(i));
  auto src = Open(3);
  ASSERT_TRUE(src);
  constexpr int kThreads = 4;
  std::vector<std::map<std::string, LowerRef>> seen(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { seen[t] = LookUpAll(*src, t); });
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(seen[0].size(), 44U);
  for (const auto& [path, ref] : seen[0])
    EXPECT_NE(ref, 0U) << path;
  for (int t = 1; t < kThreads; ++t)
    EXPECT_EQ(seen[t], seen[0]);
}

TEST_F(DirLowerTest, SymlinkTarget) {
  Symlink(0, "abs", "/usr/lib");
  Symlink(1, "rel", "../x/y");
  File(0, "f");
  auto src = Open(2);
  ASSERT_TRUE(src);
  auto abs = Find(*src, "abs");
  ASSERT_TRUE(abs);
  EXPECT_TRUE(S_ISLNK(abs->st.st_mode));
  auto target = src->ReadLink(abs->ref);
  ASSERT_TRUE(target) << target.error().ToString();
  EXPECT_EQ(*target, "/usr/lib");
  target = src->ReadLink(Find(*src, "rel")->ref);
  ASSERT_TRUE(target);
  EXPECT_EQ(*target, "../x/y");
  auto not_link = src->ReadLink(Find(*src, "f")->ref);
  ASSERT_FALSE(not_link);
  EXPECT_EQ(not_link.error().code(), EINVAL);
}

TEST_F(DirLowerTest, LongSymlinkTarget) {
  std::string target(1000, 'x');
  Symlink(0, "long", target);
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto got = src->ReadLink(Find(*src, "long")->ref);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, target);
}

TEST_F(DirLowerTest, SymlinkInLayerIsNeverFollowed) {
  Symlink(0, "evil", "/etc");
  Symlink(0, "up", "../../..");
  Symlink(0, "etc", "/etc");  // a symlink over a directory hides it
  File(1, "etc/passwd", "layer's own");
  auto src = Open(2);
  ASSERT_TRUE(src);
  for (const char* link : {"evil", "up", "etc"}) {
    auto e = Find(*src, link);
    ASSERT_TRUE(e) << link;
    EXPECT_TRUE(S_ISLNK(e->st.st_mode)) << link;
    auto passwd = src->Lookup(e->ref, "passwd");
    ASSERT_TRUE(passwd) << passwd.error().ToString();
    EXPECT_FALSE(*passwd) << link;
    Status s =
        src->ReadDir(e->ref, 0, [](const LowerDirEntry&) { return true; });
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code(), ENOTDIR);
    auto content = src->OpenContent(e->ref);
    ASSERT_FALSE(content);
    EXPECT_EQ(content.error().code(), EINVAL);
  }
}

TEST_F(DirLowerTest, SymlinkedLayerPathComponentIsNeverFollowed) {
  // A directory swapped for a symlink after it was listed must not lead
  // outside the layer: paths are resolved with RESOLVE_NO_SYMLINKS.
  File(0, "d/passwd", "inside");
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto d = Find(*src, "d");
  ASSERT_TRUE(d);
  stdfs::remove_all(P(0, "d"));
  Symlink(0, "d", "/etc");
  auto passwd = src->Lookup(d->ref, "passwd");
  ASSERT_FALSE(passwd);  // resolving d/passwd now fails
  EXPECT_TRUE(passwd.error().code() == ELOOP ||
              passwd.error().code() == ENOTDIR)
      << passwd.error().ToString();
}

TEST_F(DirLowerTest, OpenContentErrors) {
  Dir(0, "d");
  ASSERT_EQ(::mkfifo(P(0, "fifo").c_str(), 0644), 0);
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto dir = src->OpenContent(Find(*src, "d")->ref);
  ASSERT_FALSE(dir);
  EXPECT_EQ(dir.error().code(), EISDIR);
  auto fifo = Find(*src, "fifo");
  ASSERT_TRUE(fifo);
  EXPECT_TRUE(S_ISFIFO(fifo->st.st_mode));
  auto content = src->OpenContent(fifo->ref);
  ASSERT_FALSE(content);
  EXPECT_EQ(content.error().code(), EINVAL);
}

TEST_F(DirLowerTest, OpenOfMissingDirectoryNamesIt) {
  std::string missing = tmp_ + "/no/such/dir";
  auto src = DirLowerSource::Open({L(0), missing});
  ASSERT_FALSE(src);
  EXPECT_EQ(src.error().code(), ENOENT);
  std::string msg = src.error().ToString();
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;

  File(0, "file");
  auto not_dir = DirLowerSource::Open({P(0, "file")});
  ASSERT_FALSE(not_dir);
  EXPECT_EQ(not_dir.error().code(), ENOTDIR);
  EXPECT_NE(not_dir.error().ToString().find(P(0, "file")), std::string::npos);

  auto none = DirLowerSource::Open({});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), EINVAL);
}

TEST_F(DirLowerTest, BadRefsAndNames) {
  File(0, "f");
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto attr = src->GetAttr(12345);
  ASSERT_FALSE(attr);
  EXPECT_EQ(attr.error().code(), ENOENT);
  LowerRef root = src->Root().ref;
  for (const char* bad : {"", ".", "..", "a/b"}) {
    auto r = src->Lookup(root, bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), EINVAL) << bad;
  }
  auto long_name = src->Lookup(root, std::string(256, 'x'));
  ASSERT_FALSE(long_name);
  EXPECT_EQ(long_name.error().code(), ENAMETOOLONG);
  auto in_file = src->Lookup(Find(*src, "f")->ref, "x");
  ASSERT_TRUE(in_file);
  EXPECT_FALSE(*in_file);
  Status s = src->ReadDir(Find(*src, "f")->ref, 0,
                          [](const LowerDirEntry&) { return true; });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOTDIR);
}

TEST_F(DirLowerTest, StatFsIsTheTopLayers) {
  File(0, "f");
  auto src = Open(1);
  ASSERT_TRUE(src);
  auto sv = src->StatFs();
  ASSERT_TRUE(sv) << sv.error().ToString();
  struct statvfs expected {};
  ASSERT_EQ(::statvfs(L(0).c_str(), &expected), 0);
  EXPECT_EQ(sv->f_fsid, expected.f_fsid);
  EXPECT_GT(sv->f_bsize, 0U);
}

TEST_F(DirLowerTest, AttributesComeFromTheSupplyingLayer) {
  File(0, "d/x");
  File(1, "d/y");
  ASSERT_EQ(::chmod(P(0, "d").c_str(), 0700), 0);
  ASSERT_EQ(::chmod(P(1, "d").c_str(), 0755), 0);
  File(1, "f", "12345");
  ASSERT_EQ(::chmod(P(1, "f").c_str(), 0604), 0);
  auto src = Open(2);
  ASSERT_TRUE(src);
  EXPECT_EQ(Find(*src, "d")->st.st_mode, S_IFDIR | 0700U);
  auto f = Find(*src, "f");
  EXPECT_EQ(f->st.st_mode, S_IFREG | 0604U);
  EXPECT_EQ(f->st.st_size, 5);
  EXPECT_NE(f->st.st_atim.tv_sec, 0);
  EXPECT_NE(f->st.st_ctim.tv_sec, 0);
}

}  // namespace
}  // namespace strata::fs
