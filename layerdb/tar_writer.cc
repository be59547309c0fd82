#include "layerdb/tar_writer.h"

#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <unordered_map>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"
#include "layerdb/posix_acl.h"

namespace strata::layerdb {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr size_t kChunkBytes = 1 << 20;
// libarchive hands the callback whole blocks of this size. With
// bytes_in_last_block = 1 the block size never shows in the output.
constexpr int kBlockBytes = 64 * 1024;

std::shared_ptr<spdlog::logger> Logger() {
  auto l = spdlog::get("layerdb");
  return l ? l : spdlog::default_logger();
}

// libarchive's error space, mapped once: its own codes (ARCHIVE_ERRNO_MISC
// is -1) become EIO; real errnos pass through.
int ArchiveErrno(archive* a) {
  int code = archive_errno(a);
  return code > 0 ? code : EIO;
}

std::string ArchiveMessage(archive* a) {
  const char* msg = archive_error_string(a);
  return msg != nullptr ? msg : "unknown libarchive error";
}

using TimeSetter = decltype(&archive_entry_set_mtime);

// libarchive takes seconds and a fraction of the same sign: (-1, 200000000)
// is written as "mtime=-1.2", i.e. -1.2 s, as GNU tar and Go read it. A time
// in (-1 s, 0) has no such form and is written as -1 s.
void SetTime(TimeSetter set, archive_entry* e, int64_t ns) {
  constexpr int64_t kNs = 1000000000;
  int64_t sec = ns / kNs;  // rounds toward zero
  int64_t frac = ns % kNs;
  if (frac < 0 && sec == 0) {
    sec = -1;
    frac = 0;
  }
  set(e, static_cast<time_t>(sec), frac < 0 ? -frac : frac);
}

// libarchive converts names from the thread's locale to UTF-8 for PAX
// records. Under the C locale every non-ASCII name fails that conversion
// and is written with hdrcharset=BINARY (which GNU tar 1.34 warns about);
// under a UTF-8 locale valid UTF-8 names are written as they are. Writing
// headers under C.UTF-8 makes the output independent of the caller's
// locale: UTF-8 names as they are, other bytes as BINARY.
locale_t Utf8Locale() {
  static const locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr);
  return utf8;
}

// Switches this thread (only) to Utf8Locale() for its lifetime.
class Utf8LocaleScope {
 public:
  Utf8LocaleScope() {
    if (Utf8Locale() != nullptr) old_ = ::uselocale(Utf8Locale());
  }
  ~Utf8LocaleScope() {
    if (old_ != nullptr) ::uselocale(old_);
  }
  Utf8LocaleScope(const Utf8LocaleScope&) = delete;
  Utf8LocaleScope& operator=(const Utf8LocaleScope&) = delete;
  Utf8LocaleScope(Utf8LocaleScope&&) = delete;
  Utf8LocaleScope& operator=(Utf8LocaleScope&&) = delete;

 private:
  locale_t old_ = nullptr;
};

}  // namespace

// ---- TarStream ----

TarStream::TarStream(TarConsumer out, std::string label)
    : out_(std::move(out)), label_(std::move(label)) {}

TarStream::~TarStream() {
  // archive_write_free closes an unfinished archive, which writes to the
  // consumer; after a failure that consumer may already be gone.
  out_ = nullptr;
  if (archive_ != nullptr) archive_write_free(archive_);
}

ssize_t TarStream::WriteCallback(archive* a, void* self_ptr, const void* buf,
                                 size_t len) {
  auto* self = static_cast<TarStream*>(self_ptr);
  if (!self->out_) return static_cast<ssize_t>(len);
  try {
    Status s = self->out_(std::string_view(static_cast<const char*>(buf), len));
    if (s) return static_cast<ssize_t>(len);
    self->out_error_ = s.error();
  } catch (const std::bad_alloc&) {
    self->out_error_ = Error(ENOMEM, "write", self->label_);
  }
  archive_set_error(a, self->out_error_->code(), "%s",
                    self->out_error_->ToString().c_str());
  return -1;
}

