#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "layerdb/base/sys.h"
#include "layerdb/base/temp_dir.h"
#include "layerdb/importers.h"
#include "layerdb/store.h"

namespace strata::layerdb {
namespace {

namespace fs = std::filesystem;

bool IsRoot() {
  return ::geteuid() == 0;
}

void WriteFile(const std::string& path, const std::string& data,
               mode_t mode = 0644) {
  ASSERT_TRUE(sys::WriteFileAtomic(path, data)) << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

void SetTimes(const std::string& path, int64_t atime_ns, int64_t mtime_ns) {
  struct timespec ts[2] = {{atime_ns / 1000000000, atime_ns % 1000000000},
                           {mtime_ns / 1000000000, mtime_ns % 1000000000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0)
      << path;
}

// Binary POSIX ACL in the kernel's xattr form (posix_acl_xattr.h): a u32
// version 2 header, then {u16 tag, u16 perm, u32 id} entries in tag order.
std::string Acl(const std::vector<std::array<uint32_t, 3>>& entries) {
  std::string out;
  auto put = [&](uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
      out += static_cast<char>(v >> (8 * i));
  };
  put(2, 4);
  for (const auto& [tag, perm, id] : entries) {
    put(tag, 2);
    put(perm, 2);
    put(id, 4);
  }
  return out;
}
constexpr uint32_t kAclUserObj = 1, kAclUser = 2, kAclGroupObj = 4,
                   kAclMask = 0x10, kAclOther = 0x20, kAclNoId = 0xffffffff;

// security.capability v2 (linux/capability.h): CAP_NET_BIND_SERVICE
// permitted and effective.
std::string FileCaps() {
  std::string v(20, '\0');
  v[0] = 1;     // VFS_CAP_FLAGS_EFFECTIVE
  v[3] = 2;     // VFS_CAP_REVISION_2 (0x02000000, little endian)
  v[5] = 0x04;  // permitted bit 10
  return v;
}

// user:1234 may read (setfacl -m u:1234:r).
std::string AccessAcl() {
  return Acl({{kAclUserObj, 6, kAclNoId},
              {kAclUser, 4, 1234},
              {kAclGroupObj, 4, kAclNoId},
              {kAclMask, 4, kAclNoId},
              {kAclOther, 4, kAclNoId}});
}

std::string DefaultAcl() {
  return Acl({{kAclUserObj, 7, kAclNoId},
              {kAclUser, 5, 1234},
              {kAclGroupObj, 5, kAclNoId},
              {kAclMask, 5, kAclNoId},
              {kAclOther, 5, kAclNoId}});
}

constexpr int64_t kMtimeNs = 1700000000123456789;
constexpr int64_t kAtimeNs = 1600000000987654321;

TreeNodePtr Find(const TreeNodePtr& root, const std::string& path) {
  TreeNodePtr n = root;
  for (const auto& part : fs::path(path)) {
    if (n == nullptr) return nullptr;
    auto it = n->children.find(part.string());
    n = it == n->children.end() ? nullptr : it->second;
  }
  return n;
}

// The node at `path`, or an empty Node and a test failure.
const Node& NodeAt(const TreeNodePtr& root, const std::string& path) {
  static const Node missing;
  TreeNodePtr n = Find(root, path);
  if (n != nullptr) return n->node;
  ADD_FAILURE() << "no entry \"" << path << "\"";
  return missing;
}

class ImportDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = TempDir::Make("/tmp/import_dir_test.");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    tmp_ = scratch_->path();
    src_ = tmp_ + "/src";
    ASSERT_EQ(::mkdir(src_.c_str(), 0755), 0);
    auto store = Store::Open(tmp_ + "/store", Store::Mode::kReadWrite);
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    scratch_.reset();
  }

  std::string Src(const std::string& rel) const { return src_ + "/" + rel; }

  // Builds the tree most tests import; call through ASSERT_NO_FATAL_FAILURE.
  void BuildTree();

  Result<LayerInfo> Import(const ImportOptions& opts = {}) {
    return ImportDirLayer(*store_, src_, opts);
  }

  TreeNodePtr ImportAndLoad() {
    auto layer = Import();
    EXPECT_TRUE(layer) << layer.error().ToString();
    if (!layer) return nullptr;
    auto tree = store_->LoadTree(layer->id);
    EXPECT_TRUE(tree) << tree.error().ToString();
    return tree ? *tree : nullptr;
  }

  std::string BlobContent(const BlobKey& key) {
    auto fd = store_->blobs().OpenBlob(key);
    EXPECT_TRUE(fd) << fd.error().ToString();
    if (!fd) return "";
    auto st = sys::Fstat(fd->get());
    std::string data(static_cast<size_t>(st->st_size), '\0');
    auto n = sys::ReadFull(fd->get(), std::as_writable_bytes(std::span(data)));
    EXPECT_TRUE(n);
    return data;
  }

  size_t CountBlobFiles() const {
    size_t count = 0;
    for (const auto& sub : fs::directory_iterator(tmp_ + "/store/blobs")) {
      if (sub.path().filename().string().size() != 2) continue;
      for (const auto& f : fs::directory_iterator(sub.path())) {
        (void)f;
        ++count;
      }
    }
    return count;
  }

  bool HasXattrSupport() {
    std::string probe = Src("xattr-probe");
    WriteFile(probe, "");
    bool ok = ::setxattr(probe.c_str(), "user.probe", "1", 1, 0) == 0;
    ::unlink(probe.c_str());
    return ok;
  }

  std::optional<TempDir> scratch_;
  std::string tmp_, src_;
  std::unique_ptr<Store> store_;
  std::string small_ = "small file\n";
  std::string large_ = std::string(5000, 'x') + "end";
};

void ImportDirTest::BuildTree() {
  ASSERT_EQ(::mkdir(Src("dir").c_str(), 0750), 0);
  WriteFile(Src("dir/small"), small_);
  WriteFile(Src("dir/large"), large_, 0600);
  WriteFile(Src("empty"), "");
  ASSERT_EQ(::symlink("dir/small", Src("link").c_str()), 0);
  WriteFile(Src("hard1"), "shared by two names");
  ASSERT_EQ(::link(Src("hard1").c_str(), Src("dir/hard2").c_str()), 0);
  ASSERT_EQ(::mkfifo(Src("fifo").c_str(), 0640), 0);
  int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sock_path = Src("sock");
  ASSERT_LT(sock_path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  (void)::close(sock);
  WriteFile(Src("suid"), "#!/bin/sh\n", 04755);
  WriteFile(Src("sgid"), "#!/bin/sh\n", 02711);
  ASSERT_EQ(::mkdir(Src("sticky").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(Src("sticky").c_str(), 01777), 0);
  SetTimes(Src("dir/small"), kAtimeNs, kMtimeNs);
  SetTimes(Src("link"), kAtimeNs, kMtimeNs + 1);
  // Last: creating entries above changed these directories' times.
  SetTimes(Src("dir"), kAtimeNs, kMtimeNs + 2);
  SetTimes(src_, kAtimeNs, kMtimeNs + 3);
}

TEST_F(ImportDirTest, RootHasItsOwnAttributes) {
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  ASSERT_EQ(::chmod(src_.c_str(), 0710), 0);
  auto layer = Import();
  ASSERT_TRUE(layer) << layer.error().ToString();
  EXPECT_EQ(layer->source, "dir:" + src_);
  EXPECT_EQ(layer->diff_id, "");
  auto root = store_->LoadTree(layer->id);
  ASSERT_TRUE(root) << root.error().ToString();
  const Node& n = (*root)->node;
  EXPECT_EQ(n.attr.mode, S_IFDIR | 0710u);
  EXPECT_EQ(n.flags & kFlagImplicit, 0);
  EXPECT_EQ(n.attr.mtime_ns, kMtimeNs + 3);
  EXPECT_EQ(n.attr.atime_ns, kAtimeNs);
}

TEST_F(ImportDirTest, SourceIsAbsoluteAndNormal) {
  ASSERT_EQ(::chdir(tmp_.c_str()), 0);
  auto layer = ImportDirLayer(*store_, "./src//", {});
  ASSERT_EQ(::chdir("/"), 0);
  ASSERT_TRUE(layer) << layer.error().ToString();
  EXPECT_EQ(layer->source, "dir:" + src_);
}

TEST_F(ImportDirTest, RegularFilesInlineOrBlob) {
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);

  auto small = Find(root, "dir/small");
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(small->node.attr.mode, S_IFREG | 0644u);
  EXPECT_EQ(small->node.flags, kFlagInline);
  EXPECT_EQ(small->node.inline_data, small_);
  EXPECT_EQ(small->node.attr.size, small_.size());

  auto large = Find(root, "dir/large");
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(large->node.attr.mode, S_IFREG | 0600u);
  EXPECT_EQ(large->node.flags, kFlagBlob);
  EXPECT_EQ(large->node.attr.size, large_.size());
  EXPECT_TRUE(large->node.inline_data.empty());
  EXPECT_EQ(BlobContent(large->node.blob), large_);

  auto empty = Find(root, "empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->node.flags, kFlagInline);
  EXPECT_EQ(empty->node.attr.size, 0u);
  EXPECT_EQ(empty->node.inline_data, "");
}

TEST_F(ImportDirTest, InlineLimitIsInclusive) {
  std::string at(kInlineMaxBytes, 'a'), over(kInlineMaxBytes + 1, 'b');
  WriteFile(Src("at"), at);
  WriteFile(Src("over"), over);
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(NodeAt(root, "at").flags, kFlagInline);
  EXPECT_EQ(NodeAt(root, "over").flags, kFlagBlob);
  EXPECT_EQ(BlobContent(NodeAt(root, "over").blob), over);
}

TEST_F(ImportDirTest, StreamsHugeFilesAndReportsProgress) {
  // Sparse beyond the 16 MiB buffered limit, with bytes at both ends.
  const uint64_t size = (16u << 20) + 4097;
  std::string path = Src("huge");
  {
    auto fd = sys::Open(path, O_WRONLY | O_CREAT, 0644);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd->get(), static_cast<off_t>(size)), 0);
    ASSERT_EQ(::pwrite(fd->get(), "head", 4, 0), 4);
    ASSERT_EQ(::pwrite(fd->get(), "tail", 4, static_cast<off_t>(size - 4)), 4);
  }
  WriteFile(Src("small"), small_);
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  ImportOptions opts;
  opts.progress = [&](uint64_t done, uint64_t total) {
    calls.emplace_back(done, total);
  };
  auto layer = Import(opts);
  ASSERT_TRUE(layer) << layer.error().ToString();
  EXPECT_EQ(layer->size, size + small_.size());
  auto root = store_->LoadTree(layer->id);
  ASSERT_TRUE(root);
  auto huge = Find(*root, "huge");
  ASSERT_NE(huge, nullptr);
  EXPECT_EQ(huge->node.flags, kFlagBlob);
  EXPECT_EQ(huge->node.attr.size, size);
  std::string data = BlobContent(huge->node.blob);
  ASSERT_EQ(data.size(), size);
  EXPECT_EQ(data.substr(0, 4), "head");
  EXPECT_EQ(data.substr(size - 4), "tail");
  EXPECT_EQ(data[size / 2], '\0');

  ASSERT_GE(calls.size(), 2u);  // during the huge file, and at the end
  for (size_t i = 1; i < calls.size(); ++i)
    EXPECT_GE(calls[i].first, calls[i - 1].first);
  EXPECT_EQ(calls.back().first, size + small_.size());
}

TEST_F(ImportDirTest, SparseFilesGiveSparseBlobs) {
  // 16 MiB (read whole, BlobStore::Put) and 40 MiB (streamed through a
  // BlobStore::Writer), each with 64 KiB of data in the middle.
  const std::pair<std::string, uint64_t> files[] = {{"buffered", 16u << 20},
                                                    {"streamed", 40u << 20}};
  const std::string data(64 << 10, 'd');
  for (const auto& [name, size] : files) {
    auto fd = sys::Open(Src(name), O_WRONLY | O_CREAT, 0644);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd->get(), static_cast<off_t>(size)), 0);
    ASSERT_EQ(::pwrite(fd->get(), data.data(), data.size(),
                       static_cast<off_t>(size / 2)),
              static_cast<ssize_t>(data.size()));
    auto st = sys::Fstat(fd->get());
    ASSERT_TRUE(st);
    if (static_cast<uint64_t>(st->st_blocks) * 512 >= size)
      GTEST_SKIP() << "no sparse files on " << tmp_;
  }
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);
  for (const auto& [name, size] : files) {
    const Node& n = NodeAt(root, name);
    ASSERT_EQ(n.flags, kFlagBlob) << name;
    struct stat st {};
    ASSERT_EQ(::stat(store_->blobs().PathOf(n.blob).c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), size) << name;
    EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20) << name;
    std::string content = BlobContent(n.blob);
    ASSERT_EQ(content.size(), size) << name;
    EXPECT_EQ(content.substr(size / 2, data.size()), data) << name;
    EXPECT_EQ(content.find_first_not_of('\0'), size / 2) << name;
    EXPECT_EQ(content.find_last_not_of('\0'), size / 2 + data.size() - 1)
        << name;
  }
}

