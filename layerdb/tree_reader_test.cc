#include "layerdb/tree_reader.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "layerdb/base/sys.h"
#include "layerdb/base/temp_dir.h"
#include "layerdb/layer_builder.h"
#include "layerdb/store.h"

// Counts operator new calls while g_count_allocations is set, to check that
// the read path does not allocate. Not under ASan, which must keep its own
// operator new to check new/delete pairing.
#ifndef __SANITIZE_ADDRESS__
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<int> g_allocations{0};
}  // namespace

void* operator new(size_t n) {
  if (g_count_allocations) ++g_allocations;
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
// noinline: inlined after a new-expression, g++ 12 takes free() for a
// mismatched pair (-Wmismatched-new-delete).
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
#endif

namespace strata::layerdb {
namespace {

struct Listed {
  std::string name;
  uint64_t ino;
  uint32_t type;
  uint64_t next_offset;
};

class TreeReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = TempDir::Make("/tmp/strata-reader-test.");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    root_ = scratch_->path();
    auto store = Store::Open(root_, Store::Mode::kReadWrite);
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    scratch_.reset();
  }

  Node Blob(const std::string& data, uint32_t perm = 0644) {
    Node n;
    n.attr.mode = S_IFREG | perm;
    auto key = store_->blobs().Put(data);
    EXPECT_TRUE(key) << key.error().ToString();
    if (key) n.blob = *key;
    n.flags |= kFlagBlob;
    n.attr.size = data.size();
    return n;
  }
  static Node Inline(std::string data, uint32_t perm = 0644) {
    Node n;
    n.attr.mode = S_IFREG | perm;
    n.attr.size = data.size();
    n.flags |= kFlagInline;
    n.inline_data = std::move(data);
    return n;
  }
  static Node Dir(uint32_t perm = 0755, uint32_t uid = 0) {
    Node n;
    n.attr.mode = S_IFDIR | perm;
    n.attr.uid = uid;
    return n;
  }
  static Node Symlink(std::string target) {
    Node n;
    n.attr.mode = S_IFLNK | 0777;
    n.attr.size = target.size();
    n.target = std::move(target);
    return n;
  }
  static void Add(LayerBuilder& b, std::string_view path, Node node) {
    Status s = b.Add(path, std::move(node));
    ASSERT_TRUE(s) << path << ": " << s.error().ToString();
  }
  static void Link(LayerBuilder& b, std::string_view path,
                   std::string_view target) {
    Status s = b.AddHardlink(path, target);
    ASSERT_TRUE(s) << path << ": " << s.error().ToString();
  }

  TreeId Commit(const LayerBuilder& b) {
    auto layer = store_->CommitLayer(b, LayerInfo{});
    EXPECT_TRUE(layer) << layer.error().ToString();
    return layer ? layer->id : 0;
  }
  // The view of `layers` (bottom first), through an image as the fs sees it.
  TreeId View(const std::vector<TreeId>& layers) {
    auto image = store_->CreateImage("t:1", layers, nlohmann::json::object());
    EXPECT_TRUE(image) << image.error().ToString();
    return image ? image->view : 0;
  }

  TreeReader Reader() {
    auto r = TreeReader::Begin(*store_);
    EXPECT_TRUE(r) << r.error().ToString();
    return std::move(*r);
  }

  // The inode at `path`, 0 when a component is missing.
  static uint64_t Ino(const TreeReader& r, TreeId view, std::string_view path) {
    uint64_t ino = kRootIno;
    auto parts = SplitMemberPath(path);
    if (!parts) return 0;
    for (std::string_view comp : *parts) {
      auto e = r.Lookup(view, ino, comp);
      EXPECT_TRUE(e) << e.error().ToString();
      if (!e || !*e) return 0;
      ino = (*e)->ino;
    }
    return ino;
  }
  static Attr AttrOf(const TreeReader& r, TreeId view, std::string_view path) {
    uint64_t ino = Ino(r, view, path);
    auto a = r.GetAttr(view, ino);
    EXPECT_TRUE(a && *a) << path;
    return a && *a ? **a : Attr{};
  }
  static std::vector<Listed> List(const TreeReader& r, TreeId view,
                                  uint64_t dir, uint64_t offset = 0) {
    std::vector<Listed> out;
    Status s = r.ReadDir(view, dir, offset, [&](const DirEntry& e) {
      out.push_back({std::string(e.name), e.ino, e.type, e.next_offset});
      return true;
    });
    EXPECT_TRUE(s) << s.error().ToString();
    return out;
  }
  static std::vector<std::string> Names(const TreeReader& r, TreeId view,
                                        std::string_view path) {
    std::vector<std::string> names;
    for (const Listed& e : List(r, view, Ino(r, view, path)))
      names.push_back(e.name);
    return names;
  }

  std::optional<TempDir> scratch_;
  std::string root_;
  std::unique_ptr<Store> store_;
};

using NameList = std::vector<std::string>;

TEST_F(TreeReaderTest, LookupHitAndMiss) {
  LayerBuilder b;
  Add(b, "etc", Dir());
  Add(b, "etc/passwd", Inline("root:x:0:0::/root:/bin/sh\n"));
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();

  auto etc = r.Lookup(view, kRootIno, "etc");
  ASSERT_TRUE(etc) << etc.error().ToString();
  ASSERT_TRUE(*etc);
  EXPECT_TRUE((*etc)->attr.is_dir());
  auto passwd = r.Lookup(view, (*etc)->ino, "passwd");
  ASSERT_TRUE(passwd && *passwd);
  EXPECT_TRUE((*passwd)->attr.is_reg());
  EXPECT_EQ((*passwd)->attr.size, 26u);
  EXPECT_NE((*passwd)->ino, (*etc)->ino);

  auto miss = r.Lookup(view, (*etc)->ino, "shadow");
  ASSERT_TRUE(miss);
  EXPECT_FALSE(*miss);
  auto in_file = r.Lookup(view, (*passwd)->ino, "x");
  ASSERT_TRUE(in_file);
  EXPECT_FALSE(*in_file);
  auto other_tree = r.Lookup(view + 100, kRootIno, "etc");
  ASSERT_TRUE(other_tree);
  EXPECT_FALSE(*other_tree);
  auto too_long = r.Lookup(view, kRootIno, std::string(256, 'a'));
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code(), ENAMETOOLONG);
  auto longest = r.Lookup(view, kRootIno, std::string(255, 'a'));
  ASSERT_TRUE(longest);
  EXPECT_FALSE(*longest);
}

