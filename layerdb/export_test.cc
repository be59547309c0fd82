// Tests of ExportFlatTar and ExportLayerTar: build layers in a temp store,
// export them, read the tar back with libarchive and with GNU tar.

#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "layerdb/export_test_util.h"
#include "layerdb/exporters.h"
#include "layerdb/posix_acl.h"
#include "layerdb/tar_writer.h"

namespace strata::layerdb {
namespace {

using test_util::Find;
using test_util::HaveTool;
using test_util::Paths;
using test_util::ReadAll;
using test_util::ReadTar;
using test_util::RunShell;
using test_util::TarMember;

constexpr int64_t kT = 1700000000123456789;  // 2023-11-14, with ns

// security.capability v2, cap_net_bind_service effective+permitted; valid
// for the kernel, full of NUL bytes for the tar writer.
const std::string kCap(
    "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00",
    20);

std::vector<AclEntry> AccessAcl() {  // mask rw-, owning group r--
  return {{AclTag::kUserObj, 6, kAclUndefinedId},
          {AclTag::kUser, 6, 1001},
          {AclTag::kGroupObj, 4, kAclUndefinedId},
          {AclTag::kMask, 6, kAclUndefinedId},
          {AclTag::kOther, 4, kAclUndefinedId}};
}

std::vector<AclEntry> DefaultAcl() {
  return {{AclTag::kUserObj, 7, kAclUndefinedId},
          {AclTag::kGroupObj, 5, kAclUndefinedId},
          {AclTag::kGroup, 7, 50},
          {AclTag::kMask, 7, kAclUndefinedId},
          {AclTag::kOther, 5, kAclUndefinedId}};
}

std::string BigContent() {
  std::string s(3 * 1024 * 1024 + 7, '\0');
  for (size_t i = 0; i < s.size(); ++i)
    s[i] = static_cast<char>((i * 131) ^ (i >> 11));
  return s;
}

class ExportTest : public test_util::StoreTest {
 protected:
  // One layer with every file type and attribute a rootfs has.
  ImageInfo RichImage() {
    LayerBuilder b;
    EXPECT_TRUE(b.Add("bin", Meta(S_IFDIR | 0755, 0, 0, kT)));
    Node sh = File("#!/bin/sh\necho hi\n", 04755, 0, 0, kT);
    sh.attr.atime_ns = kT + 1;
    sh.attr.ctime_ns = kT + 2;
    sh.xattrs = {{"security.capability", kCap}, {"user.comment", "shell"}};
    EXPECT_TRUE(b.Add("bin/sh", sh));
    // "rsh" sorts first, so it is the name written as the file.
    EXPECT_TRUE(b.AddHardlink("bin/rsh", "bin/sh"));
    EXPECT_TRUE(b.Add("bin/big", File(BigContent(), 0640, 1000, 1000, kT)));
    EXPECT_TRUE(b.Add("dev", Meta(S_IFDIR | 0755)));
    EXPECT_TRUE(b.Add("dev/null", Dev(S_IFCHR, 1, 3, 0666)));
    EXPECT_TRUE(b.Add("dev/sda", Dev(S_IFBLK, 8, 0, 0660)));
    EXPECT_TRUE(b.Add("dev/wide", Dev(S_IFCHR, 259, 300000, 0600)));
    EXPECT_TRUE(b.Add("etc", Meta(S_IFDIR | 0755)));
    Node acl_file = File("acl\n", 0664, 0, 0, kT);
    acl_file.xattrs = {
        {std::string(kAclAccessXattr), EncodeAclXattr(AccessAcl())}};
    EXPECT_TRUE(b.Add("etc/acl-file", acl_file));
    EXPECT_TRUE(b.Add("etc/link", Symlink("../bin/sh")));
    Node sgid = Meta(S_IFDIR | 02775, 0, 50, kT);
    sgid.xattrs = {
        {std::string(kAclDefaultXattr), EncodeAclXattr(DefaultAcl())}};
    EXPECT_TRUE(b.Add("etc/sgid", sgid));
    EXPECT_TRUE(b.Add("home", Meta(S_IFDIR | 0755)));
    Node home = Meta(S_IFDIR | 0700, 100000, 4000000, kT);
    home.xattrs = {{"trusted.note", "t"}};
    EXPECT_TRUE(b.Add("home/user", home));
    EXPECT_TRUE(b.Add("run", Meta(S_IFDIR | 0755)));
    EXPECT_TRUE(b.Add("run/fifo", Meta(S_IFIFO | 0600)));
    EXPECT_TRUE(b.Add("run/sock", Meta(S_IFSOCK | 0777)));
    EXPECT_TRUE(b.Add("tmp", Meta(S_IFDIR | 01777)));
    return MakeImage("rich:1", {Commit(b)});
  }

