#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include "layerdb/base/sys.h"
#include "layerdb/base/temp_dir.h"
#include "layerdb/export_test_util.h"
#include "layerdb/hash.h"
#include "layerdb/importers.h"
#include "layerdb/mem_tree.h"
#include "layerdb/posix_acl.h"
#include "layerdb/store.h"

namespace strata::layerdb {
namespace {

struct Member {
  Member(std::string n, mode_t m, std::string d, std::string l = "",
         std::vector<Xattr> x = {}, dev_t r = 0)
      : name(std::move(n)),
        mode(m),
        data(std::move(d)),
        link(std::move(l)),
        xattrs(std::move(x)),
        rdev(r) {}
  std::string name;
  mode_t mode;       // with type bits; 0 with `link` set = hardlink
  std::string data;  // file content or symlink target
  std::string link;  // hardlink target
  std::vector<Xattr> xattrs;
  dev_t rdev;
};

// Writes a tar (optionally compressed: "gzip", "zstd") with libarchive.
std::string MakeTar(const std::vector<Member>& members,
                    const std::string& filter = "") {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax(a);
  if (filter == "gzip") archive_write_add_filter_gzip(a);
  if (filter == "zstd") archive_write_add_filter_zstd(a);
  archive_write_set_bytes_in_last_block(a, 1);
  test_util::ArchiveWriteToString(a, &out);
  for (const Member& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_mtime(e, 1700000000, 5);
    archive_entry_set_uid(e, 1000);
    archive_entry_set_gid(e, 1001);
    if (!m.link.empty()) {
      archive_entry_set_hardlink(e, m.link.c_str());
    } else {
      archive_entry_set_mode(e, m.mode);
      if (S_ISREG(m.mode))
        archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
      if (S_ISLNK(m.mode)) archive_entry_set_symlink(e, m.data.c_str());
      if (S_ISCHR(m.mode) || S_ISBLK(m.mode)) archive_entry_set_rdev(e, m.rdev);
    }
    for (const Xattr& x : m.xattrs)
      archive_entry_xattr_add_entry(e, x.name.c_str(), x.value.data(),
                                    x.value.size());
    archive_write_header(a, e);
    if (S_ISREG(m.mode) && m.link.empty())
      archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// One ustar header block: octal fields, and the checksum over the block
// with its own field counted as spaces (POSIX.1-2001 pax, "ustar").
std::string UstarBlock(const std::string& name, char type, uint32_t mode,
                       size_t size) {
  std::string h(512, '\0');
  auto octal = [&h](size_t off, size_t width, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1),
             static_cast<unsigned long long>(v));
    h.replace(off, width - 1, buf);
  };
  h.replace(0, name.size(), name);
  octal(100, 8, mode);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 1700000000);
  h.replace(148, 8, 8, ' ');
  h[156] = type;
  h.replace(257, 5, "ustar");  // magic "ustar\0", version "00"
  h.replace(263, 2, "00");
  unsigned sum = 0;
  for (char c : h)
    sum += static_cast<unsigned char>(c);
  octal(148, 7, sum);
  return h;
}

std::string Padded(std::string s) {
  s.resize((s.size() + 511) / 512 * 512, '\0');
  return s;
}

// "<length> key=value\n", the length counting its own digits.
std::string PaxRecord(const std::string& key, const std::string& value) {
  std::string body = " " + key + "=" + value + "\n";
  size_t len = body.size() + 1;
  while (std::to_string(len).size() + body.size() != len)
    ++len;
  return std::to_string(len) + body;
}

// A tar of one regular file with a PAX header of `records`, written by hand:
// libarchive cannot write a header mode that differs from the group:: of
// the ACL it writes, as GNU tar's does.
std::string PaxTar(const std::string& name, uint32_t mode,
                   const std::string& records, const std::string& data) {
  return UstarBlock("PaxHeaders/" + name, 'x', 0644, records.size()) +
         Padded(records) + UstarBlock(name, '0', mode, data.size()) +
         Padded(data) + std::string(1024, '\0');
}

class ImportTarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = TempDir::Make("/tmp/strata-tar-test.");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    dir_ = scratch_->path();
    auto s = Store::Open(dir_ + "/store", Store::Mode::kReadWrite);
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    scratch_.reset();
  }

  std::string Write(const std::string& name, const std::string& bytes) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  Result<LayerInfo> Import(const std::string& bytes) {
    return ImportTarLayer(*store_, Write("in.tar", bytes), ImportOptions{});
  }

  // Imports `bytes` as a layer and loads its tree: null, with the failure
  // recorded, if either fails.
  TreeNodePtr ImportTree(const std::string& bytes) {
    auto layer = Import(bytes);
    if (!layer) {
      ADD_FAILURE() << "import: " << layer.error().ToString();
      return nullptr;
    }
    auto tree = store_->LoadTree(layer->id);
    if (!tree) {
      ADD_FAILURE() << "load: " << tree.error().ToString();
      return nullptr;
    }
    return *tree;
  }

  void ExpectNoLayers() {
    auto layers = store_->ListLayers();
    ASSERT_TRUE(layers);
    EXPECT_TRUE(layers->empty());
  }

  std::optional<TempDir> scratch_;
  std::string dir_;
  std::unique_ptr<Store> store_;
};