Result<std::unique_ptr<TarStream>> TarStream::Open(TarConsumer out,
                                                   TarCompression compression,
                                                   std::string label) {
  std::unique_ptr<TarStream> s(new TarStream(std::move(out), std::move(label)));
  s->archive_ = archive_write_new();
  if (s->archive_ == nullptr) return Error(ENOMEM, "archive_write_new");
  archive* a = s->archive_;
  bool ok =
      // Full PAX, not restricted: restricted PAX drops sub-second mtimes,
      // atime and ctime unless some other field needs a PAX record.
      archive_write_set_format_pax(a) == ARCHIVE_OK &&
      // Only SCHILY.xattr (what GNU tar and Go read), not a second
      // LIBARCHIVE.xattr copy of each.
      archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY") ==
          ARCHIVE_OK &&
      archive_write_set_bytes_per_block(a, kBlockBytes) == ARCHIVE_OK &&
      // No zero padding to a whole block: it would land after the gzip
      // trailer, and the plain tar must equal what gzip compressed.
      archive_write_set_bytes_in_last_block(a, 1) == ARCHIVE_OK;
  // Without C.UTF-8 names would depend on the caller's locale; write them
  // all as bytes instead (hdrcharset=BINARY on every PAX header).
  if (ok && Utf8Locale() == nullptr)
    ok = archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY") ==
         ARCHIVE_OK;
  if (ok && compression == TarCompression::kGzip) {
    const std::string level = std::to_string(kGzipLevel);
    ok = archive_write_add_filter_gzip(a) == ARCHIVE_OK &&
         archive_write_set_filter_option(a, "gzip", "compression-level",
                                         level.c_str()) == ARCHIVE_OK &&
         // The gzip filter stores time(NULL) in the header unless told not
         // to (archive_write_add_filter_gzip.c), which would change every
         // layer digest on every export.
         archive_write_set_filter_option(a, "gzip", "timestamp", nullptr) ==
             ARCHIVE_OK;
  }
  if (ok)
    ok = archive_write_open2(a, s.get(), nullptr, &TarStream::WriteCallback,
                             nullptr, nullptr) == ARCHIVE_OK;
  if (!ok) return s->ToError("open tar writer", "");
  return s;
}

Error TarStream::ToError(const char* op, const std::string& what) const {
  std::string where = what.empty() ? label_ : label_ + ", member " + what;
  if (out_error_) return out_error_->WithContext(where);
  return Error(ArchiveErrno(archive_), op,
               where + ": " + ArchiveMessage(archive_));
}

Status TarStream::WriteHeader(archive_entry* entry, const std::string& what) {
  int r;
  {
    Utf8LocaleScope utf8;
    r = archive_write_header(archive_, entry);
  }
  if (r == ARCHIVE_WARN) {
    Logger()->warn("tar header: {}: path=/{}", ArchiveMessage(archive_), what);
    return Ok();
  }
  if (r != ARCHIVE_OK) return ToError("write tar header", what);
  return Ok();
}

Status TarStream::WriteData(std::string_view data, const std::string& what) {
  la_ssize_t n = archive_write_data(archive_, data.data(), data.size());
  if (n < 0 || static_cast<size_t>(n) != data.size())
    return ToError("write tar data", what);
  return Ok();
}

Status TarStream::Finish() {
  if (archive_write_close(archive_) != ARCHIVE_OK)
    return ToError("close tar", "");
  return Ok();
}

// ---- WriteTreeAsTar ----

namespace {

class TreeWriter {
 public:
  TreeWriter(TreeKind kind, const BlobStore& blobs,
             std::span<TarStream* const> streams)
      : kind_(kind),
        blobs_(blobs),
        streams_(streams),
        entry_(archive_entry_new()) {}
  ~TreeWriter() { archive_entry_free(entry_); }
  TreeWriter(const TreeWriter&) = delete;
  TreeWriter& operator=(const TreeWriter&) = delete;
  TreeWriter(TreeWriter&&) = delete;
  TreeWriter& operator=(TreeWriter&&) = delete;

  Status Write(const TreeNode& root);

 private:
  // A member still to write: `dir` is its parent's member name with a
  // trailing "/" ("" at the top), `name` points into the tree.
  struct Pending {
    const TreeNode* node;
    std::string dir;
    std::string_view name;
  };