  std::vector<TarMember> ExportFlat(const ImageInfo& img,
                                    const std::string& name) {
    Status s = ExportFlatTar(*store_, img, Out(name));
    EXPECT_TRUE(s) << s.error().ToString();
    return ReadTar(Out(name));
  }
};

TEST_F(ExportTest, FlatTarListsMembersInNameOrderWithoutRoot) {
  auto members = ExportFlat(RichImage(), "flat.tar");
  EXPECT_EQ(Paths(members),
            (std::vector<std::string>{
                "bin/", "bin/big", "bin/rsh", "bin/sh", "dev/", "dev/null",
                "dev/sda", "dev/wide", "etc/", "etc/acl-file", "etc/link",
                "etc/sgid/", "home/", "home/user/", "run/", "run/fifo",
                "tmp/"}));  // run/sock: tar cannot hold sockets
}

TEST_F(ExportTest, FlatTarKeepsTypesModesOwnersAndTimes) {
  auto members = ExportFlat(RichImage(), "flat.tar");
  const TarMember* rsh = Find(members, "bin/rsh");
  ASSERT_NE(rsh, nullptr);
  EXPECT_EQ(rsh->mode, static_cast<uint32_t>(S_IFREG | 04755));
  EXPECT_EQ(rsh->data, "#!/bin/sh\necho hi\n");
  EXPECT_EQ(rsh->mtime, kT / 1000000000);
  EXPECT_EQ(rsh->mtime_nsec, kT % 1000000000);
  EXPECT_TRUE(rsh->atime_set);
  EXPECT_EQ(rsh->atime_nsec, kT % 1000000000 + 1);
  EXPECT_TRUE(rsh->ctime_set);
  EXPECT_EQ(rsh->ctime_nsec, kT % 1000000000 + 2);
  EXPECT_EQ(rsh->uname, "");
  EXPECT_EQ(rsh->gname, "");

  const TarMember* big = Find(members, "bin/big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->mode, static_cast<uint32_t>(S_IFREG | 0640));
  EXPECT_EQ(big->uid, 1000);
  EXPECT_EQ(big->gid, 1000);
  EXPECT_EQ(big->size, static_cast<int64_t>(BigContent().size()));
  EXPECT_TRUE(big->data == BigContent());

  const TarMember* null = Find(members, "dev/null");
  ASSERT_NE(null, nullptr);
  EXPECT_EQ(null->mode, static_cast<uint32_t>(S_IFCHR | 0666));
  EXPECT_EQ(null->rdev_major, 1u);
  EXPECT_EQ(null->rdev_minor, 3u);
  const TarMember* sda = Find(members, "dev/sda");
  ASSERT_NE(sda, nullptr);
  EXPECT_EQ(sda->mode, static_cast<uint32_t>(S_IFBLK | 0660));
  EXPECT_EQ(sda->rdev_major, 8u);
  const TarMember* wide = Find(members, "dev/wide");
  ASSERT_NE(wide, nullptr);
  EXPECT_EQ(wide->rdev_major, 259u);
  EXPECT_EQ(wide->rdev_minor, 300000u);

  const TarMember* link = Find(members, "etc/link");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->mode & S_IFMT, static_cast<uint32_t>(S_IFLNK));
  EXPECT_EQ(link->symlink, "../bin/sh");
  EXPECT_EQ(link->size, 0);

  const TarMember* fifo = Find(members, "run/fifo");
  ASSERT_NE(fifo, nullptr);
  EXPECT_EQ(fifo->mode, static_cast<uint32_t>(S_IFIFO | 0600));

  const TarMember* tmp = Find(members, "tmp/");
  ASSERT_NE(tmp, nullptr);
  EXPECT_EQ(tmp->mode, static_cast<uint32_t>(S_IFDIR | 01777));

  const TarMember* home = Find(members, "home/user/");
  ASSERT_NE(home, nullptr);
  EXPECT_EQ(home->uid, 100000);
  EXPECT_EQ(home->gid, 4000000);  // beyond ustar's 7 octal digits: PAX
  EXPECT_EQ(home->mtime, kT / 1000000000);
}

TEST_F(ExportTest, FlatTarWritesXattrsAsSchilyRecords) {
  auto members = ExportFlat(RichImage(), "flat.tar");
  const TarMember* rsh = Find(members, "bin/rsh");
  ASSERT_NE(rsh, nullptr);
  EXPECT_EQ(rsh->xattrs,
            (std::map<std::string, std::string>{{"security.capability", kCap},
                                                {"user.comment", "shell"}}));
  const TarMember* home = Find(members, "home/user/");
  ASSERT_NE(home, nullptr);
  EXPECT_EQ(home->xattrs.at("trusted.note"), "t");
  std::string raw = ReadAll(Out("flat.tar"));
  EXPECT_NE(raw.find("SCHILY.xattr.security.capability="), std::string::npos);
  EXPECT_EQ(raw.find("LIBARCHIVE.xattr"), std::string::npos);
  EXPECT_EQ(raw.find("system.posix_acl"), std::string::npos);
}

TEST_F(ExportTest, FlatTarConvertsAclXattrsToAclRecords) {
  auto members = ExportFlat(RichImage(), "flat.tar");
  const TarMember* f = Find(members, "etc/acl-file");
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->xattrs.empty());
  EXPECT_EQ(f->acl_access,
            "user::rw-\ngroup::r--\nother::r--\nuser:1001:rw-\nmask::rw-");
  // The header has the owning group's bits, as bsdtar writes it; the
  // importer's direction gives back the kernel's mode and bytes.
  EXPECT_EQ(f->mode, static_cast<uint32_t>(S_IFREG | 0644));
  EXPECT_EQ(f->acls.mode, static_cast<uint32_t>(S_IFREG | 0664));
  ASSERT_EQ(f->acls.xattrs.size(), 1u);
  EXPECT_EQ(f->acls.xattrs[0].name, kAclAccessXattr);
  EXPECT_EQ(f->acls.xattrs[0].value, EncodeAclXattr(AccessAcl()));