TEST_F(ImportDirTest, SymlinkFifoSocketKeepTheirType) {
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  // A symlink to a directory outside the tree is kept as a link, not walked.
  std::string outside = tmp_ + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  WriteFile(outside + "/secret", "not to be imported");
  ASSERT_EQ(::symlink(outside.c_str(), Src("escape").c_str()), 0);
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);

  auto link = Find(root, "link");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->node.attr.type(), static_cast<uint32_t>(S_IFLNK));
  EXPECT_EQ(link->node.target, "dir/small");
  EXPECT_EQ(link->node.attr.size, 9u);
  EXPECT_EQ(link->node.attr.mtime_ns, kMtimeNs + 1);
  EXPECT_EQ(link->node.attr.atime_ns, kAtimeNs);

  auto escape = Find(root, "escape");
  ASSERT_NE(escape, nullptr);
  EXPECT_EQ(escape->node.attr.type(), static_cast<uint32_t>(S_IFLNK));
  EXPECT_EQ(escape->node.target, outside);
  EXPECT_TRUE(escape->children.empty());

  auto fifo = Find(root, "fifo");
  ASSERT_NE(fifo, nullptr);
  EXPECT_EQ(fifo->node.attr.mode, S_IFIFO | 0640u);
  EXPECT_EQ(fifo->node.flags, 0);

  auto sock = Find(root, "sock");
  ASSERT_NE(sock, nullptr);
  EXPECT_EQ(sock->node.attr.type(), static_cast<uint32_t>(S_IFSOCK));
}