TEST_F(TreeReaderTest, GetAttrReturnsStoredAttrs) {
  LayerBuilder b;
  Node f = Inline("x", 04755);
  f.attr.uid = 1000;
  f.attr.gid = 100;
  f.attr.mtime_ns = 1700000000123456789;
  Add(b, "suid", f);
  Node dev;
  dev.attr.mode = S_IFCHR | 0666;
  dev.attr.rdev = makedev(1, 3);
  Add(b, "null", dev);
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();

  auto root = r.GetAttr(view, kRootIno);
  ASSERT_TRUE(root && *root);
  EXPECT_TRUE((*root)->is_dir());
  Attr a = AttrOf(r, view, "suid");
  EXPECT_EQ(a.mode, S_IFREG | 04755u);
  EXPECT_EQ(a.uid, 1000u);
  EXPECT_EQ(a.gid, 100u);
  EXPECT_EQ(a.mtime_ns, 1700000000123456789);
  EXPECT_EQ(AttrOf(r, view, "null").rdev, makedev(1, 3));

  auto missing = r.GetAttr(view, 999999);
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);
  auto node = r.GetNode(view, Ino(r, view, "suid"));
  ASSERT_TRUE(node && *node);
  EXPECT_EQ((*node)->inline_data(), "x");
}

TEST_F(TreeReaderTest, DirectoryNlinkIsTwoPlusSubdirectories) {
  LayerBuilder b;
  Add(b, "a/x/deep", Dir());
  Add(b, "a/y", Dir());
  Add(b, "a/f", Inline(""));
  Add(b, "b", Dir());
  Add(b, "f", Inline(""));
  LayerBuilder b2;
  Add(b2, "a/z", Dir());
  Add(b2, "c/sub", Dir());
  TreeId view = View({Commit(b), Commit(b2)});
  TreeReader r = Reader();
  EXPECT_EQ(AttrOf(r, view, "").nlink, 2u + 3u);   // a, b, c
  EXPECT_EQ(AttrOf(r, view, "a").nlink, 2u + 3u);  // x, y, z
  EXPECT_EQ(AttrOf(r, view, "a/x").nlink, 3u);
  EXPECT_EQ(AttrOf(r, view, "b").nlink, 2u);
  EXPECT_EQ(AttrOf(r, view, "c").nlink, 3u);
  EXPECT_EQ(AttrOf(r, view, "f").nlink, 1u);
}