  const TarMember* d = Find(members, "etc/sgid/");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->mode, static_cast<uint32_t>(S_IFDIR | 02775));
  EXPECT_EQ(d->acl_access, "");
  EXPECT_EQ(d->acl_default,
            "user::rwx\ngroup::r-x\ngroup:50:rwx\nmask::rwx\nother::r-x");
  ASSERT_EQ(d->acls.xattrs.size(), 1u);
  EXPECT_EQ(d->acls.xattrs[0].name, kAclDefaultXattr);
  EXPECT_EQ(d->acls.xattrs[0].value, EncodeAclXattr(DefaultAcl()));
  std::string raw = ReadAll(Out("flat.tar"));
  EXPECT_NE(raw.find("SCHILY.acl.access="), std::string::npos);
  EXPECT_NE(raw.find("SCHILY.acl.default="), std::string::npos);
}

TEST_F(ExportTest, FlatTarWritesHardlinksToTheFirstNameInWalkOrder) {
  LayerBuilder b;
  ASSERT_TRUE(b.Add("b/x", File(std::string(5000, 'x'), 0600, 7, 8, kT)));
  ASSERT_TRUE(b.AddHardlink("a/y", "b/x"));
  ASSERT_TRUE(b.AddHardlink("b/w", "b/x"));
  ASSERT_TRUE(b.Add("c", Symlink("b/x")));
  ASSERT_TRUE(b.AddHardlink("d", "c"));
  auto members = ExportFlat(MakeImage("links", {Commit(b)}), "links.tar");
  ASSERT_EQ(Paths(members), (std::vector<std::string>{"a/", "a/y", "b/", "b/w",
                                                      "b/x", "c", "d"}));
  EXPECT_EQ(members[1].hardlink, "");
  EXPECT_EQ(members[1].data, std::string(5000, 'x'));
  EXPECT_EQ(members[1].uid, 7);
  EXPECT_EQ(members[3].hardlink, "a/y");
  EXPECT_EQ(members[3].size, 0);
  EXPECT_EQ(members[3].data, "");
  EXPECT_EQ(members[4].hardlink, "a/y");
  EXPECT_EQ(members[5].symlink, "b/x");
  EXPECT_EQ(members[6].hardlink, "c");
}