const TreeNode* Find(const TreeNodePtr& root, std::string_view path) {
  return FindNode(*root, path);
}

std::vector<Member> AllTypes() {
  return {
      {"./", S_IFDIR | 0755, ""},
      {"./etc/", S_IFDIR | 0755, ""},
      {"./etc/small", S_IFREG | 0644, "tiny"},
      {"./etc/big",
       S_IFREG | 04755,
       std::string(100000, 'x'),
       "",
       {{"user.note", "hi"},
        {"security.capability", std::string("\x01\x00\x00\x02", 4)}}},
      {"./etc/alias", 0, "", "./etc/big"},
      {"./lib", S_IFLNK | 0777, "usr/lib"},
      {"./dev/null", S_IFCHR | 0666, "", "", {}, makedev(1, 3)},
      {"./run/fifo", S_IFIFO | 0600, ""},
  };
}

TEST_F(ImportTarTest, KeepsEveryTypeAndAttribute) {
  auto layer = Import(MakeTar(AllTypes()));
  ASSERT_TRUE(layer) << layer.error().ToString();
  auto tree = store_->LoadTree(layer->id);
  ASSERT_TRUE(tree) << tree.error().ToString();
  const TreeNode* small = Find(*tree, "etc/small");
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(small->node.inline_data, "tiny");
  EXPECT_EQ(small->node.attr.uid, 1000u);
  EXPECT_EQ(small->node.attr.gid, 1001u);
  EXPECT_EQ(small->node.attr.mtime_ns, 1700000000000000005);
  const TreeNode* big = Find(*tree, "etc/big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->node.attr.mode, S_IFREG | 04755u);
  EXPECT_TRUE(big->node.flags & kFlagBlob);
  EXPECT_EQ(big->node.attr.nlink, 2u);
  EXPECT_EQ(Find(*tree, "etc/alias"), big);
  EXPECT_EQ(big->node.xattrs.size(), 2u);
  auto fd = store_->blobs().OpenBlob(big->node.blob);
  ASSERT_TRUE(fd);
  auto st = sys::Fstat(fd->get());
  EXPECT_EQ(st->st_size, 100000);
  EXPECT_EQ(Find(*tree, "lib")->node.target, "usr/lib");
  EXPECT_EQ(Find(*tree, "dev/null")->node.attr.rdev, makedev(1, 3));
  EXPECT_TRUE(S_ISFIFO(Find(*tree, "run/fifo")->node.attr.mode));
  EXPECT_TRUE(Find(*tree, "run")->node.flags & kFlagImplicit);
}

TEST_F(ImportTarTest, DigestsCoverCompressedAndUncompressedBytes) {
  std::string plain = MakeTar(AllTypes());
  for (const char* filter : {"", "gzip", "zstd"}) {
    std::string bytes = MakeTar(AllTypes(), filter);
    auto layer = Import(bytes);
    ASSERT_TRUE(layer) << filter << ": " << layer.error().ToString();
    EXPECT_EQ(layer->diff_id, Sha256::Of(plain)) << filter;
  }
  // Same diff_id three times: one layer, pending (hidden from listings and
  // collectable) until an image names it.
  auto pending = store_->ListLayers();
  ASSERT_TRUE(pending);
  EXPECT_TRUE(pending->empty());
  auto again = Import(plain);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->reused);
  ASSERT_TRUE(
      store_->CreateImage("t:1", {again->id}, nlohmann::json::object()));
  auto layers = store_->ListLayers();
  ASSERT_TRUE(layers);
  ASSERT_EQ(layers->size(), 1u);
  EXPECT_FALSE((*layers)[0].pending);
}