TEST_F(TreeReaderTest, HardlinksShareAnInodeAndCountTheirNames) {
  LayerBuilder b;
  Add(b, "bin/busybox", Blob("#!busybox"));
  Link(b, "bin/sh", "bin/busybox");
  Link(b, "sbin/init", "bin/busybox");
  Add(b, "other", Inline("o"));
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();
  uint64_t ino = Ino(r, view, "bin/busybox");
  EXPECT_EQ(Ino(r, view, "bin/sh"), ino);
  EXPECT_EQ(Ino(r, view, "sbin/init"), ino);
  EXPECT_NE(Ino(r, view, "other"), ino);
  EXPECT_EQ(AttrOf(r, view, "bin/sh").nlink, 3u);
  // d_ino from readdir is st_ino.
  for (const Listed& e : List(r, view, Ino(r, view, "bin")))
    EXPECT_EQ(e.ino, ino) << e.name;
}

TEST_F(TreeReaderTest, HardlinkGroupKeepsItsOtherNamesWhenOneIsReplaced) {
  LayerBuilder b1;
  Add(b1, "a", Blob("old"));
  Link(b1, "b", "a");
  Link(b1, "c", "a");
  LayerBuilder b2;
  Add(b2, "a", Blob("new"));
  TreeId view = View({Commit(b1), Commit(b2)});
  TreeReader r = Reader();
  EXPECT_EQ(Ino(r, view, "b"), Ino(r, view, "c"));
  EXPECT_NE(Ino(r, view, "a"), Ino(r, view, "b"));
  EXPECT_EQ(AttrOf(r, view, "a").nlink, 1u);
  EXPECT_EQ(AttrOf(r, view, "b").nlink, 2u);
  auto c = r.OpenContent(view, Ino(r, view, "c"));
  ASSERT_TRUE(c) << c.error().ToString();
  ASSERT_TRUE(c->in_blob());
  char buf[8];
  ASSERT_EQ(::pread(c->fd.get(), buf, sizeof buf, 0), 3);
  EXPECT_EQ(std::string_view(buf, 3), "old");
}

TEST_F(TreeReaderTest, ExternalHardlinkJoinsTheLowerInode) {
  LayerBuilder b1;
  Add(b1, "usr/bin/python3.11", Blob("python"));
  LayerBuilder b2(/*allow_external_links=*/true);
  Link(b2, "usr/bin/python3", "usr/bin/python3.11");
  TreeId view = View({Commit(b1), Commit(b2)});
  TreeReader r = Reader();
  uint64_t ino = Ino(r, view, "usr/bin/python3.11");
  EXPECT_EQ(Ino(r, view, "usr/bin/python3"), ino);
  EXPECT_EQ(AttrOf(r, view, "usr/bin/python3").nlink, 2u);
  EXPECT_EQ(AttrOf(r, view, "usr/bin/python3").size, 6u);
}

