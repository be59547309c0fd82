// ImportDirLayer: one layer from a host directory tree (importers.h).
//
// The walk never follows a symlink below the root: every name is opened
// relative to its parent directory's fd with O_NOFOLLOW, so a tree that is
// changed while we read it cannot make us read outside it. It is iterative
// and keeps at most kMaxOpenDirs directory fds open, however deep the tree.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "layerdb/base/sys.h"
#include "layerdb/importers.h"
#include "layerdb/layer_builder.h"
#include "layerdb/node.h"

namespace strata::layerdb {

namespace {

// As in import_tar.cc: files up to this size are read into memory and stored
// with BlobStore::Put, which confirms a dedup hit without writing a temp
// file; larger ones are streamed.
constexpr uint64_t kBufferedMaxBytes = 16 << 20;
constexpr size_t kReadChunk = 1 << 20;
constexpr uint64_t kProgressStep = 4 << 20;
// Directory fds kept open along the current path; deeper ancestors are
// closed and reopened through ".." when the walk climbs back to them.
constexpr size_t kMaxOpenDirs = 64;

// ---------------------------------------------------------------------------
// Thin syscall wrappers. FIXME: move to layerdb/base/sys.h; `strata commit`
// (upper directory -> layer) needs the same calls.

Error AtPath(const Error& e, const std::string& path) {
  return {e.code(), e.op(), path};
}

Result<struct stat> StatFd(int fd, const std::string& path) {
  auto st = sys::Fstat(fd);
  if (!st) return AtPath(st.error(), path);
  return st;
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

// Names in the directory open at `fd`, without "." and "..", unsorted.
// Reads through a dup so that `fd` stays ours (closedir closes its fd).
Result<std::vector<std::string>> ListDirFd(int fd, const std::string& path) {
  UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) return Error::FromErrno("dup", path);
  std::unique_ptr<DIR, DirCloser> dir(::fdopendir(dup.get()));
  if (dir == nullptr) return Error::FromErrno("fdopendir", path);
  dup.Release();  // the DIR owns it now
  std::vector<std::string> names;
  errno = 0;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): one DIR stream, one thread.
  while (struct dirent* e = ::readdir(dir.get())) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  if (errno != 0) return Error::FromErrno("readdir", path);
  return names;
}

// The target of the symlink open at `fd` (O_PATH|O_NOFOLLOW); readlinkat
// with an empty name reads the link the fd refers to (readlink(2)).
Result<std::string> ReadLinkFd(int fd, const std::string& path) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(fd, "", buf.data(), buf.size());
    if (n < 0) return Error::FromErrno("readlink", path);
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);  // possibly truncated: retry larger
  }
}

// Where an inode's xattrs are read from. Regular files and directories are
// open for reading and use f*xattr. Other types are only opened O_PATH
// (opening a fifo blocks, opening a device may act on it), and f*xattr reject
// O_PATH fds with EBADF; /proc/self/fd/N resolves to the inode itself,
// symlinks included (proc(5)). Without /proc, fall back to the host path.
struct XattrSource {
  int fd;
  bool path_fd;
  const std::string& host_path;
};

ssize_t ListXattrRaw(const XattrSource& s, char* buf, size_t size) {
  if (!s.path_fd) return ::flistxattr(s.fd, buf, size);
  std::string proc = "/proc/self/fd/" + std::to_string(s.fd);
  ssize_t n = ::listxattr(proc.c_str(), buf, size);
  if (n < 0 && errno == ENOENT)
    return ::llistxattr(s.host_path.c_str(), buf, size);
  return n;
}

ssize_t GetXattrRaw(const XattrSource& s, const char* name, char* buf,
                    size_t size) {
  if (!s.path_fd) return ::fgetxattr(s.fd, name, buf, size);
  std::string proc = "/proc/self/fd/" + std::to_string(s.fd);
  ssize_t n = ::getxattr(proc.c_str(), name, buf, size);
  if (n < 0 && errno == ENOENT)
    return ::lgetxattr(s.host_path.c_str(), name, buf, size);
  return n;
}

// ---------------------------------------------------------------------------