  bool layer() const { return kind_ == TreeKind::kLayer; }
  void Push(const TreeNode& dir_node, const std::string& dir);
  Status WriteMember(const Pending& p);
  Status WriteNonDir(const Node& node, const TreeNode* inode,
                     const std::string& path);
  Status WriteDir(const TreeNode& n, const std::string& path);
  Status WriteLink(const Node& node, const std::string& path,
                   const std::string& target);
  Status WriteMarker(const std::string& member);
  Status WriteContent(const Node& node, const std::string& path);
  Status StreamBlob(const Node& node, const std::string& path);
  void SetAttrs(const Node& node, const std::string& member);
  Status SetXattrs(const Node& node, const std::string& path);
  Status Header(const std::string& path);
  Status Data(std::string_view data, const std::string& path);

  TreeKind kind_;
  const BlobStore& blobs_;
  std::span<TarStream* const> streams_;
  archive_entry* entry_;
  std::vector<Pending> stack_;
  // First member name of each inode with several names.
  std::unordered_map<const TreeNode*, std::string> first_name_;
  std::vector<char> buf_;
};

Status TreeWriter::Write(const TreeNode& root) {
  if (entry_ == nullptr) return Error(ENOMEM, "archive_entry_new");
  // A layer whose root came from a "./" member keeps it; the root of a view
  // is not a member (as in `docker export`).
  if (layer() && !(root.node.flags & kFlagImplicit)) {
    SetAttrs(root.node, "./");
    STRATA_RETURN_IF_ERROR(SetXattrs(root.node, ""));
    STRATA_RETURN_IF_ERROR(Header(""));
  }
  if (layer() && root.node.is_opaque())
    STRATA_RETURN_IF_ERROR(WriteMarker(std::string(kOpaqueMarker)));
  Push(root, "");
  while (!stack_.empty()) {
    Pending p = std::move(stack_.back());
    stack_.pop_back();
    STRATA_RETURN_IF_ERROR(WriteMember(p));
  }
  return Ok();
}

void TreeWriter::Push(const TreeNode& dir_node, const std::string& dir) {
  // Reversed, so that the smallest name is popped first: a pre-order walk
  // in name order, the order of the index and of readdir.
  for (auto it = dir_node.children.rbegin(); it != dir_node.children.rend();
       ++it)
    stack_.push_back({it->second.get(), dir, it->first});
}

Status TreeWriter::WriteMember(const Pending& p) {
  const Node& node = p.node->node;
  std::string path = p.dir + std::string(p.name);
  if (layer() && node.is_whiteout())
    return WriteMarker(p.dir + std::string(kWhiteoutPrefix) +
                       std::string(p.name));
  if (layer() && (node.flags & kFlagExtLink))
    return WriteLink(node, path, node.target);
  if (node.attr.is_dir()) return WriteDir(*p.node, path);
  return WriteNonDir(node, p.node, path);
}

Status TreeWriter::WriteNonDir(const Node& node, const TreeNode* inode,
                               const std::string& path) {
  if (node.attr.type() == S_IFSOCK) {
    Logger()->warn("export: skipping socket, tar cannot hold one: path=/{}",
                   path);
    return Ok();
  }
  if (node.attr.nlink > 1) {
    auto [it, first] = first_name_.try_emplace(inode, path);
    if (!first) return WriteLink(node, path, it->second);
  }
  switch (node.attr.type()) {
    case S_IFREG:
      SetAttrs(node, path);
      STRATA_RETURN_IF_ERROR(SetXattrs(node, path));
      STRATA_RETURN_IF_ERROR(Header(path));
      return WriteContent(node, path);
    case S_IFLNK:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
      SetAttrs(node, path);
      if (node.attr.is_symlink())
        archive_entry_set_symlink(entry_, node.target.c_str());
      archive_entry_set_rdevmajor(
          entry_,
          static_cast<dev_t>(major(static_cast<dev_t>(node.attr.rdev))));
      archive_entry_set_rdevminor(
          entry_,
          static_cast<dev_t>(minor(static_cast<dev_t>(node.attr.rdev))));
      STRATA_RETURN_IF_ERROR(SetXattrs(node, path));
      return Header(path);
    default:
      return Error(EIO, "export",
                   "/" + path + ": unknown file type " +
                       std::to_string(node.attr.type() >> 12));
  }
}

Status TreeWriter::WriteDir(const TreeNode& n, const std::string& path) {
  std::string member = path + "/";
  // An implicit directory of a layer (only a parent of members) has no
  // attributes of its own: writing it would make a re-import override the
  // lower directory's attributes. Extractors create missing parents.
  if (!(layer() && (n.node.flags & kFlagImplicit))) {
    SetAttrs(n.node, member);
    STRATA_RETURN_IF_ERROR(SetXattrs(n.node, path));
    STRATA_RETURN_IF_ERROR(Header(path));
  }
  // The marker follows its directory, as docker and containerd write it.
  if (layer() && n.node.is_opaque())
    STRATA_RETURN_IF_ERROR(WriteMarker(member + std::string(kOpaqueMarker)));
  Push(n, member);
  return Ok();
}

Status TreeWriter::WriteLink(const Node& node, const std::string& path,
                             const std::string& target) {
  SetAttrs(node, path);
  archive_entry_set_filetype(entry_, AE_IFREG);
  archive_entry_set_size(entry_, 0);
  archive_entry_set_hardlink(entry_, target.c_str());
  return Header(path);
}

Status TreeWriter::WriteMarker(const std::string& member) {
  archive_entry_clear(entry_);
  archive_entry_set_pathname(entry_, member.c_str());
  archive_entry_set_mode(entry_, S_IFREG | 0644);
  archive_entry_set_size(entry_, 0);
  archive_entry_set_mtime(entry_, 0, 0);
  return Header(member);
}

void TreeWriter::SetAttrs(const Node& node, const std::string& member) {
  archive_entry_clear(entry_);
  archive_entry_set_pathname(entry_, member.c_str());
  archive_entry_set_mode(entry_, node.attr.mode);
  archive_entry_set_uid(entry_, node.attr.uid);
  archive_entry_set_gid(entry_, node.attr.gid);
  archive_entry_set_size(
      entry_, node.attr.is_reg() ? static_cast<la_int64_t>(node.attr.size) : 0);
  SetTime(archive_entry_set_mtime, entry_, node.attr.mtime_ns);
  if (node.attr.atime_ns != 0)
    SetTime(archive_entry_set_atime, entry_, node.attr.atime_ns);
  if (node.attr.ctime_ns != 0)
    SetTime(archive_entry_set_ctime, entry_, node.attr.ctime_ns);
}

Status TreeWriter::SetXattrs(const Node& node, const std::string& path) {
  for (const Xattr& x : node.xattrs) {
    if (IsAclXattr(x.name)) {
      // As ACL records, so that tar --acls and bsdtar restore real ACLs.
      auto acl = ParseAclXattr(x.value);
      Status added = acl ? AddAclToArchiveEntry(entry_, x.name, *acl)
                         : Status(acl.error());
      if (added) continue;
      // Keep the bytes rather than lose them: a plain xattr record.
      Logger()->warn("export: ACL kept as a plain xattr: path=/{} {}", path,
                     added.error().ToString());
    }
    archive_entry_xattr_add_entry(entry_, x.name.c_str(), x.value.data(),
                                  x.value.size());
  }
  return Ok();
}

Status TreeWriter::WriteContent(const Node& node, const std::string& path) {
  if (node.flags & kFlagInline) {
    if (node.inline_data.size() != node.attr.size)
      return Error(EIO, "export",
                   "/" + path + ": inline content has " +
                       std::to_string(node.inline_data.size()) +
                       " bytes, the record says " +
                       std::to_string(node.attr.size));
    return Data(node.inline_data, path);
  }
  if (node.flags & kFlagBlob) return StreamBlob(node, path);
  if (node.attr.size != 0)
    return Error(EIO, "export",
                 "/" + path + ": no content recorded for " +
                     std::to_string(node.attr.size) + " bytes");
  return Ok();
}

Status TreeWriter::StreamBlob(const Node& node, const std::string& path) {
  const std::string what = "blob " + node.blob.ToHex() + " of /" + path;
  auto fd = blobs_.OpenBlob(node.blob);
  if (!fd) return fd.error().WithContext(what);
  auto st = sys::Fstat(fd->get());
  if (!st) return st.error().WithContext(what);
  if (static_cast<uint64_t>(st->st_size) != node.attr.size)
    return Error(EIO, "export",
                 what + ": has " + std::to_string(st->st_size) +
                     " bytes, the record says " +
                     std::to_string(node.attr.size));
  buf_.resize(kChunkBytes);
  for (uint64_t left = node.attr.size; left > 0;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf_.size()));
    auto n = sys::ReadFull(
        fd->get(), std::as_writable_bytes(std::span(buf_.data(), want)));
    if (!n) return n.error().WithContext(what);
    if (*n == 0)
      return Error(EIO, "export", what + ": truncated while reading");
    STRATA_RETURN_IF_ERROR(Data(std::string_view(buf_.data(), *n), path));
    left -= *n;
  }
  return Ok();
}

