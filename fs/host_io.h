#pragma once

// Thin wrappers of the host syscalls the union uses on the upper directory
// (raw syscalls stay in this file and layerdb/base/sys.h). Each returns the
// errno in an Error naming the call and the object.

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"

namespace strata::fs::host {

using XattrList = std::vector<std::pair<std::string, std::string>>;

// lstat of `name` in `dirfd`; nullopt when it does not exist.
Result<std::optional<struct stat>> StatAt(int dirfd, std::string_view name);
// fstat of an fd (O_PATH fds included).
Result<struct stat> StatFd(int fd);

// O_CLOEXEC is added. O_NOATIME (which internal reads of the upper use, as
// kernel overlayfs does, so that the union's own listing does not change
// atimes) is dropped where the caller may not use it.
Result<UniqueFd> OpenAt(int dirfd, std::string_view name, int flags,
                        mode_t mode = 0);

// True for "/proc/self/fd/N": the magic link of an fd, which path calls
// below follow (it stands for the object); any other final symlink is not
// followed.
bool IsFdLink(const std::string& path);
Status Chown(const std::string& path, uid_t uid, gid_t gid);
Status Utimens(const std::string& path, const struct timespec times[2]);
// fchmod of `fd`, or chmod of `path` when fd < 0.
Status ChmodFd(int fd, const std::string& path, mode_t mode);

// Path-based xattr calls that never follow a final symlink. nullopt: no
// such attribute.
Result<std::optional<std::string>> GetXattr(const std::string& path,
                                            const std::string& name);
Result<std::vector<std::string>> ListXattrNames(const std::string& path);
Result<XattrList> ReadXattrs(const std::string& path);
Status SetXattr(const std::string& path, const std::string& name,
                std::string_view value, int flags = 0);
// Succeeds when the attribute was not there.
Status RemoveXattr(const std::string& path, const std::string& name);

// How CopyData made the copy.
enum class CopyKind {
  kShared,  // FICLONE: `dst` shares `src`'s extents; no data was written
  kCopied,  // the bytes were written (or there were none)
};

// Copies `size` bytes of `src` to `dst` (both at offset 0): FICLONE where
// the filesystem can share extents, else copy_file_range, else read/write.
// Holes in `src` stay holes where SEEK_DATA finds them. `durable`: the
// caller fsyncs a written `dst` next; the copy then uses direct I/O where
// the upper filesystem allows it (most of the data is on disk when it
// returns, and `dst` leaves nothing in the page cache).
Result<CopyKind> CopyData(int src, int dst, uint64_t size, bool durable);

// Reads a whole directory (fd opened O_RDONLY|O_DIRECTORY): name, type
// (DT_*), d_ino. "." and ".." are left out.
struct HostDirent {
  std::string name;
  unsigned char type;
  uint64_t ino;
};
Result<std::vector<HostDirent>> ReadDirAll(int dirfd);

Status RemoveTreeAt(int dirfd, std::string_view name);

}  // namespace strata::fs::host