TEST_F(TreeReaderTest, WhiteoutsAndOpaqueDirectoriesAcrossThreeLayers) {
  LayerBuilder b1;
  Add(b1, "etc/a", Inline("a"));
  Add(b1, "etc/b", Inline("b"));
  Add(b1, "var/cache/x", Inline("x"));
  Add(b1, "opt/app/old", Inline("old"));
  Add(b1, "lib", Dir());
  Add(b1, "lib/mod", Inline("m"));
  Add(b1, "run", Inline("a file"));
  LayerBuilder b2;
  Add(b2, "etc/.wh.a", Inline(""));
  Add(b2, "var/cache/.wh..wh..opq", Inline(""));
  Add(b2, "var/cache/y", Inline("y"));
  Add(b2, ".wh.opt", Inline(""));
  Add(b2, "opt/app/mid", Inline("mid"));  // re-created: opaque
  Add(b2, "lib", Inline("file over dir"));
  Add(b2, "run", Dir(0711));  // dir over file
  Add(b2, "run/lock", Dir());
  LayerBuilder b3;
  Add(b3, "etc/a", Inline("back"));
  Add(b3, "opt/app/top", Inline("top"));
  Add(b3, ".wh.lib", Inline(""));
  TreeId view = View({Commit(b1), Commit(b2), Commit(b3)});
  TreeReader r = Reader();
  EXPECT_EQ(Names(r, view, ""), NameList({"etc", "opt", "run", "var"}));
  EXPECT_EQ(Names(r, view, "etc"), NameList({"a", "b"}));
  auto a = r.OpenContent(view, Ino(r, view, "etc/a"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->inline_data, "back");
  EXPECT_EQ(Names(r, view, "var/cache"), NameList({"y"}));
  EXPECT_EQ(Names(r, view, "opt/app"), NameList({"mid", "top"}));
  EXPECT_EQ(AttrOf(r, view, "run").mode, S_IFDIR | 0711u);
  EXPECT_EQ(Names(r, view, "run"), NameList({"lock"}));
  EXPECT_EQ(Ino(r, view, "lib"), 0u);

  // The middle view (two layers) is a different tree with file-over-dir.
  TreeId mid = View({Commit(b1), Commit(b2)});
  TreeReader r2 = Reader();
  EXPECT_NE(mid, view);
  EXPECT_TRUE(AttrOf(r2, mid, "lib").is_reg());
  EXPECT_EQ(Ino(r2, mid, "lib/mod"), 0u);
}

TEST_F(TreeReaderTest, ReadDirPagesOfABigDirectoryGiveEachNameOnce) {
  constexpr int kEntries = 10000;
  LayerBuilder b;
  for (int i = 0; i < kEntries; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "big/f%05d", i);
    if (i % 100 == 0) {
      Add(b, name, Dir());
    } else {
      Add(b, name, Inline(""));
    }
  }
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();
  const uint64_t big = Ino(r, view, "big");
  EXPECT_EQ(AttrOf(r, view, "big").nlink, 2u + kEntries / 100);

  // The whole listing in one call: sorted, unique, offsets increasing.
  const std::vector<Listed> all = List(r, view, big);
  ASSERT_EQ(all.size(), size_t{kEntries});
  std::set<uint64_t> inos;
  for (size_t i = 0; i < all.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(all[i - 1].name, all[i].name);
      EXPECT_LT(all[i - 1].next_offset, all[i].next_offset);
    }
    EXPECT_NE(all[i].next_offset, 0u);
    inos.insert(all[i].ino);
    EXPECT_EQ(all[i].type,
              static_cast<uint32_t>(i % 100 == 0 ? S_IFDIR : S_IFREG))
        << all[i].name;
  }
  EXPECT_EQ(inos.size(), all.size());
  EXPECT_EQ(Ino(r, view, "big/" + all[1234].name), all[1234].ino);

  // Pages of 100 as a FUSE buffer would take them, each in a new reader.
  std::vector<Listed> paged;
  uint64_t offset = 0;
  for (int pages = 0;; ++pages) {
    ASSERT_LT(pages, kEntries);
    TreeReader page_reader = Reader();
    size_t before = paged.size();
    Status s = page_reader.ReadDir(view, big, offset, [&](const DirEntry& e) {
      if (paged.size() - before == 100) return false;  // "buffer full"
      paged.push_back({std::string(e.name), e.ino, e.type, e.next_offset});
      return true;
    });
    ASSERT_TRUE(s) << s.error().ToString();
    if (paged.size() == before) break;
    offset = paged.back().next_offset;
  }
  ASSERT_EQ(paged.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(paged[i].name, all[i].name);
    EXPECT_EQ(paged[i].next_offset, all[i].next_offset);
  }

  // Seeking to any returned offset resumes right after that entry.
  for (size_t i = 0; i < all.size(); ++i) {
    std::optional<Listed> first;
    Status s = r.ReadDir(view, big, all[i].next_offset, [&](const DirEntry& e) {
      first = Listed{std::string(e.name), e.ino, e.type, e.next_offset};
      return false;
    });
    ASSERT_TRUE(s);
    if (i + 1 == all.size()) {
      EXPECT_FALSE(first);
    } else {
      ASSERT_TRUE(first) << i;
      EXPECT_EQ(first->name, all[i + 1].name);
    }
  }
  EXPECT_TRUE(List(r, view, big, uint64_t{1} << 40).empty());
}