Status TreeWriter::Header(const std::string& path) {
  for (TarStream* s : streams_)
    STRATA_RETURN_IF_ERROR(s->WriteHeader(entry_, path));
  return Ok();
}

Status TreeWriter::Data(std::string_view data, const std::string& path) {
  for (TarStream* s : streams_)
    STRATA_RETURN_IF_ERROR(s->WriteData(data, path));
  return Ok();
}

}  // namespace

Status WriteTreeAsTar(const TreeNode& root, TreeKind kind,
                      const BlobStore& blobs,
                      std::span<TarStream* const> streams) {
  TreeWriter w(kind, blobs, streams);
  return w.Write(root);
}

// ---- OutputFile ----

namespace {
std::string DirOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}
}  // namespace

Result<OutputFile> OutputFile::Create(const std::string& path) {
  if (path == "-") {
    int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return Error::FromErrno("dup", "stdout");
    return OutputFile(path, "", UniqueFd(fd));
  }
  static std::atomic<uint64_t> counter{0};
  std::string base = std::filesystem::path(path).filename().string();
  for (;;) {
    std::string temp = DirOf(path) + "/." + base + ".tmp-" +
                       std::to_string(::getpid()) + "-" +
                       std::to_string(counter++);
    auto fd = sys::Open(temp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd) return OutputFile(path, temp, std::move(*fd));
    if (fd.error().code() != EEXIST)
      return Error(fd.error().code(), "create", path);
  }
}