// Every xattr the caller may read, sorted by name so that the same tree
// always gives the same records. POSIX ACLs (system.posix_acl_*) come back
// in the kernel's posix_acl_xattr format and are kept verbatim.
Result<std::vector<Xattr>> ReadXattrs(const XattrSource& s) {
  auto list = sys::ReadSized(
      [&](char* buf, size_t size) { return ListXattrRaw(s, buf, size); },
      "listxattr", s.host_path);
  if (!list && list.error().code() == ENOTSUP) return std::vector<Xattr>();
  if (!list) return list.error();
  std::vector<Xattr> out;
  for (size_t pos = 0; pos < list->size();) {
    std::string name = list->c_str() + pos;
    pos += name.size() + 1;
    if (name.empty()) continue;
    auto value = sys::ReadSized(
        [&](char* buf, size_t size) {
          return GetXattrRaw(s, name.c_str(), buf, size);
        },
        "getxattr", s.host_path + ": " + name);
    // Removed since it was listed, or a name the filesystem lists but does
    // not store: nothing to keep.
    if (!value &&
        (value.error().code() == ENODATA || value.error().code() == ENOTSUP))
      continue;
    if (!value) return value.error();
    out.push_back({std::move(name), std::move(*value)});
  }
  std::sort(out.begin(), out.end(),
            [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  return out;
}

// Times beyond what int64 nanoseconds hold (years before 1678 or after
// 2262) are clamped rather than wrapped.
int64_t ToNs(const struct timespec& ts) {
  constexpr int64_t kNs = 1'000'000'000;
  if (ts.tv_sec >= INT64_MAX / kNs) return INT64_MAX;
  if (ts.tv_sec <= INT64_MIN / kNs) return INT64_MIN;
  return ts.tv_sec * kNs + ts.tv_nsec;
}

// Directory sizes are filesystem-specific and mean nothing in a layer (the
// tar importer leaves them 0 too); regular and symlink sizes are set by the
// caller from what was actually read.
Node NodeFromStat(const struct stat& st) {
  Node n;
  n.attr.mode = st.st_mode;
  n.attr.uid = st.st_uid;
  n.attr.gid = st.st_gid;
  n.attr.mtime_ns = ToNs(st.st_mtim);
  n.attr.atime_ns = ToNs(st.st_atim);
  n.attr.ctime_ns = ToNs(st.st_ctim);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) n.attr.rdev = st.st_rdev;
  return n;
}

Error Changed(const std::string& path) {
  return {EAGAIN, "import dir", path + ": changed while importing"};
}

std::string Join(const std::string& rel, const std::string& name) {
  return rel.empty() ? name : rel + "/" + name;
}

class DirImporter {
 public:
  DirImporter(Store& store, std::string root, const ImportOptions& opts)
      : store_(store), root_(std::move(root)), opts_(opts) {}

  Status Walk();
  // Only the parts of the tree `changes` names (ImportChangesLayer).
  Status WalkChanges(const ChangeSet& changes);
  const LayerBuilder& builder() const { return builder_; }

 private:
  struct Frame {
    UniqueFd fd;  // invalid while evicted (see kMaxOpenDirs)
    dev_t dev;
    ino_t ino;
    std::string rel;
    std::vector<std::string> names;
    size_t next = 0;
  };

  Status Visit(int dirfd, const std::string& name, const std::string& rel);
  Status WalkFrames();
  Status VisitSubtree(const std::string& rel);
  Status VisitAlone(const std::string& rel);
  Result<UniqueFd> OpenParent(const std::string& rel);
  // Adds the directory; with `descend`, pushes a frame to walk its entries.
  Status EnterDir(int dirfd, const std::string& name, const std::string& rel,
                  int flags, bool descend = true);
  Status LeaveDir();
  Result<Node> ReadRegular(int dirfd, const std::string& name,
                           const std::string& rel);
  Result<Node> ReadOther(int dirfd, const std::string& name,
                         const std::string& rel, mode_t type);
  Status StoreContent(int fd, const std::string& path, uint64_t size,
                      Node& node);
  Status StreamContent(int fd, const std::string& path, uint64_t size,
                       Node& node);
  void CountBytes(uint64_t n);
  std::string HostPath(const std::string& rel) const;

  Store& store_;
  const std::string root_;
  const ImportOptions& opts_;
  LayerBuilder builder_;
  std::vector<Frame> frames_;
  // First name seen of each multiply-linked inode, by (st_dev, st_ino).
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
  uint64_t bytes_done_ = 0;
  uint64_t bytes_reported_ = 0;
};

std::string DirImporter::HostPath(const std::string& rel) const {
  if (rel.empty()) return root_;
  return root_.ends_with('/') ? root_ + rel : root_ + "/" + rel;
}

void DirImporter::CountBytes(uint64_t n) {
  bytes_done_ += n;
  if (!opts_.progress || bytes_done_ - bytes_reported_ < kProgressStep) return;
  bytes_reported_ = bytes_done_;
  opts_.progress(bytes_done_, 0);  // the total is unknown until the walk ends
}

Status DirImporter::Walk() {
  // The root itself may be a symlink: the user named it, so follow it.
  STRATA_RETURN_IF_ERROR(EnterDir(AT_FDCWD, root_, "", 0));
  STRATA_RETURN_IF_ERROR(WalkFrames());
  if (opts_.progress) opts_.progress(bytes_done_, bytes_done_);
  return Ok();
}

std::string ParentOf(const std::string& rel) {
  size_t slash = rel.rfind('/');
  return slash == std::string::npos ? "" : rel.substr(0, slash);
}

std::string BaseName(const std::string& rel) {
  size_t slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

bool IsUnder(const std::string& rel, const std::string& dir) {
  return dir.empty() || (rel.size() > dir.size() && rel.starts_with(dir) &&
                         rel[dir.size()] == '/');
}

Status DirImporter::WalkChanges(const ChangeSet& changes) {
  std::vector<std::string> replaced = changes.replaced;
  std::sort(replaced.begin(), replaced.end());
  // A replaced directory inside another one is already part of it.
  std::vector<std::string> roots;
  for (const auto& r : replaced)
    if (roots.empty() || (r != roots.back() && !IsUnder(r, roots.back())))
      roots.push_back(r);
  auto in_replaced = [&](const std::string& rel) {
    return std::any_of(roots.begin(), roots.end(), [&](const auto& r) {
      return rel == r || IsUnder(rel, r);
    });
  };
  std::vector<std::string> changed = changes.changed;
  std::sort(changed.begin(), changed.end());  // parents before children
  changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
  for (const auto& rel : changed)
    if (!in_replaced(rel)) STRATA_RETURN_IF_ERROR(VisitAlone(rel));
  for (const auto& rel : roots)
    STRATA_RETURN_IF_ERROR(VisitSubtree(rel));
  for (const auto& rel : changes.deleted) {
    std::string parent = ParentOf(rel);
    std::string wh = ".wh." + BaseName(rel);
    Status s = builder_.Add(parent.empty() ? wh : parent + "/" + wh, Node());
    if (!s) return s.error().WithContext(root_);
  }
  if (opts_.progress) opts_.progress(bytes_done_, bytes_done_);
  return Ok();
}

// The directory that holds `rel`, opened one component at a time without
// following symlinks (the tree is the source of names, never of paths).
Result<UniqueFd> DirImporter::OpenParent(const std::string& rel) {
  auto fd = sys::OpenAt(AT_FDCWD, root_, O_RDONLY | O_DIRECTORY);
  if (!fd) return AtPath(fd.error(), root_);
  std::string parent = ParentOf(rel);
  for (size_t pos = 0; !parent.empty() && pos <= parent.size();) {
    size_t end = parent.find('/', pos);
    if (end == std::string::npos) end = parent.size();
    auto next = sys::OpenAt(fd->get(), parent.substr(pos, end - pos),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!next) return AtPath(next.error(), HostPath(parent.substr(0, end)));
    fd = std::move(next);
    pos = end + 1;
  }
  return fd;
}

// One changed entry; a directory only with its own attributes.
Status DirImporter::VisitAlone(const std::string& rel) {
  if (rel.empty()) return EnterDir(AT_FDCWD, root_, "", 0, /*descend=*/false);
  STRATA_ASSIGN_OR_RETURN(UniqueFd dir, OpenParent(rel));
  std::string name = BaseName(rel);
  auto st = sys::FstatAt(dir.get(), name, AT_SYMLINK_NOFOLLOW);
  if (!st) return AtPath(st.error(), HostPath(rel));
  if (S_ISDIR(st->st_mode))
    return EnterDir(dir.get(), name, rel, O_NOFOLLOW, /*descend=*/false);
  return Visit(dir.get(), name, rel);
}

// A directory with everything below it, hiding what lower layers had there.
Status DirImporter::VisitSubtree(const std::string& rel) {
  if (rel.empty()) {
    STRATA_RETURN_IF_ERROR(EnterDir(AT_FDCWD, root_, "", 0));
  } else {
    STRATA_ASSIGN_OR_RETURN(UniqueFd dir, OpenParent(rel));
    STRATA_RETURN_IF_ERROR(EnterDir(dir.get(), BaseName(rel), rel, O_NOFOLLOW));
  }
  STRATA_RETURN_IF_ERROR(WalkFrames());
  std::string marker = rel.empty() ? ".wh..wh..opq" : rel + "/.wh..wh..opq";
  Status s = builder_.Add(marker, Node());
  return s ? s : s.error().WithContext(root_);
}

Status DirImporter::WalkFrames() {
  while (!frames_.empty()) {
    Frame& top = frames_.back();
    if (top.next == top.names.size()) {
      STRATA_RETURN_IF_ERROR(LeaveDir());
      continue;
    }
    // Copies: Visit may push a frame and move `top`.
    std::string name = top.names[top.next++];
    std::string rel = Join(top.rel, name);
    STRATA_RETURN_IF_ERROR(Visit(top.fd.get(), name, rel));
  }
  return Ok();
}

Status DirImporter::Visit(int dirfd, const std::string& name,
                          const std::string& rel) {
  // LayerBuilder reads these names as OCI whiteouts, and an OCI layer cannot
  // hold them as plain files; refuse rather than import a deletion.
  if (name.starts_with(".wh."))
    return Error(EINVAL, "import dir",
                 HostPath(rel) +
                     ": names starting with \".wh.\" are reserved for OCI "
                     "whiteouts");
  auto st = sys::FstatAt(dirfd, name, AT_SYMLINK_NOFOLLOW);
  if (!st) return AtPath(st.error(), HostPath(rel));
  if (S_ISDIR(st->st_mode)) return EnterDir(dirfd, name, rel, O_NOFOLLOW);
  if (st->st_nlink > 1) {
    auto [it, first] = links_.try_emplace({st->st_dev, st->st_ino}, rel);
    if (!first) {
      Status s = builder_.AddHardlink(rel, it->second);
      return s ? s : s.error().WithContext(root_);
    }
  }
  Result<Node> node = S_ISREG(st->st_mode)
                          ? ReadRegular(dirfd, name, rel)
                          : ReadOther(dirfd, name, rel, st->st_mode & S_IFMT);
  if (!node) return node.error();
  Status s = builder_.Add(rel, std::move(*node));
  return s ? s : s.error().WithContext(root_);
}

Status DirImporter::EnterDir(int dirfd, const std::string& name,
                             const std::string& rel, int flags, bool descend) {
  std::string path = HostPath(rel);
  auto fd = sys::OpenAt(dirfd, name, O_RDONLY | O_DIRECTORY | flags);
  if (!fd) return AtPath(fd.error(), path);
  STRATA_ASSIGN_OR_RETURN(struct stat st, StatFd(fd->get(), path));
  Node node = NodeFromStat(st);
  STRATA_ASSIGN_OR_RETURN(node.xattrs, ReadXattrs({fd->get(), false, path}));
  Status s = builder_.Add(rel, std::move(node));
  if (!s) return s.error().WithContext(root_);
  if (!descend) return Ok();
  STRATA_ASSIGN_OR_RETURN(std::vector<std::string> names,
                          ListDirFd(fd->get(), path));
  frames_.push_back(
      {std::move(*fd), st.st_dev, st.st_ino, rel, std::move(names)});
  if (frames_.size() > kMaxOpenDirs)
    frames_[frames_.size() - 1 - kMaxOpenDirs].fd.Reset();
  return Ok();
}

Status DirImporter::LeaveDir() {
  Frame child = std::move(frames_.back());
  frames_.pop_back();
  if (frames_.empty() || frames_.back().fd.valid()) return Ok();
  // The parent's fd was closed to bound open fds: reopen it through the
  // child, and check it is still the same directory.
  Frame& parent = frames_.back();
  std::string path = HostPath(parent.rel);
  auto fd = sys::OpenAt(child.fd.get(), "..", O_RDONLY | O_DIRECTORY);
  if (!fd) return AtPath(fd.error(), path);
  STRATA_ASSIGN_OR_RETURN(struct stat st, StatFd(fd->get(), path));
  if (st.st_dev != parent.dev || st.st_ino != parent.ino) return Changed(path);
  parent.fd = std::move(*fd);
  return Ok();
}

Result<Node> DirImporter::ReadRegular(int dirfd, const std::string& name,
                                      const std::string& rel) {
  std::string path = HostPath(rel);
  // O_NONBLOCK: if the name became a fifo since fstatat, do not hang on it.
  auto fd =
      sys::OpenAt(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) return AtPath(fd.error(), path);
  STRATA_ASSIGN_OR_RETURN(struct stat st, StatFd(fd->get(), path));
  if (!S_ISREG(st.st_mode)) return Changed(path);
  Node node = NodeFromStat(st);
  STRATA_ASSIGN_OR_RETURN(node.xattrs, ReadXattrs({fd->get(), false, path}));
  STRATA_RETURN_IF_ERROR(
      StoreContent(fd->get(), path, static_cast<uint64_t>(st.st_size), node));
  return node;
}

Result<Node> DirImporter::ReadOther(int dirfd, const std::string& name,
                                    const std::string& rel, mode_t type) {
  std::string path = HostPath(rel);
  auto fd = sys::OpenAt(dirfd, name, O_PATH | O_NOFOLLOW);
  if (!fd) return AtPath(fd.error(), path);
  STRATA_ASSIGN_OR_RETURN(struct stat st, StatFd(fd->get(), path));
  if ((st.st_mode & S_IFMT) != type) return Changed(path);
  Node node = NodeFromStat(st);
  if (S_ISLNK(st.st_mode)) {
    STRATA_ASSIGN_OR_RETURN(node.target, ReadLinkFd(fd->get(), path));
    node.attr.size = node.target.size();
  }
  STRATA_ASSIGN_OR_RETURN(node.xattrs, ReadXattrs({fd->get(), true, path}));
  return node;
}

// Stores what can be read of the first `size` bytes (the size at fstat): a
// file that grows meanwhile is cut there, one that shrinks is stored as read,
// and attr.size always matches the stored bytes.
Status DirImporter::StoreContent(int fd, const std::string& path, uint64_t size,
                                 Node& node) {
  if (size > kBufferedMaxBytes) return StreamContent(fd, path, size, node);
  std::string data(size, '\0');
  auto n = sys::ReadFull(fd, std::as_writable_bytes(std::span(data)));
  if (!n) return AtPath(n.error(), path);
  data.resize(*n);
  node.attr.size = data.size();
  CountBytes(data.size());
  if (data.size() <= kInlineMaxBytes) {
    node.flags |= kFlagInline;
    node.inline_data = std::move(data);
    return Ok();
  }
  auto key = store_.blobs().Put(data);
  if (!key) return key.error().WithContext(path);
  node.flags |= kFlagBlob;
  node.blob = *key;
  return Ok();
}

Status DirImporter::StreamContent(int fd, const std::string& path,
                                  uint64_t size, Node& node) {
  auto writer = store_.blobs().NewWriter();
  if (!writer) return writer.error().WithContext(path);
  std::string buf(kReadChunk, '\0');
  for (uint64_t left = size; left > 0;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    auto n =
        sys::ReadFull(fd, std::as_writable_bytes(std::span(buf.data(), want)));
    if (!n) return AtPath(n.error(), path);
    if (*n == 0) break;
    Status w = writer->Write(std::string_view(buf.data(), *n));
    if (!w) return w.error().WithContext(path);
    left -= *n;
    CountBytes(*n);
  }
  node.attr.size = writer->size();
  auto key = writer->Commit();
  if (!key) return key.error().WithContext(path);
  node.flags |= kFlagBlob;
  node.blob = *key;
  return Ok();
}

// Absolute and lexically normal, symlinks kept: the source names what the
// user gave, not where it resolved to.
Result<std::string> AbsolutePath(const std::string& dir) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(dir, ec);
  if (ec) return Error(ec.value(), "import dir", dir);
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.ends_with('/'))
    s.pop_back();
  return s;
}

}  // namespace