TEST_F(ExportTest, FlatTarIsTheMergedView) {
  LayerBuilder l1;
  ASSERT_TRUE(l1.Add("etc/a", File("a")));
  ASSERT_TRUE(l1.Add("etc/b", File("b")));
  ASSERT_TRUE(l1.Add("opt/d/old", File("old")));
  LayerBuilder l2;
  ASSERT_TRUE(l2.Add("etc/.wh.a", Node{}));
  ASSERT_TRUE(l2.Add("opt/d", Meta(S_IFDIR | 0700)));
  ASSERT_TRUE(l2.Add("opt/d/.wh..wh..opq", Node{}));
  ASSERT_TRUE(l2.Add("opt/d/new", File("new")));
  auto members =
      ExportFlat(MakeImage("merged", {Commit(l1), Commit(l2)}), "merged.tar");
  EXPECT_EQ(Paths(members), (std::vector<std::string>{"etc/", "etc/b", "opt/",
                                                      "opt/d/", "opt/d/new"}));
  EXPECT_EQ(Find(members, "opt/d/")->mode,
            static_cast<uint32_t>(S_IFDIR | 0700));
}

TEST_F(ExportTest, LayerTarWritesWhiteoutsOpaqueDirsAndExternalLinks) {
  LayerBuilder b(/*allow_external_links=*/true);
  ASSERT_TRUE(b.Add("etc/.wh.passwd", Node{}));
  ASSERT_TRUE(b.Add("usr", Meta(S_IFDIR | 0755, 0, 0, kT)));
  ASSERT_TRUE(b.Add("usr/.wh..wh..opq", Node{}));
  ASSERT_TRUE(b.Add("usr/bin/tool", File("tool", 0755)));
  ASSERT_TRUE(b.AddHardlink("usr/bin/tool2", "bin/busybox"));
  TreeId layer = Commit(b);
  ASSERT_TRUE(ExportLayerTar(*store_, layer, Out("layer.tar")));
  auto members = ReadTar(Out("layer.tar"));
  // Implicit parents (etc/, usr/bin/) are not members: they have no
  // attributes of their own, and extractors create missing parents.
  ASSERT_EQ(Paths(members), (std::vector<std::string>{
                                "etc/.wh.passwd", "usr/", "usr/.wh..wh..opq",
                                "usr/bin/tool", "usr/bin/tool2"}));
  EXPECT_EQ(members[0].mode, static_cast<uint32_t>(S_IFREG | 0644));
  EXPECT_EQ(members[0].size, 0);
  EXPECT_EQ(members[1].mtime_nsec, kT % 1000000000);
  EXPECT_EQ(members[2].mode & S_IFMT, static_cast<uint32_t>(S_IFREG));
  EXPECT_EQ(members[2].size, 0);
  EXPECT_EQ(members[3].data, "tool");
  EXPECT_EQ(members[4].hardlink, "bin/busybox");
}

