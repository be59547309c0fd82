#pragma once

// Helpers shared by export_test.cc and export_oci_test.cc: a temp store to
// build layers in, and a libarchive reader that returns every field of
// every member of a tar (plain or gzip) so that tests can assert on them.
// The import tests use ArchiveWriteToString to build their tars.

#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include "layerdb/layer_builder.h"
#include "layerdb/posix_acl.h"
#include "layerdb/store.h"

namespace strata::layerdb::test_util {

class ScopedTempDir {
 public:
  ScopedTempDir() {
    char tmpl[] = "/tmp/strata-export-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~ScopedTempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One tar member as libarchive reads it back.
struct TarMember {
  std::string path;
  uint32_t mode = 0;  // with the file type, as in the header
  int64_t uid = 0, gid = 0, size = 0;
  std::string uname, gname;
  int64_t mtime = 0, mtime_nsec = 0;
  bool atime_set = false, ctime_set = false;
  int64_t atime = 0, atime_nsec = 0, ctime = 0, ctime_nsec = 0;
  std::string hardlink, symlink;
  uint64_t rdev_major = 0, rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string acl_access, acl_default;  // libarchive's text form
  ArchiveAcls acls;                     // the same, as kernel xattrs
  std::string data;
};

inline std::string CString(const char* s) {
  return s != nullptr ? s : "";
}

// archive_entry_acl_to_text returns a malloc'd string the caller frees.
inline std::string AclText(archive_entry* e, int type) {
  char* text = archive_entry_acl_to_text(e, nullptr, type);
  std::string out = CString(text);
  free(text);  // NOLINT(cppcoreguidelines-no-malloc)
  return out;
}

inline TarMember ReadMember(archive* a, archive_entry* e) {
  TarMember m;
  m.path = CString(archive_entry_pathname(e));
  m.mode = archive_entry_mode(e);
  m.uid = archive_entry_uid(e);
  m.gid = archive_entry_gid(e);
  m.size = archive_entry_size(e);
  m.uname = CString(archive_entry_uname(e));
  m.gname = CString(archive_entry_gname(e));
  m.mtime = archive_entry_mtime(e);
  m.mtime_nsec = archive_entry_mtime_nsec(e);
  m.atime_set = archive_entry_atime_is_set(e) != 0;
  m.atime = archive_entry_atime(e);
  m.atime_nsec = archive_entry_atime_nsec(e);
  m.ctime_set = archive_entry_ctime_is_set(e) != 0;
  m.ctime = archive_entry_ctime(e);
  m.ctime_nsec = archive_entry_ctime_nsec(e);
  m.hardlink = CString(archive_entry_hardlink(e));
  m.symlink = CString(archive_entry_symlink(e));
  m.rdev_major = archive_entry_rdevmajor(e);
  m.rdev_minor = archive_entry_rdevminor(e);
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
    m.xattrs[name] = std::string(static_cast<const char*>(value), size);
  // libarchive prints the three mode entries even without an access ACL.
  if (archive_entry_acl_count(e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS) > 3)
    m.acl_access = AclText(e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS);
  if (archive_entry_acl_count(e, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT) > 0)
    m.acl_default = AclText(e, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT);
  auto acls = AclXattrsFromArchiveEntry(e);
  if (acls) m.acls = *acls;
  char buf[65536];
  la_ssize_t n;
  while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
    m.data.append(buf, static_cast<size_t>(n));
  if (n < 0) ADD_FAILURE() << m.path << ": " << archive_error_string(a);
  return m;
}

// Every member of the tar (plain or compressed) at `path`.
inline std::vector<TarMember> ReadTar(const std::string& path) {
  std::vector<TarMember> out;
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  if (archive_read_open_filename(a, path.c_str(), 65536) != ARCHIVE_OK) {
    ADD_FAILURE() << path << ": " << archive_error_string(a);
    archive_read_free(a);
    return out;
  }
  archive_entry* e = nullptr;
  int r;
  // ARCHIVE_WARN: a name that is not valid in the reader's locale.
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
         r == ARCHIVE_WARN)
    out.push_back(ReadMember(a, e));
  if (r != ARCHIVE_EOF)
    ADD_FAILURE() << path << ": " << archive_error_string(a);
  archive_read_free(a);
  return out;
}

// Opens the libarchive writer `a` (format and filters already set) to
// append everything it writes to *out.
inline void ArchiveWriteToString(archive* a, std::string* out) {
  archive_write_open(
      a, out, nullptr,
      [](archive*, void* d, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(d)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
}

inline std::vector<std::string> Paths(const std::vector<TarMember>& members) {
  std::vector<std::string> out;
  for (const TarMember& m : members)
    out.push_back(m.path);
  return out;
}

inline const TarMember* Find(const std::vector<TarMember>& members,
                             const std::string& path) {
  for (const TarMember& m : members)
    if (m.path == path) return &m;
  return nullptr;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `cmd` with /bin/sh; returns its exit status and stdout.
inline std::pair<int, std::string> RunShell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, out};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline bool HaveTool(const std::string& tool) {
  return RunShell("command -v " + tool + " >/dev/null 2>&1").first == 0;
}

// A fixture with an empty read-write store in a temp dir.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    auto s = Store::Open(tmp_.path() + "/store", Store::Mode::kReadWrite);
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }

  static Node Meta(uint32_t mode, uint32_t uid = 0, uint32_t gid = 0,
                   int64_t mtime_ns = 0) {
    Node n;
    n.attr.mode = mode;
    n.attr.uid = uid;
    n.attr.gid = gid;
    n.attr.mtime_ns = mtime_ns;
    return n;
  }

  // A regular file: inline up to kInlineMaxBytes, else a blob.
  Node File(const std::string& content, uint32_t perm = 0644, uint32_t uid = 0,
            uint32_t gid = 0, int64_t mtime_ns = 0) {
    Node n = Meta(S_IFREG | perm, uid, gid, mtime_ns);
    n.attr.size = content.size();
    if (content.size() <= kInlineMaxBytes) {
      n.flags |= kFlagInline;
      n.inline_data = content;
      return n;
    }
    auto key = store_->blobs().Put(content);
    EXPECT_TRUE(key) << key.error().ToString();
    if (key) n.blob = *key;
    n.flags |= kFlagBlob;
    return n;
  }

  static Node Dev(uint32_t type, unsigned major_no, unsigned minor_no,
                  uint32_t perm) {
    Node n = Meta(type | perm);
    n.attr.rdev = makedev(major_no, minor_no);
    return n;
  }

  static Node Symlink(const std::string& target) {
    Node n = Meta(S_IFLNK | 0777);
    n.target = target;
    n.attr.size = target.size();
    return n;
  }

  TreeId Commit(const LayerBuilder& b) {
    auto l = store_->CommitLayer(b, LayerInfo{});
    EXPECT_TRUE(l) << l.error().ToString();
    return l ? l->id : 0;
  }

  ImageInfo MakeImage(const std::string& name,
                      const std::vector<TreeId>& layers) {
    nlohmann::json config = {
        {"architecture", "amd64"},
        {"os", "linux"},
        {"config", {{"Env", {"PATH=/bin"}}, {"Cmd", {"/bin/sh"}}}},
        {"rootfs",
         {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}}};
    auto img = store_->CreateImage(name, layers, config);
    EXPECT_TRUE(img) << img.error().ToString();
    return img ? *img : ImageInfo{};
  }

  std::string Out(const std::string& name) const {
    return tmp_.path() + "/" + name;
  }

  ScopedTempDir tmp_;
  std::unique_ptr<Store> store_;
};

}  // namespace strata::layerdb::test_util