OutputFile::OutputFile(OutputFile&& o) noexcept
    : path_(std::move(o.path_)),
      temp_(std::exchange(o.temp_, {})),
      fd_(std::move(o.fd_)) {}

OutputFile::~OutputFile() {
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

Status OutputFile::Write(std::string_view data) {
  Status s = sys::WriteFull(fd_.get(), std::as_bytes(std::span(data)));
  if (!s) return s.error().WithContext(path_ == "-" ? "stdout" : path_);
  return Ok();
}

Status OutputFile::Commit() {
  return CommitAs(path_);
}

Status OutputFile::CommitAs(const std::string& final_path) {
  if (temp_.empty()) return fd_.Close();
  if (::fsync(fd_.get()) != 0) return Error::FromErrno("fsync", temp_);
  STRATA_RETURN_IF_ERROR(fd_.Close());
  if (::rename(temp_.c_str(), final_path.c_str()) != 0)
    return Error::FromErrno("rename", final_path);
  temp_.clear();
  path_ = final_path;
  // The rename is only durable once the directory is.
  STRATA_ASSIGN_OR_RETURN(UniqueFd dir,
                          sys::Open(DirOf(final_path), O_RDONLY | O_DIRECTORY));
  if (::fsync(dir.get()) != 0)
    return Error::FromErrno("fsync", DirOf(final_path));
  return Ok();
}

Result<UniqueFd> LockForExport(const Store& store) {
  auto lock = store.LockShared();
  if (lock) return std::move(*lock);
  int code = lock.error().code();
  if (code == EACCES || code == EPERM || code == EROFS) return UniqueFd();
  return lock.error();
}

}  // namespace strata::layerdb