TEST_F(ExportTest, LayerTarKeepsAnExplicitOpaqueRoot) {
  LayerBuilder b;
  ASSERT_TRUE(b.Add("./", Meta(S_IFDIR | 0750, 1, 2, kT)));
  ASSERT_TRUE(b.Add(".wh..wh..opq", Node{}));
  ASSERT_TRUE(b.Add("f", File("f")));
  ASSERT_TRUE(ExportLayerTar(*store_, Commit(b), Out("root.tar")));
  auto members = ReadTar(Out("root.tar"));
  ASSERT_EQ(Paths(members),
            (std::vector<std::string>{"./", ".wh..wh..opq", "f"}));
  EXPECT_EQ(members[0].mode, static_cast<uint32_t>(S_IFDIR | 0750));
  EXPECT_EQ(members[0].uid, 1);
}

TEST_F(ExportTest, NamesDoNotDependOnTheLocale) {
  LayerBuilder b;
  ASSERT_TRUE(b.Add("caf\xc3\xa9", File("utf-8")));
  ASSERT_TRUE(b.Add("bad\xff", File("bytes")));
  ImageInfo img = MakeImage("names", {Commit(b)});
  ASSERT_TRUE(ExportFlatTar(*store_, img, Out("c.tar")));  // "C" locale
  locale_t utf8 = ::newlocale(LC_ALL_MASK, "C.UTF-8", static_cast<locale_t>(0));
  if (utf8 == static_cast<locale_t>(0)) GTEST_SKIP() << "no C.UTF-8 locale";
  locale_t old = ::uselocale(utf8);
  Status s = ExportFlatTar(*store_, img, Out("utf8.tar"));
  ::uselocale(old);
  ::freelocale(utf8);
  ASSERT_TRUE(s) << s.error().ToString();
  std::string raw = ReadAll(Out("c.tar"));
  EXPECT_TRUE(raw == ReadAll(Out("utf8.tar")));
  // UTF-8 as it is; other bytes marked as such.
  EXPECT_NE(raw.find("path=caf\xc3\xa9\n"), std::string::npos);
  size_t bin = raw.find("hdrcharset=BINARY\n");
  ASSERT_NE(bin, std::string::npos);
  EXPECT_EQ(raw.find("hdrcharset", bin + 1), std::string::npos);
  EXPECT_NE(raw.find("path=bad\xff\n"), std::string::npos);
}

TEST_F(ExportTest, TimesBeforeTheEpochKeepTheirMeaning) {
  LayerBuilder b;
  ASSERT_TRUE(b.Add("old", File("x", 0644, 0, 0, -1200000000)));
  ASSERT_TRUE(b.Add("older", File("y", 0644, 0, 0, -86400000000000)));
  auto members = ExportFlat(MakeImage("old", {Commit(b)}), "old.tar");
  ASSERT_EQ(members.size(), 2u);
  // libarchive's form: seconds and a fraction of the same sign.
  EXPECT_EQ(members[0].mtime, -1);
  EXPECT_EQ(members[0].mtime_nsec, 200000000);
  EXPECT_EQ(members[1].mtime, -86400);
  EXPECT_EQ(members[1].mtime_nsec, 0);
  EXPECT_NE(ReadAll(Out("old.tar")).find("mtime=-1.2\n"), std::string::npos);
}

TEST_F(ExportTest, OutputErrorKeepsItsErrno) {
  LayerBuilder b;
  ASSERT_TRUE(b.Add("big", File(BigContent())));
  auto tree = store_->LoadTree(Commit(b));
  ASSERT_TRUE(tree) << tree.error().ToString();
  auto tar = TarStream::Open(
      [](std::string_view) -> Status { return Error(ENOSPC, "write", "x"); },
      TarCompression::kGzip, "out.tar.gz");
  ASSERT_TRUE(tar) << tar.error().ToString();
  TarStream* streams[] = {tar->get()};
  Status s = WriteTreeAsTar(**tree, TreeKind::kLayer, store_->blobs(), streams);
  if (s) s = (*tar)->Finish();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOSPC);
  EXPECT_NE(s.error().detail().find("out.tar.gz"), std::string::npos)
      << s.error().ToString();
}