TEST_F(TreeReaderTest, ReadDirOfSmallAndEmptyDirectories) {
  LayerBuilder b;
  Add(b, "empty", Dir());
  Add(b, "file", Inline("x"));
  Add(b, "d/one", Inline("1"));
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();
  EXPECT_TRUE(List(r, view, Ino(r, view, "empty")).empty());
  auto d = List(r, view, Ino(r, view, "d"));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].name, "one");
  EXPECT_TRUE(List(r, view, Ino(r, view, "d"), d[0].next_offset).empty());
  // No "." or "..": the filesystem adds them.
  EXPECT_EQ(Names(r, view, ""), NameList({"d", "empty", "file"}));

  Status not_dir = r.ReadDir(view, Ino(r, view, "file"), 0,
                             [](const DirEntry&) { return true; });
  ASSERT_FALSE(not_dir);
  EXPECT_EQ(not_dir.error().code(), ENOTDIR);
  Status missing =
      r.ReadDir(view, 424242, 0, [](const DirEntry&) { return true; });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ENOENT);
}

TEST_F(TreeReaderTest, ReadDirPlusCarriesEachEntrysAttrs) {
  LayerBuilder b;
  Add(b, "d/f", Inline("12345", 0600));
  Add(b, "d/l", Symlink("f"));
  Add(b, "d/s", Dir(0700, 5));
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();
  std::vector<std::pair<Listed, Attr>> got;
  Status s = r.ReadDirPlus(
      view, Ino(r, view, "d"), 0, [&](const DirEntry& e, const Attr& a) {
        got.push_back({{std::string(e.name), e.ino, e.type, e.next_offset}, a});
        return true;
      });
  ASSERT_TRUE(s) << s.error().ToString();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& [e, a] : got) {
    auto direct = r.GetAttr(view, e.ino);
    ASSERT_TRUE(direct && *direct);
    EXPECT_EQ(a.mode, (*direct)->mode) << e.name;
    EXPECT_EQ(a.nlink, (*direct)->nlink) << e.name;
    EXPECT_EQ(e.type, a.type()) << e.name;
  }
  EXPECT_EQ(got[0].second.size, 5u);
  EXPECT_TRUE(got[1].second.is_symlink());
  EXPECT_EQ(got[2].second.uid, 5u);

  // Stopping returns without consuming; resuming continues after the last.
  std::vector<std::string> names;
  s = r.ReadDirPlus(view, Ino(r, view, "d"), got[0].first.next_offset,
                    [&](const DirEntry& e, const Attr&) {
                      names.emplace_back(e.name);
                      return names.size() < 1;
                    });
  ASSERT_TRUE(s);
  EXPECT_EQ(names, NameList({"l"}));
}

