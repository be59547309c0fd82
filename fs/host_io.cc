#include "fs/host_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <vector>

#include "layerdb/base/sys.h"

namespace strata::fs::host {

namespace {
std::string Str(std::string_view s) {
  return std::string(s);
}
}  // namespace

bool IsFdLink(const std::string& path) {
  constexpr std::string_view kPrefix = "/proc/self/fd/";
  return path.starts_with(kPrefix) &&
         path.find('/', kPrefix.size()) == std::string::npos;
}

namespace {
// The xattr calls never follow a final symlink, except the /proc/self/fd
// magic link of an O_PATH fd, which stands for the object itself.
ssize_t GetX(const std::string& p, const char* n, void* v, size_t s) {
  return IsFdLink(p) ? ::getxattr(p.c_str(), n, v, s)
                     : ::lgetxattr(p.c_str(), n, v, s);
}
ssize_t ListX(const std::string& p, char* v, size_t s) {
  return IsFdLink(p) ? ::listxattr(p.c_str(), v, s)
                     : ::llistxattr(p.c_str(), v, s);
}
int SetX(const std::string& p, const char* n, const void* v, size_t s, int f) {
  return IsFdLink(p) ? ::setxattr(p.c_str(), n, v, s, f)
                     : ::lsetxattr(p.c_str(), n, v, s, f);
}
int RemoveX(const std::string& p, const char* n) {
  return IsFdLink(p) ? ::removexattr(p.c_str(), n)
                     : ::lremovexattr(p.c_str(), n);
}
}  // namespace

Status Chown(const std::string& path, uid_t uid, gid_t gid) {
  int rc = IsFdLink(path) ? ::chown(path.c_str(), uid, gid)
                          : ::lchown(path.c_str(), uid, gid);
  if (rc != 0) return Error::FromErrno("chown", path);
  return Ok();
}

Status Utimens(const std::string& path, const struct timespec times[2]) {
  int flags = IsFdLink(path) ? 0 : AT_SYMLINK_NOFOLLOW;
  if (::utimensat(AT_FDCWD, path.c_str(), times, flags) != 0)
    return Error::FromErrno("utimensat", path);
  return Ok();
}

Status ChmodFd(int fd, const std::string& path, mode_t mode) {
  int rc = fd >= 0 ? ::fchmod(fd, mode) : ::chmod(path.c_str(), mode);
  if (rc != 0) return Error::FromErrno("chmod", path);
  return Ok();
}

Result<std::optional<struct stat>> StatAt(int dirfd, std::string_view name) {
  struct stat st {};
  if (::fstatat(dirfd, Str(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
    return std::optional<struct stat>(st);
  if (errno == ENOENT || errno == ENOTDIR) return std::optional<struct stat>();
  return Error::FromErrno("fstatat", Str(name));
}

Result<struct stat> StatFd(int fd) {
  struct stat st {};
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return Error::FromErrno("fstat");
  return st;
}

Result<UniqueFd> OpenAt(int dirfd, std::string_view name, int flags,
                        mode_t mode) {
  int fd = ::openat(dirfd, Str(name).c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0 && errno == EPERM && (flags & O_NOATIME)) {
    // O_NOATIME needs ownership or CAP_FOWNER.
    fd = ::openat(dirfd, Str(name).c_str(), (flags & ~O_NOATIME) | O_CLOEXEC,
                  mode);
  }
  if (fd < 0) return Error::FromErrno("openat", Str(name));
  return UniqueFd(fd);
}

Result<std::optional<std::string>> GetXattr(const std::string& path,
                                            const std::string& name) {
  auto v = sys::ReadSized(
      [&](char* buf, size_t size) {
        return GetX(path, name.c_str(), buf, size);
      },
      "getxattr", path + " " + name);
  if (v) return std::optional<std::string>(std::move(*v));
  if (v.error().code() == ENODATA || v.error().code() == ENOTSUP)
    return std::optional<std::string>();
  return v.error();
}

Result<std::vector<std::string>> ListXattrNames(const std::string& path) {
  std::vector<std::string> names;
  auto buf =
      sys::ReadSized([&](char* b, size_t size) { return ListX(path, b, size); },
                     "listxattr", path);
  if (!buf) {
    if (buf.error().code() == ENOTSUP) return names;
    return buf.error();
  }
  for (size_t pos = 0; pos < buf->size();) {
    size_t end = buf->find('\0', pos);
    if (end == std::string::npos) end = buf->size();
    if (end > pos) names.emplace_back(buf->substr(pos, end - pos));
    pos = end + 1;
  }
  return names;
}

Result<XattrList> ReadXattrs(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(auto names, ListXattrNames(path));
  XattrList out;
  for (auto& n : names) {
    STRATA_ASSIGN_OR_RETURN(auto v, GetXattr(path, n));
    if (v) out.emplace_back(std::move(n), std::move(*v));
  }
  return out;
}

Status SetXattr(const std::string& path, const std::string& name,
                std::string_view value, int flags) {
  if (SetX(path, name.c_str(), value.data(), value.size(), flags) != 0)
    return Error::FromErrno("setxattr", path + " " + name);
  return Ok();
}

Status RemoveXattr(const std::string& path, const std::string& name) {
  if (RemoveX(path, name.c_str()) != 0 && errno != ENODATA)
    return Error::FromErrno("removexattr", path + " " + name);
  return Ok();
}

namespace {

Status CopyRange(int src, int dst, off_t off, off_t end) {
  while (off < end) {
    loff_t in = off, out = off;
    ssize_t n = ::copy_file_range(src, &in, dst, &out,
                                  static_cast<size_t>(end - off), 0);
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP ||
                  errno == EINVAL)) {
      std::vector<char> buf(1 << 20);
      ssize_t r = ::pread(
          src, buf.data(),
          std::min<size_t>(buf.size(), static_cast<size_t>(end - off)), off);
      if (r < 0) return Error::FromErrno("pread", "copy-up source");
      if (r == 0) return Ok();
      ssize_t w = ::pwrite(dst, buf.data(), static_cast<size_t>(r), off);
      if (w < 0) return Error::FromErrno("pwrite", "copy-up target");
      n = w;
    } else if (n < 0) {
      return Error::FromErrno("copy_file_range", "copy-up");
    }
    if (n == 0) return Ok();
    off += n;
  }
  return Ok();
}

// Direct I/O from a mapping of `src`: the writes read its page cache and
// leave none behind for `dst`, so there is no second in-memory copy of the
// data and nothing for the fsync before publishing to write back. On this
// kind of machine (2 cores, virtio disk) a durable copy of a cached 1 GiB
// blob took 315-375 ms this way against 730-1120 ms for copy_file_range
// and fsync.
constexpr off_t kDirectAlign = 4096;  // a page: mmap offsets, DIO blocks
constexpr off_t kDirectChunk = off_t{32} << 20;

// Copies the aligned part of [off, end) by direct I/O; returns how far it
// got (`off` where direct I/O or the mapping is refused: the caller copies
// the rest, and reports any real error, with CopyRange).
off_t CopyDirect(int src, int dst, off_t off, off_t end) {
  if (off % kDirectAlign != 0) return off;
  off_t stop = end - end % kDirectAlign;
  while (off < stop) {
    size_t len = static_cast<size_t>(std::min(kDirectChunk, stop - off));
    void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, src, off);
    if (m == MAP_FAILED) return off;
    ssize_t n = ::pwrite(dst, m, len, off);
    ::munmap(m, len);
    if (n <= 0 || n % kDirectAlign != 0) return n > 0 ? off + n : off;
    off += n;
  }
  return off;
}

// Copies [data, hole) of `src`, by direct I/O first when `durable`.
Status CopySegment(int src, int dst, off_t data, off_t hole, bool durable) {
  if (durable) {
    int flags = ::fcntl(dst, F_GETFL);
    if (flags >= 0 && ::fcntl(dst, F_SETFL, flags | O_DIRECT) == 0) {
      data = CopyDirect(src, dst, data, hole);
      // The unaligned tail, and anything refused, through the page cache.
      if (::fcntl(dst, F_SETFL, flags) != 0)
        return Error::FromErrno("fcntl", "copy-up target");
    }
  }
  return CopyRange(src, dst, data, hole);
}

}  // namespace

Result<CopyKind> CopyData(int src, int dst, uint64_t size, bool durable) {
  if (size == 0) return CopyKind::kCopied;
  if (::ioctl(dst, FICLONE, src) == 0) return CopyKind::kShared;
  off_t end = static_cast<off_t>(size);
  if (::ftruncate(dst, end) != 0)
    return Error::FromErrno("ftruncate", "copy-up");
  off_t pos = 0;
  while (pos < end) {
    off_t data = ::lseek(src, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      data = pos;                 // SEEK_DATA unsupported: copy everything
    }
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    if (hole < 0 || hole > end) hole = end;
    STRATA_RETURN_IF_ERROR(CopySegment(src, dst, data, hole, durable));
    pos = hole;
  }
  return CopyKind::kCopied;
}

Result<std::vector<HostDirent>> ReadDirAll(int dirfd) {
  int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return Error::FromErrno("dup");
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return Error::FromErrno("fdopendir");
  }
  ::rewinddir(d);
  std::vector<HostDirent> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    out.push_back(HostDirent{std::string(n), e->d_type, e->d_ino});
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return Error(err, "readdir");
  return out;
}

Status RemoveTreeAt(int dirfd, std::string_view name) {
  auto st = StatAt(dirfd, name);
  if (!st) return st.error();
  if (!*st) return Ok();
  if (S_ISDIR((*st)->st_mode)) {
    STRATA_ASSIGN_OR_RETURN(
        UniqueFd sub, OpenAt(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
    STRATA_ASSIGN_OR_RETURN(auto entries, ReadDirAll(sub.get()));
    for (const auto& e : entries)
      STRATA_RETURN_IF_ERROR(RemoveTreeAt(sub.get(), e.name));
    if (::unlinkat(dirfd, Str(name).c_str(), AT_REMOVEDIR) != 0)
      return Error::FromErrno("rmdir", Str(name));
  } else if (::unlinkat(dirfd, Str(name).c_str(), 0) != 0) {
    return Error::FromErrno("unlink", Str(name));
  }
  return Ok();
}

}  // namespace strata::fs::host