TEST_F(ImportTarTest, RecordsWhiteoutsAndOpaqueDirs) {
  auto layer = Import(MakeTar({{"d/", S_IFDIR | 0755, ""},
                               {"d/x", S_IFREG | 0644, "x"},
                               {"d/.wh..wh..opq", S_IFREG, ""},
                               {".wh.gone", S_IFREG, ""}}));
  ASSERT_TRUE(layer) << layer.error().ToString();
  auto tree = store_->LoadTree(layer->id);
  ASSERT_TRUE(tree);
  EXPECT_TRUE(Find(*tree, "d")->node.is_opaque());
  EXPECT_TRUE(Find(*tree, "gone")->node.is_whiteout());
  EXPECT_EQ(Find(*tree, "d/.wh..wh..opq"), nullptr);
}

TEST_F(ImportTarTest, HostileMembersAreRefusedAndLeaveNoLayer) {
  struct Case {
    const char* what;
    std::vector<Member> members;
    int code;
  };
  std::vector<Case> cases = {
      {"dotdot", {{"../evil", S_IFREG | 0644, "x"}}, EINVAL},
      {"absolute", {{"/etc/evil", S_IFREG | 0644, "x"}}, EINVAL},
      {"through symlink",
       {{"lib", S_IFLNK | 0777, "/etc"}, {"lib/passwd", S_IFREG | 0644, "x"}},
       ENOTDIR},
      {"missing hardlink", {{"a", 0, "", "nowhere"}}, ENOENT},
      {"long name",
       {{std::string(300, 'n'), S_IFREG | 0644, "x"}},
       ENAMETOOLONG},
      {"empty whiteout", {{".wh.", S_IFREG, ""}}, EINVAL},
  };
  std::string deep;
  for (int i = 0; i < 10000; ++i)
    deep += "a/";
  cases.push_back({"deep", {{deep + "f", S_IFREG | 0644, "x"}}, ENAMETOOLONG});
  for (const Case& c : cases) {
    auto layer = Import(MakeTar(c.members));
    ASSERT_FALSE(layer) << c.what;
    EXPECT_EQ(layer.error().code(), c.code)
        << c.what << ": " << layer.error().ToString();
    EXPECT_EQ(layer.error().ToString().find('\n'), std::string::npos);
  }
  ExpectNoLayers();
}

// setfacl -m u:1000:r on a 2600 file: mask r--, owning group ---, so the
// kernel's mode is 2640 (its group bits are the mask).
TEST_F(ImportTarTest, AclModeHasTheMaskInItsGroupBits) {
  const std::vector<AclEntry> acl = {{AclTag::kUserObj, 6, kAclUndefinedId},
                                     {AclTag::kUser, 4, 1000},
                                     {AclTag::kGroupObj, 0, kAclUndefinedId},
                                     {AclTag::kMask, 4, kAclUndefinedId},
                                     {AclTag::kOther, 0, kAclUndefinedId}};
  const std::string text =
      PaxRecord("SCHILY.acl.access",
                "user::rw-,user:1000:r--,group::---,mask::r--,other::---");
  const std::string binary =
      PaxRecord("SCHILY.xattr.system.posix_acl_access", EncodeAclXattr(acl));
  struct Case {
    const char* what;
    uint32_t header_mode;
    std::string records;
  };
  const Case cases[] = {
      // libarchive overwrites the header's group bits with group:: when it
      // reads the text; the binary xattr then wins over the text.
      {"GNU tar --xattrs --acls (both forms)", 02640, text + binary},
      {"GNU tar --acls", 02640, text},
      {"bsdtar, strata export (header has group::)", 02600, text},
      {"binary xattr only, header with group::", 02600, binary},
  };
  for (const Case& c : cases) {
    TreeNodePtr tree = ImportTree(PaxTar("f", c.header_mode, c.records, "x\n"));
    ASSERT_NE(tree, nullptr) << c.what;
    const TreeNode* f = Find(tree, "f");
    ASSERT_NE(f, nullptr) << c.what;
    EXPECT_EQ(f->node.attr.mode, S_IFREG | 02640u) << c.what;
    ASSERT_EQ(f->node.xattrs.size(), 1u) << c.what;
    EXPECT_EQ(f->node.xattrs[0].name, kAclAccessXattr) << c.what;
    EXPECT_EQ(f->node.xattrs[0].value, EncodeAclXattr(acl)) << c.what;
  }
}

