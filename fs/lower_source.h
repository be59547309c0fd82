#pragma once

// LowerSource: the read-only merged lower tree under a union mount — the one
// seam between the union (fs/union_fs.h) and where lower data lives.
//
// Two implementations:
//   StoredLowerSource (stored_lower.h)  a view from the store: every call is
//                                       one or two LMDB B-tree probes,
//                                       whatever the number of layers.
//   DirLowerSource (dir_lower.h)        plain host directories (strata-overlay
//                                       -o lowerdir=A:B): merged per lookup,
//                                       reading the kernel overlayfs and OCI
//                                       whiteout/opaque forms in each layer.
// Unit tests can put a fake behind it.
//
// A LowerSource presents one tree that is already merged: whiteouts and
// opaque markers of the lower layers are applied and never shown, overlay
// private xattrs (trusted./user.overlay.*) are hidden. The tree never
// changes while mounted (layers are immutable), so callers may cache any
// answer forever.
//
// Identity: every object has a LowerRef (what to pass back to this source)
// and an st_ino (its persistent identity in the mount; the union keeps it
// across copy-up and remount). st_ino values of a source are unique within
// it, equal for hardlinks, stable across remounts of the same layers, and
// below kUpperInoBase, so that the union can number upper-only objects
// above it without collisions.
//
// Thread-safety: every method may be called from many threads at once.
//
// Errors: as the TreeReader ones (layerdb/tree_reader.h): ENOENT for a ref
// that does not exist where the answer cannot be "absent", ENOTDIR, EINVAL
// (ReadLink of a non-symlink), EISDIR, EIO for damaged lowers, plus the errno
// of a failing host syscall for DirLowerSource.

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/base/function_ref.h"
#include "layerdb/tree_reader.h"

namespace strata::fs {

// Opaque handle of a lower object, meaningful only to the source that made
// it. Valid for the life of the source.
using LowerRef = uint64_t;

// st_ino values at or above this are the union's (upper-only objects).
inline constexpr uint64_t kUpperInoBase = uint64_t{1} << 62;

// A resolved lower object. `st` is complete: st_ino is the persistent
// identity (see above), st_nlink exact (directories: 2 + subdirectories),
// st_atim/st_ctim never 0 (mtime stands in where a layer recorded none).
// st_dev is 0 (the union reports its own).
struct LowerEntry {
  LowerRef ref = 0;
  struct stat st {};
};

// One entry of a lower directory listing. `name` is valid during the
// callback only. `next_offset` resumes the listing right after this entry:
// offsets are in [1, 2^32), stable for the life of the source, never 0.
struct LowerDirEntry {
  std::string_view name;
  LowerRef ref = 0;
  uint64_t st_ino = 0;
  uint32_t type = 0;  // S_IFMT bits
  uint64_t next_offset = 0;
};

class LowerSource {
 public:
  virtual ~LowerSource() = default;

  // The root directory.
  virtual LowerEntry Root() const = 0;

  // `name` in directory `dir`; nullopt when absent (or whited out in the
  // lower layers, or `dir` is not a directory). Never "." or "..".
  virtual Result<std::optional<LowerEntry>> Lookup(LowerRef dir,
                                                   std::string_view name) = 0;

  // The attributes of `ref`. Errors: ENOENT.
  virtual Result<struct stat> GetAttr(LowerRef ref) = 0;

  // Lists `dir` in name order from `offset` (0 = start, else a next_offset
  // from an earlier call). Stops when `fn` returns false; that entry is not
  // consumed. "." and ".." are not included. Errors: ENOENT, ENOTDIR.
  virtual Status ReadDir(LowerRef dir, uint64_t offset,
                         FunctionRef<bool(const LowerDirEntry&)> fn) = 0;

  // The target of symlink `ref`. Errors: ENOENT, EINVAL.
  virtual Result<std::string> ReadLink(LowerRef ref) = 0;

  // The xattrs of `ref` (name, value), overlay-private ones hidden.
  // Errors: ENOENT.
  virtual Result<std::vector<std::pair<std::string, std::string>>> Xattrs(
      LowerRef ref) = 0;

  // The content of regular file `ref`: a read-only fd (for splice reads and
  // copy-up by reflink/copy_file_range) or inline bytes. May outlive nothing:
  // it is independent of the source. Errors: ENOENT, EISDIR, EINVAL, EMFILE.
  virtual Result<layerdb::FileContent> OpenContent(LowerRef ref) = 0;

  // statfs of where the lower data lives (the store, or the top lower dir).
  virtual Result<struct statvfs> StatFs() = 0;
};

}  // namespace strata::fs
