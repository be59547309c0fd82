#include "layerdb/base/sys.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace strata::sys {

Result<UniqueFd> OpenAt(int dirfd, const std::string& path, int flags,
                        mode_t mode) {
  int fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return Error::FromErrno("open", path);
  return UniqueFd(fd);
}

Result<UniqueFd> Open(const std::string& path, int flags, mode_t mode) {
  return OpenAt(AT_FDCWD, path, flags, mode);
}

Result<size_t> ReadFull(int fd, std::span<std::byte> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::FromErrno("read");
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<size_t> PreadFull(int fd, std::span<std::byte> buf, off_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done,
                        offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::FromErrno("pread");
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Status WriteFull(int fd, std::span<const std::byte> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::FromErrno("write");
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Status PwriteFull(int fd, std::span<const std::byte> buf, off_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done,
                         offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::FromErrno("pwrite");
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Status Ftruncate(int fd, off_t size) {
  while (::ftruncate(fd, size) != 0) {
    if (errno != EINTR) return Error::FromErrno("ftruncate");
  }
  return Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, Open(path, O_RDONLY));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::FromErrno("read", path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status WriteFileAtomic(const std::string& path, std::string_view data,
                       Durability durability) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd,
                          Open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  auto bytes = std::as_bytes(std::span(data.data(), data.size()));
  if (Status s = WriteFull(fd.get(), bytes); !s) {
    ::unlink(tmp.c_str());
    return s.error().WithContext(tmp);
  }
  if (durability == Durability::kDurable && ::fsync(fd.get()) != 0) {
    Error e = Error::FromErrno("fsync", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  STRATA_RETURN_IF_ERROR(fd.Close());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = Error::FromErrno("rename", path);
    ::unlink(tmp.c_str());
    return e;
  }
  return Ok();
}

Result<struct stat> Fstat(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error::FromErrno("fstat");
  return st;
}

Result<struct stat> Lstat(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Error::FromErrno("lstat", path);
  return st;
}

Result<struct stat> FstatAt(int dirfd, const std::string& name, int flags) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, flags) != 0)
    return Error::FromErrno("fstatat", name);
  return st;
}

Status MakeDirs(const std::string& path, mode_t mode) {
  // Each missing component with `mode` (masked by the umask), like
  // mkdir -p -m; std::filesystem::create_directories would use 0777. The
  // whole path is tried first: it usually exists or lacks only its last
  // component, so one or two syscalls do.
  if (::mkdir(path.c_str(), mode) == 0) return Ok();
  if (errno == ENOENT) {
    size_t slash = path.find_last_of('/');
    if (slash != std::string::npos && slash > 0)
      STRATA_RETURN_IF_ERROR(MakeDirs(path.substr(0, slash), mode));
    if (::mkdir(path.c_str(), mode) == 0) return Ok();
  }
  if (errno != EEXIST) return Error::FromErrno("mkdir", path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error::FromErrno("mkdir", path);
  if (!S_ISDIR(st.st_mode)) return Error(ENOTDIR, "mkdir", path);
  return Ok();
}

Status RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return Error(ec.value(), "remove", path);
  return Ok();
}

Result<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return Error::FromErrno("opendir", path);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {  // NOLINT(concurrency-mt-unsafe)
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return Error(err, "readdir", path);
  return names;
}

Status SyncFs(int fd) {
  if (::syncfs(fd) != 0) return Error::FromErrno("syncfs");
  return Ok();
}

bool IsTerminal(int fd) {
  return ::isatty(fd) == 1;
}

}  // namespace strata::sys