// Where the two forms disagree the binary one is kept, and the mode
// follows the ACL that was kept.
TEST_F(ImportTarTest, AclModeFollowsTheBinaryFormWhenBothDiffer) {
  const std::vector<AclEntry> acl = {{AclTag::kUserObj, 7, kAclUndefinedId},
                                     {AclTag::kGroup, 7, 50},
                                     {AclTag::kGroupObj, 4, kAclUndefinedId},
                                     {AclTag::kMask, 5, kAclUndefinedId},
                                     {AclTag::kOther, 1, kAclUndefinedId}};
  std::string records =
      PaxRecord("SCHILY.acl.access",
                "user::rw-,user:1000:r--,group::---,mask::r--,other::---") +
      PaxRecord("SCHILY.xattr.system.posix_acl_access", EncodeAclXattr(acl));
  TreeNodePtr tree = ImportTree(PaxTar("f", 0640, records, "x\n"));
  ASSERT_NE(tree, nullptr);
  const TreeNode* f = Find(tree, "f");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->node.attr.mode, S_IFREG | 0751u);
  ASSERT_EQ(f->node.xattrs.size(), 1u);
  EXPECT_EQ(f->node.xattrs[0].value, EncodeAclXattr(acl));
}

// A binary ACL the kernel could not have written is kept as bytes (as
// before), and says nothing about the mode.
TEST_F(ImportTarTest, UnreadableAclXattrLeavesTheHeaderMode) {
  std::string records =
      PaxRecord("SCHILY.xattr.system.posix_acl_access", "not an ACL");
  TreeNodePtr tree = ImportTree(PaxTar("f", 0640, records, "x\n"));
  ASSERT_NE(tree, nullptr);
  const TreeNode* f = Find(tree, "f");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->node.attr.mode, S_IFREG | 0640u);
  ASSERT_EQ(f->node.xattrs.size(), 1u);
  EXPECT_EQ(f->node.xattrs[0].value, "not an ACL");
}

TEST_F(ImportTarTest, MembersOfZerosGiveSparseBlobs) {
  {
    auto probe = sys::Open(dir_ + "/hole-probe", O_RDWR | O_CREAT, 0644);
    ASSERT_TRUE(probe);
    ASSERT_EQ(::ftruncate(probe->get(), 1 << 20), 0);
    auto st = sys::Fstat(probe->get());
    ASSERT_TRUE(st);
    if (st->st_blocks != 0) GTEST_SKIP() << "no sparse files on " << dir_;
  }
  // 8 MiB (read whole) and 20 MiB (streamed), 64 KiB of data in each.
  std::vector<Member> members;
  for (size_t size : {size_t{8} << 20, size_t{20} << 20}) {
    std::string data(size, '\0');
    data.replace(size / 2, 64 << 10, std::string(64 << 10, 'd'));
    members.emplace_back("f" + std::to_string(size), S_IFREG | 0644,
                         std::move(data));
  }
  auto layer = Import(MakeTar(members));
  ASSERT_TRUE(layer) << layer.error().ToString();
  auto tree = store_->LoadTree(layer->id);
  ASSERT_TRUE(tree) << tree.error().ToString();
  for (const Member& m : members) {
    const TreeNode* f = Find(*tree, m.name);
    ASSERT_NE(f, nullptr) << m.name;
    ASSERT_TRUE(f->node.flags & kFlagBlob) << m.name;
    std::string path = store_->blobs().PathOf(f->node.blob);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(static_cast<size_t>(st.st_size), m.data.size());
    EXPECT_LT(st.st_blocks * 512, 1 << 20) << m.name;
    auto content = sys::ReadFile(path);
    ASSERT_TRUE(content);
    EXPECT_TRUE(*content == m.data) << m.name;
  }
}

TEST_F(ImportTarTest, BrokenCompressionIsEio) {
  std::string gz = MakeTar(AllTypes(), "gzip");
  auto truncated = Import(gz.substr(0, gz.size() / 2));
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code(), EIO) << truncated.error().ToString();
  std::string zst = MakeTar(AllTypes(), "zstd");
  for (size_t i = zst.size() / 2; i < zst.size() / 2 + 16; ++i)
    zst[i] ^= 0x5a;
  auto corrupt = Import(zst);
  ASSERT_FALSE(corrupt);
  EXPECT_EQ(corrupt.error().code(), EIO) << corrupt.error().ToString();
  ExpectNoLayers();
}

}  // namespace
}  // namespace strata::layerdb