TEST_F(ImportDirTest, CharacterDeviceKeepsRdev) {
  if (!IsRoot()) GTEST_SKIP() << "mknod of a character device needs root";
  ASSERT_EQ(::mknod(Src("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mknod(Src("blk").c_str(), S_IFBLK | 0600, makedev(7, 300)), 0);
  ASSERT_EQ(::chmod(Src("null").c_str(), 0666), 0);  // past the umask
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);
  auto null = Find(root, "null");
  ASSERT_NE(null, nullptr);
  EXPECT_EQ(null->node.attr.mode, S_IFCHR | 0666u);
  EXPECT_EQ(major(null->node.attr.rdev), 1u);
  EXPECT_EQ(minor(null->node.attr.rdev), 3u);
  auto blk = Find(root, "blk");
  ASSERT_NE(blk, nullptr);
  EXPECT_EQ(blk->node.attr.mode, S_IFBLK | 0600u);
  EXPECT_EQ(blk->node.attr.rdev, makedev(7, 300));
}

TEST_F(ImportDirTest, ModesKeepSuidSgidSticky) {
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(NodeAt(root, "suid").attr.mode, S_IFREG | 04755u);
  EXPECT_EQ(NodeAt(root, "sgid").attr.mode, S_IFREG | 02711u);
  EXPECT_EQ(NodeAt(root, "sticky").attr.mode, S_IFDIR | 01777u);
  auto dir = Find(root, "dir");
  EXPECT_EQ(dir->node.attr.mode, S_IFDIR | 0750u);
  EXPECT_EQ(dir->node.attr.mtime_ns, kMtimeNs + 2);
  EXPECT_EQ(dir->node.attr.nlink, 2u);
}

TEST_F(ImportDirTest, TimesAreNanoseconds) {
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  struct stat st {};
  ASSERT_EQ(::lstat(Src("dir/small").c_str(), &st), 0);
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);
  const Attr& a = NodeAt(root, "dir/small").attr;
  EXPECT_EQ(a.mtime_ns, kMtimeNs);
  EXPECT_EQ(a.atime_ns, kAtimeNs);
  EXPECT_EQ(a.ctime_ns, st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec);
}

TEST_F(ImportDirTest, HardlinksShareOneNode) {
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);
  auto a = Find(root, "hard1"), b = Find(root, "dir/hard2");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a, b);  // one TreeNode: one inode
  EXPECT_EQ(a->node.attr.nlink, 2u);
  EXPECT_EQ(a->node.inline_data, "shared by two names");
  // Single-linked files are not grouped.
  EXPECT_NE(Find(root, "suid"), Find(root, "sgid"));
}