TEST_F(TreeReaderTest, ReadLink) {
  LayerBuilder b;
  Add(b, "lib", Symlink("usr/lib"));
  Add(b, "file", Inline("x"));
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();
  auto target = r.ReadLink(view, Ino(r, view, "lib"));
  ASSERT_TRUE(target && *target);
  EXPECT_EQ(**target, "usr/lib");
  auto not_link = r.ReadLink(view, Ino(r, view, "file"));
  ASSERT_FALSE(not_link);
  EXPECT_EQ(not_link.error().code(), EINVAL);
  auto missing = r.ReadLink(view, 999);
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);
}

TEST_F(TreeReaderTest, Xattrs) {
  LayerBuilder b;
  Node ping = Inline("ping", 0755);
  const std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00", 8);
  ping.xattrs = {{"security.capability", cap}, {"user.mime", "app"}};
  Add(b, "ping", ping);
  Add(b, "plain", Inline(""));
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();
  const uint64_t ino = Ino(r, view, "ping");

  std::vector<std::string> names;
  Status s = r.ListXattrs(view, ino, [&](std::string_view n) {
    names.emplace_back(n);
    return true;
  });
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(names, NameList({"security.capability", "user.mime"}));
  names.clear();
  s = r.ListXattrs(view, ino, [&](std::string_view n) {
    names.emplace_back(n);
    return false;
  });
  ASSERT_TRUE(s);
  EXPECT_EQ(names.size(), 1u);

  auto v = r.GetXattr(view, ino, "security.capability");
  ASSERT_TRUE(v && *v);
  EXPECT_EQ(**v, cap);
  auto none = r.GetXattr(view, ino, "user.none");
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);

  names.clear();
  s = r.ListXattrs(view, Ino(r, view, "plain"), [&](std::string_view n) {
    names.emplace_back(n);
    return true;
  });
  ASSERT_TRUE(s);
  EXPECT_TRUE(names.empty());

  Status missing =
      r.ListXattrs(view, 999, [](std::string_view) { return true; });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ENOENT);
  auto missing_get = r.GetXattr(view, 999, "user.mime");
  ASSERT_FALSE(missing_get);
  EXPECT_EQ(missing_get.error().code(), ENOENT);
}

TEST_F(TreeReaderTest, OpenContentFromBlobAndInline) {
  const std::string big(100000, 'z');
  LayerBuilder b;
  Add(b, "blob", Blob(big));
  Add(b, "inline", Inline("small bytes"));
  Add(b, "empty", Inline(""));
  Node bare;  // an empty file with neither content flag
  bare.attr.mode = S_IFREG | 0644;
  Add(b, "bare", bare);
  Add(b, "dir", Dir());
  Add(b, "link", Symlink("blob"));
  Node lost = Inline("");
  lost.flags = kFlagBlob;
  lost.blob.hash[0] = 0xab;  // no such blob in the store
  lost.attr.size = 10;
  Add(b, "lost", lost);
  TreeId view = View({Commit(b)});

  FileContent blob, inl;
  {
    TreeReader r = Reader();
    auto c = r.OpenContent(view, Ino(r, view, "blob"));
    ASSERT_TRUE(c) << c.error().ToString();
    blob = std::move(*c);
    auto i = r.OpenContent(view, Ino(r, view, "inline"));
    ASSERT_TRUE(i) << i.error().ToString();
    inl = std::move(*i);

    for (const char* empty : {"empty", "bare"}) {
      auto e = r.OpenContent(view, Ino(r, view, empty));
      ASSERT_TRUE(e) << empty;
      EXPECT_FALSE(e->in_blob());
      EXPECT_EQ(e->size, 0u);
      EXPECT_TRUE(e->inline_data.empty());
    }
    auto dir = r.OpenContent(view, Ino(r, view, "dir"));
    ASSERT_FALSE(dir);
    EXPECT_EQ(dir.error().code(), EISDIR);
    auto link = r.OpenContent(view, Ino(r, view, "link"));
    ASSERT_FALSE(link);
    EXPECT_EQ(link.error().code(), EINVAL);
    auto missing = r.OpenContent(view, 999);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code(), ENOENT);
    auto gone = r.OpenContent(view, Ino(r, view, "lost"));
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code(), EIO);
  }
  // Both outlive the reader.
  ASSERT_TRUE(blob.in_blob());
  EXPECT_EQ(blob.size, big.size());
  std::string read(big.size(), '\0');
  auto n =
      sys::PreadFull(blob.fd.get(), std::as_writable_bytes(std::span(read)), 0);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, big.size());
  EXPECT_EQ(read, big);
  EXPECT_EQ(::write(blob.fd.get(), "x", 1), -1);  // read-only
  EXPECT_FALSE(inl.in_blob());
  EXPECT_EQ(inl.inline_data, "small bytes");
  EXPECT_EQ(inl.size, 11u);
}

