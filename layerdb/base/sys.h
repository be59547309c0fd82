#pragma once

// Thin syscall wrappers: the only place in layerdb that calls raw syscalls
// directly. Every fd they return is O_CLOEXEC and owned by a UniqueFd; every
// failure carries errno, the call and the path it was about.

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"

namespace strata::sys {

Result<UniqueFd> OpenAt(int dirfd, const std::string& path, int flags,
                        mode_t mode = 0);
Result<UniqueFd> Open(const std::string& path, int flags, mode_t mode = 0);

// Reads until `buf` is full or EOF; returns the bytes read.
Result<size_t> ReadFull(int fd, std::span<std::byte> buf);
Result<size_t> PreadFull(int fd, std::span<std::byte> buf, off_t offset);
Status WriteFull(int fd, std::span<const std::byte> buf);
Status PwriteFull(int fd, std::span<const std::byte> buf, off_t offset);
// Sets the size of the file open as `fd`; growing it leaves a hole.
Status Ftruncate(int fd, off_t size);
Result<std::string> ReadFile(const std::string& path);
// Writes `data` to `path` atomically (temp + fsync + rename). kVisible skips
// the fsync: readers see the old or the new file, but a crash may leave the
// old one (or none) — for files that mean nothing after a crash (pins, a
// container's state) or that are rewritten when missing.
enum class Durability { kDurable, kVisible };
Status WriteFileAtomic(const std::string& path, std::string_view data,
                       Durability durability = Durability::kDurable);

Result<struct stat> Fstat(int fd);
Result<struct stat> Lstat(const std::string& path);
Result<struct stat> FstatAt(int dirfd, const std::string& name, int flags);

// mkdir -p; existing directories are fine.
Status MakeDirs(const std::string& path, mode_t mode = 0755);
// rm -rf; a missing path is fine.
Status RemoveTree(const std::string& path);

// Names in a directory, excluding "." and "..", unsorted.
Result<std::vector<std::string>> ListDir(const std::string& path);

// Syncs the filesystem that holds `fd`.
Status SyncFs(int fd);

bool IsTerminal(int fd);

// Calls `call(buf, size)` — a *getxattr or *listxattr style call that
// returns the size it needs when given (nullptr, 0) — with a buffer of that
// size; retries when the value grew in between (ERANGE). Errors: the call's
// errno, with `op` and `what` naming it.
template <class Call>
Result<std::string> ReadSized(Call call, const char* op,
                              const std::string& what) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t n = call(nullptr, 0);
    if (n < 0) return Error::FromErrno(op, what);
    std::string buf(static_cast<size_t>(n), '\0');
    if (n == 0) return buf;
    ssize_t got = call(buf.data(), buf.size());
    if (got >= 0) {
      buf.resize(static_cast<size_t>(got));
      return buf;
    }
    if (errno != ERANGE) return Error::FromErrno(op, what);
  }
  return Error(ERANGE, op, what + ": keeps growing");
}

}  // namespace strata::sys