TEST_F(ImportDirTest, XattrsAndAclsVerbatim) {
  if (!HasXattrSupport()) GTEST_SKIP() << "no user xattrs on " << tmp_;
  const std::string access_acl = AccessAcl(), default_acl = DefaultAcl();
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  std::string f = Src("dir/small");
  ASSERT_EQ(::setxattr(f.c_str(), "user.b", "2", 1, 0), 0);
  ASSERT_EQ(::setxattr(f.c_str(), "user.a", "one\0bin", 7, 0), 0);
  std::string acl_file = Src("acl");
  WriteFile(acl_file, "acl");
  if (::setxattr(acl_file.c_str(), "system.posix_acl_access", access_acl.data(),
                 access_acl.size(), 0) != 0)
    GTEST_SKIP() << "no POSIX ACLs on " << tmp_;
  ASSERT_EQ(::setxattr(Src("dir").c_str(), "system.posix_acl_default",
                       default_acl.data(), default_acl.size(), 0),
            0);
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);

  std::vector<Xattr> want = {{"user.a", std::string("one\0bin", 7)},
                             {"user.b", "2"}};
  EXPECT_EQ(NodeAt(root, "dir/small").xattrs, want);
  want = {{"system.posix_acl_access", access_acl}};
  EXPECT_EQ(NodeAt(root, "acl").xattrs, want);
  // The ACL mask became the group bits (acl(5)).
  EXPECT_EQ(NodeAt(root, "acl").attr.mode, S_IFREG | 0644u);
  want = {{"system.posix_acl_default", default_acl}};
  EXPECT_EQ(NodeAt(root, "dir").xattrs, want);
  EXPECT_TRUE(NodeAt(root, "empty").xattrs.empty());
}