TEST_F(TreeReaderTest, ReadPathDoesNotAllocate) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "allocation counting is off under AddressSanitizer";
#else
  LayerBuilder b;
  Node f = Inline("data");
  f.xattrs = {{"user.a", "1"}};
  const std::string long_name(200, 'n');
  Add(b, "dir/" + long_name, f);
  Add(b, "dir/link", Symlink("target"));
  TreeId view = View({Commit(b)});
  TreeReader r = Reader();
  const uint64_t dir = Ino(r, view, "dir");
  const uint64_t link = Ino(r, view, "dir/link");
  int entries = 0;
  g_allocations = 0;
  g_count_allocations = true;
  auto hit = r.Lookup(view, dir, long_name);
  auto miss = r.Lookup(view, dir, "absent-and-longer-than-sso");
  auto attr = r.GetAttr(view, dir);
  auto node = r.GetNode(view, link);
  auto target = r.ReadLink(view, link);
  auto xattr = r.GetXattr(view, hit->value().ino, "user.a");
  Status listed =
      r.ReadDirPlus(view, dir, 0, [&](const DirEntry&, const Attr&) {
        ++entries;
        return true;
      });
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 0);
  ASSERT_TRUE(hit && *hit);
  ASSERT_TRUE(miss);
  EXPECT_FALSE(*miss);
  EXPECT_TRUE(attr && *attr);
  EXPECT_TRUE(node && *node);
  ASSERT_TRUE(target && *target);
  EXPECT_EQ(**target, "target");
  ASSERT_TRUE(xattr && *xattr);
  EXPECT_EQ(**xattr, "1");
  EXPECT_TRUE(listed);
  EXPECT_EQ(entries, 2);
#endif
}

TEST_F(TreeReaderTest, AReaderIsASnapshotAndRenewMovesIt) {
  LayerBuilder b1;
  Add(b1, "one", Inline("1"));
  TreeId v1 = View({Commit(b1)});
  TreeReader r = Reader();

  LayerBuilder b2;
  Add(b2, "two", Inline("2"));
  TreeId v2 = View({Commit(b2)});
  EXPECT_NE(Ino(r, v1, "one"), 0u);
  auto before = r.GetAttr(v2, kRootIno);
  ASSERT_TRUE(before);
  EXPECT_FALSE(*before);  // the view was made after the snapshot

  r.Reset();
  ASSERT_TRUE(r.Renew());
  EXPECT_NE(Ino(r, v2, "two"), 0u);
  EXPECT_FALSE(r.Renew());  // not reset
}

TEST_F(TreeReaderTest, ReadersInSeveralThreads) {
  LayerBuilder b;
  for (int i = 0; i < 100; ++i)
    Add(b, "d/f" + std::to_string(i), Inline(std::to_string(i)));
  TreeId view = View({Commit(b)});
  std::vector<std::thread> threads;
  std::vector<int> found(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round) {
        auto r = TreeReader::Begin(*store_);
        if (!r) return;
        auto d = r->Lookup(view, kRootIno, "d");
        if (!d || !*d) return;
        auto f = r->Lookup(view, (*d)->ino, "f" + std::to_string(round));
        if (f && *f) ++found[t];
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  EXPECT_EQ(found, std::vector<int>(4, 50));
}

}  // namespace
}  // namespace strata::layerdb