Result<LayerInfo> ImportDirLayer(Store& store, const std::string& dir,
                                 const ImportOptions& opts) {
  STRATA_ASSIGN_OR_RETURN(std::string root, AbsolutePath(dir));
  // Held from before the first blob is written until the commit: gc must
  // not collect blobs that no committed layer references yet.
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store.LockShared());
  DirImporter importer(store, root, opts);
  STRATA_RETURN_IF_ERROR(importer.Walk());
  LayerInfo info;
  info.source = "dir:" + root;
  // No diff_id: a directory has no canonical tar form until it is exported.
  // CommitLayer dedups layers only by diff_id, so importing the same tree
  // twice makes two layers; their blobs are still stored once.
  return store.CommitLayer(importer.builder(), std::move(info));
}

}  // namespace strata::layerdb

namespace strata::layerdb {

Result<LayerInfo> ImportChangesLayer(Store& store, const std::string& root,
                                     const ChangeSet& changes,
                                     const ImportOptions& opts,
                                     std::string source) {
  STRATA_ASSIGN_OR_RETURN(std::string abs, AbsolutePath(root));
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store.LockShared());  // as above
  DirImporter importer(store, abs, opts);
  STRATA_RETURN_IF_ERROR(importer.WalkChanges(changes));
  LayerInfo info;
  info.source = std::move(source);
  return store.CommitLayer(importer.builder(), std::move(info));
}

}  // namespace strata::layerdb