TEST_F(ImportDirTest, PrivilegedXattrsAndOwnersAsRoot) {
  if (!IsRoot()) GTEST_SKIP() << "chown, trusted.* and file caps need root";
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  std::string caps = FileCaps();
  ASSERT_EQ(::setxattr(Src("suid").c_str(), "security.capability", caps.data(),
                       caps.size(), 0),
            0);
  ASSERT_EQ(::lsetxattr(Src("link").c_str(), "trusted.t", "on link", 7, 0), 0);
  ASSERT_EQ(::setxattr(Src("fifo").c_str(), "trusted.f", "on fifo", 7, 0), 0);
  ASSERT_EQ(::lchown(Src("dir/small").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::lchown(Src("link").c_str(), 1234, 5678), 0);
  // chown clears suid and file caps: give them back afterwards.
  ASSERT_EQ(::chown(Src("sgid").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::chmod(Src("sgid").c_str(), 02711), 0);
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);

  std::vector<Xattr> want = {{"security.capability", caps}};
  EXPECT_EQ(NodeAt(root, "suid").xattrs, want);
  want = {{"trusted.t", "on link"}};
  EXPECT_EQ(NodeAt(root, "link").xattrs, want);
  want = {{"trusted.f", "on fifo"}};
  EXPECT_EQ(NodeAt(root, "fifo").xattrs, want);
  for (const char* p : {"dir/small", "link", "sgid"}) {
    const Attr& a = NodeAt(root, p).attr;
    EXPECT_EQ(a.uid, 1234u) << p;
    EXPECT_EQ(a.gid, 5678u) << p;
  }
  EXPECT_EQ(NodeAt(root, "sgid").attr.mode, S_IFREG | 02711u);
  EXPECT_EQ(NodeAt(root, "empty").attr.uid, 0u);
}

TEST_F(ImportDirTest, SameTreeTwiceStoresEachBlobOnce) {
  ASSERT_NO_FATAL_FAILURE(BuildTree());
  WriteFile(Src("large-copy"), large_);  // same content, another name
  WriteFile(Src("other"), std::string(3000, 'o'));
  auto first = Import();
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(CountBlobFiles(), 2u);  // large_ and "ooo…"
  auto second = Import();
  ASSERT_TRUE(second) << second.error().ToString();
  EXPECT_EQ(CountBlobFiles(), 2u);
  // No diff_id, so no layer dedup: two layers sharing blobs.
  EXPECT_NE(first->id, second->id);
  auto t1 = store_->LoadTree(first->id);
  auto t2 = store_->LoadTree(second->id);
  ASSERT_TRUE(t1 && t2);
  EXPECT_EQ(NodeAt(*t1, "dir/large").blob, NodeAt(*t2, "large-copy").blob);
}

TEST_F(ImportDirTest, DeepTreeBeyondOpenDirLimit) {
  std::string rel;
  for (int i = 0; i < 200; ++i) {
    rel += (i ? "/d" : "d");
    ASSERT_EQ(::mkdir(Src(rel).c_str(), 0755), 0);
    if (i % 50 == 0) WriteFile(Src(rel + "/f"), std::to_string(i));
  }
  WriteFile(Src(rel + "/leaf"), "bottom");
  WriteFile(Src("after"), "visited after climbing back");
  auto root = ImportAndLoad();
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(NodeAt(root, rel + "/leaf").inline_data, "bottom");
  // i == 50 is the 51st directory: "d/" 51 times, then "f".
  EXPECT_EQ(NodeAt(root, rel.substr(0, size_t{2} * 51) + "f").inline_data,
            "50");
  EXPECT_NE(Find(root, "after"), nullptr);
}

TEST_F(ImportDirTest, WhiteoutNamesAreRefused) {
  WriteFile(Src(".wh.gone"), "");
  auto layer = Import();
  ASSERT_FALSE(layer);
  EXPECT_EQ(layer.error().code(), EINVAL);
  EXPECT_NE(layer.error().ToString().find(Src(".wh.gone")), std::string::npos)
      << layer.error().ToString();
}

TEST_F(ImportDirTest, MissingDirectoryNamesIt) {
  auto layer = ImportDirLayer(*store_, tmp_ + "/nope", {});
  ASSERT_FALSE(layer);
  EXPECT_EQ(layer.error().code(), ENOENT);
  EXPECT_NE(layer.error().ToString().find(tmp_ + "/nope"), std::string::npos);
}

// Runs the import of src_ with a store of its own, as an unprivileged user
// when we are root (root reads a mode 000 file). Returns the error line, or
// "" when the import succeeded.
std::string ImportUnprivileged(const std::string& src, const std::string& tmp) {
  auto run = [&]() -> std::string {
    auto store = Store::Open(tmp + "/store2", Store::Mode::kReadWrite);
    if (!store) return "store: " + store.error().ToString();
    auto layer = ImportDirLayer(**store, src, {});
    auto layers = (*store)->ListLayers();
    if (layers && !layers->empty()) return "a layer was committed";
    return layer ? "" : layer.error().ToString();
  };
  if (!IsRoot()) return run();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return "pipe failed";
  UniqueFd in(fds[0]), out_fd(fds[1]);
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string out = "setresuid failed";
    if (::setresgid(65534, 65534, 65534) == 0 &&
        ::setresuid(65534, 65534, 65534) == 0)
      out = run();
    (void)!::write(out_fd.get(), out.data(), out.size());
    ::_exit(0);
  }
  out_fd.Reset();
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(in.get(), buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<size_t>(n));
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

TEST_F(ImportDirTest, UnreadableFileIsAnErrorNamingIt) {
  ASSERT_EQ(::mkdir(Src("dir").c_str(), 0755), 0);
  WriteFile(Src("dir/readable"), "yes");
  WriteFile(Src("dir/secret"), "no", 0000);
  // The unprivileged child must reach src_ and write its own store.
  ASSERT_EQ(::chmod(tmp_.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((tmp_ + "/store2").c_str(), 0755), 0);
  if (IsRoot()) {
    ASSERT_EQ(::chown((tmp_ + "/store2").c_str(), 65534, 65534), 0);
  }
  std::string err = ImportUnprivileged(src_, tmp_);
  EXPECT_NE(err.find(Src("dir/secret")), std::string::npos) << err;
  EXPECT_NE(err.find("Permission denied"), std::string::npos) << err;
}

TEST_F(ImportDirTest, RootMayBeASymlink) {
  WriteFile(Src("f"), "via link");
  std::string via = tmp_ + "/via";
  ASSERT_EQ(::symlink(src_.c_str(), via.c_str()), 0);
  auto layer = ImportDirLayer(*store_, via, {});
  ASSERT_TRUE(layer) << layer.error().ToString();
  EXPECT_EQ(layer->source, "dir:" + via);
  auto root = store_->LoadTree(layer->id);
  ASSERT_TRUE(root);
  EXPECT_EQ((*root)->node.attr.type(), static_cast<uint32_t>(S_IFDIR));
  EXPECT_EQ(NodeAt(*root, "f").inline_data, "via link");
}

TEST(ImageConfigTest, ListsDiffIdsOfLayersThatHaveThem) {
  LayerInfo tar, dir;
  tar.diff_id = "sha256:" + std::string(64, 'a');
  tar.source = "tar:/home/me/rootfs.tar";
  tar.created = 1700000000;
  dir.source = "dir:/srv/tree";
  nlohmann::json c = MakeImageConfig({tar, dir});
  EXPECT_EQ(c["os"], "linux");
#if defined(__x86_64__)
  EXPECT_EQ(c["architecture"], "amd64");
#elif defined(__aarch64__)
  EXPECT_EQ(c["architecture"], "arm64");
#endif
  EXPECT_EQ(c["rootfs"]["type"], "layers");
  EXPECT_EQ(c["rootfs"]["diff_ids"], nlohmann::json::array({tar.diff_id}));
  EXPECT_EQ(
      c["config"]["Env"][0],
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  ASSERT_EQ(c["history"].size(), 1u);
  EXPECT_EQ(c["history"][0]["created"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(c["history"][0]["created_by"], "strata import tar");
  std::string created = c["created"];
  ASSERT_EQ(created.size(), 20u) << created;
  EXPECT_EQ(created[10], 'T');
  EXPECT_EQ(created.back(), 'Z');
}

TEST(ImageConfigTest, NoLayersIsStillValid) {
  nlohmann::json c = MakeImageConfig({});
  EXPECT_TRUE(c["rootfs"]["diff_ids"].is_array());
  EXPECT_TRUE(c["rootfs"]["diff_ids"].empty());
  EXPECT_FALSE(c.contains("history"));
}

}  // namespace
}  // namespace strata::layerdb