TEST_F(ExportTest, MissingOutputDirectoryIsEnoentNamingTheFile) {
  LayerBuilder b;
  ASSERT_TRUE(b.Add("f", File("f")));
  Status s = ExportFlatTar(*store_, MakeImage("f", {Commit(b)}),
                           Out("no/such/dir/f.tar"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOENT);
  EXPECT_NE(s.error().ToString().find(Out("no/such/dir/f.tar")),
            std::string::npos)
      << s.error().ToString();
}

TEST_F(ExportTest, UnknownLayerIsEnoent) {
  Status s = ExportLayerTar(*store_, 4242, Out("none.tar"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOENT);
  EXPECT_NE(s.error().ToString().find("4242"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(Out("none.tar")));
}

TEST_F(ExportTest, SameImageExportsByteIdentically) {
  ImageInfo img = RichImage();
  ASSERT_TRUE(ExportFlatTar(*store_, img, Out("one.tar")));
  ASSERT_TRUE(ExportFlatTar(*store_, img, Out("two.tar")));
  std::string one = ReadAll(Out("one.tar"));
  EXPECT_TRUE(one == ReadAll(Out("two.tar")));
  // Two zero blocks end the archive; no padding to a 10240-byte record.
  EXPECT_EQ(one.size() % 512, 0u);
  EXPECT_EQ(one.substr(one.size() - 1024), std::string(1024, '\0'));
  EXPECT_NE(one.substr(one.size() - 1536, 512), std::string(512, '\0'));
}

TEST_F(ExportTest, ReplacesAnExistingOutputFile) {
  ImageInfo img = RichImage();
  {
    std::FILE* f = std::fopen(Out("flat.tar").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("old", f);
    std::fclose(f);
  }
  ASSERT_TRUE(ExportFlatTar(*store_, img, Out("flat.tar")));
  EXPECT_EQ(ReadTar(Out("flat.tar")).size(), 17u);
  for (const auto& e : std::filesystem::directory_iterator(tmp_.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos)
        << e.path();
}

TEST_F(ExportTest, MissingBlobFailsNamingItAndLeavesNoFile) {
  ImageInfo img = RichImage();
  std::string content = BigContent();
  BlobKey key = Xxh128::Of(content);
  ASSERT_EQ(::unlink(store_->blobs().PathOf(key).c_str()), 0);
  Status s = ExportFlatTar(*store_, img, Out("broken.tar"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOENT);
  EXPECT_NE(s.error().detail().find("blob " + key.ToHex() + " of /bin/big"),
            std::string::npos)
      << s.error().ToString();
  EXPECT_NE(s.error().detail().find("rich:1"), std::string::npos);
  for (const auto& e : std::filesystem::directory_iterator(tmp_.path()))
    EXPECT_EQ(e.path().filename(), "store") << e.path();
}

TEST_F(ExportTest, TruncatedBlobIsEio) {
  ImageInfo img = RichImage();
  BlobKey key = Xxh128::Of(BigContent());
  std::string blob = store_->blobs().PathOf(key);
  ASSERT_EQ(::chmod(blob.c_str(), 0644), 0);  // blobs are read-only
  ASSERT_EQ(::truncate(blob.c_str(), 100), 0);
  Status s = ExportFlatTar(*store_, img, Out("broken.tar"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), EIO);
  EXPECT_NE(s.error().detail().find(key.ToHex()), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(Out("broken.tar")));
}

TEST_F(ExportTest, DashWritesToStdout) {
  LayerBuilder b;
  ASSERT_TRUE(b.Add("hello", File("world")));
  ImageInfo img = MakeImage("stdout", {Commit(b)});
  int file = ::open(Out("stdout.tar").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(file, 0);
  std::fflush(stdout);
  int saved = ::dup(STDOUT_FILENO);
  ::dup2(file, STDOUT_FILENO);
  Status s = ExportFlatTar(*store_, img, "-");
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ::close(file);
  ASSERT_TRUE(s) << s.error().ToString();
  auto members = ReadTar(Out("stdout.tar"));
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].data, "world");
}

// The independent oracle: GNU tar lists and extracts what we wrote, with
// owners, modes, devices, hardlinks, xattrs and ACLs.
TEST_F(ExportTest, GnuTarExtractsEverything) {
  if (!HaveTool("tar")) GTEST_SKIP() << "GNU tar is not installed";
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root: extracts devices, owners and trusted xattrs";
  {
    // tar fails (rather than skips) where the filesystem lacks ACLs.
    std::string probe = Out("acl-probe");
    std::ofstream(probe).put('x');
    std::string acl = EncodeAclXattr(AccessAcl());
    if (::setxattr(probe.c_str(), "system.posix_acl_access", acl.data(),
                   acl.size(), 0) != 0)
      GTEST_SKIP() << "the filesystem of /tmp does not support POSIX ACLs";
  }
  ASSERT_TRUE(ExportFlatTar(*store_, RichImage(), Out("flat.tar")));
  auto [rc, listing] = RunShell("tar -tvf " + Out("flat.tar") + " 2>&1");
  ASSERT_EQ(rc, 0) << listing;
  EXPECT_NE(listing.find("-rwsr-xr-x 0/0"), std::string::npos) << listing;
  EXPECT_NE(listing.find("bin/sh link to bin/rsh"), std::string::npos);
  EXPECT_NE(listing.find("crw-rw-rw- 0/0"), std::string::npos) << listing;
  EXPECT_NE(listing.find("1,3 1970-01-01 00:00 dev/null"), std::string::npos);
  EXPECT_NE(listing.find("100000/4000000"), std::string::npos);

  std::string root = Out("root");
  std::filesystem::create_directory(root);
  auto [xrc, xout] = RunShell(
      "tar --xattrs --xattrs-include='*' --acls "
      "--numeric-owner -xpf " +
      Out("flat.tar") + " -C " + root + " 2>&1");
  ASSERT_EQ(xrc, 0) << xout;

  struct stat sh {
  }, rsh{};
  ASSERT_EQ(::lstat((root + "/bin/sh").c_str(), &sh), 0);
  ASSERT_EQ(::lstat((root + "/bin/rsh").c_str(), &rsh), 0);
  EXPECT_EQ(sh.st_ino, rsh.st_ino);
  EXPECT_EQ(sh.st_nlink, 2u);
  EXPECT_EQ(sh.st_mode, static_cast<mode_t>(S_IFREG | 04755));
  EXPECT_EQ(sh.st_mtim.tv_sec, kT / 1000000000);
  EXPECT_EQ(sh.st_mtim.tv_nsec, kT % 1000000000);
  char buf[256];
  ssize_t n = ::getxattr((root + "/bin/sh").c_str(), "security.capability", buf,
                         sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), kCap);

  EXPECT_TRUE(ReadAll(root + "/bin/big") == BigContent());
  struct stat st {};
  ASSERT_EQ(::lstat((root + "/dev/wide").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(major(st.st_rdev), 259u);
  EXPECT_EQ(minor(st.st_rdev), 300000u);
  ASSERT_EQ(::lstat((root + "/run/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(std::filesystem::read_symlink(root + "/etc/link"), "../bin/sh");
  ASSERT_EQ(::lstat((root + "/home/user").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000u);
  EXPECT_EQ(st.st_gid, 4000000u);

  // The kernel's ACL bytes and mode, exactly as the store held them.
  ASSERT_EQ(::lstat((root + "/etc/acl-file").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, static_cast<mode_t>(S_IFREG | 0664));
  n = ::getxattr((root + "/etc/acl-file").c_str(), "system.posix_acl_access",
                 buf, sizeof buf);
  ASSERT_GT(n, 0) << "ACL not restored";
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)),
            EncodeAclXattr(AccessAcl()));
  n = ::getxattr((root + "/etc/sgid").c_str(), "system.posix_acl_default", buf,
                 sizeof buf);
  ASSERT_GT(n, 0) << "default ACL not restored";
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)),
            EncodeAclXattr(DefaultAcl()));
}

}  // namespace
}  // namespace strata::layerdb
