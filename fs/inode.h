#pragma once

// Inode: one object of the union as the kernel knows it (one FUSE node id),
// identified by its persistent st_ino (fs/lower_source.h, "Identity"). All
// names of a hardlink group share one Inode, so a write through one name is
// seen through the others, before and after copy-up.
//
// Locking: the namespace fields (upper, metacopy, opaque, parent, name,
// override, nlink caches) are guarded by UnionFs::ns_mutex_ (shared for
// lookups and reads of state, exclusive for changes). `data_mutex` latches a
// data copy-up of this inode so that it runs once and outside ns_mutex_.
// Lock order: data_mutex, then ns_mutex_.

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fs/lower_source.h"
#include "fs/on_demand.h"
#include "fs/upper_format.h"
#include "layerdb/base/unique_fd.h"

namespace strata::fs {

// An entry of a merged directory's listing.
struct MergedEntry {
  std::string name;
  uint64_t st_ino;
  uint32_t type;
};

struct Inode {
  Inode(uint64_t ino, mode_t type_bits) : st_ino(ino), type(type_bits) {}

  const uint64_t st_ino;  // identity: equal to d_ino, stable
  const mode_t type;  // S_IFMT bits; a name that changes type is a new Inode

  bool is_dir() const { return S_ISDIR(type); }
  bool is_reg() const { return S_ISREG(type); }

  // Lower part: the lower object (for a directory, the lower directory that
  // merges into it; unset when opaque or upper-only) and its path from the
  // lower root ("" for the root, else "a/b"), written into redirects and
  // metacopy records.
  std::optional<LowerRef> lower;
  std::string lower_path;
  uint32_t lower_nlink = 1;   // hardlink group in the lower tree when > 1
  blkcnt_t lower_blocks = 0;  // st_blocks of `lower` (a metacopy shows them)

  // Upper part. A directory keeps an O_PATH fd of its upper directory. A
  // non-directory is found by name (UnionFs::UpperPath): its index entry
  // when `indexed`, else `parent`/`name` — so that a tree of 100k copied-up
  // files does not hold 100k fds; only an unlinked one that may still be
  // open keeps an fd (`upper`) to stay reachable.
  bool has_upper = false;
  UniqueFd upper;
  bool metacopy = false;  // upper holds metadata only; data is `lower`
  bool opaque = false;    // directory: the lower part is hidden
  bool indexed = false;   // hardlink group with an entry in strata-index
  bool unlinked = false;  // no name left (open-unlinked)
  std::optional<uint32_t> group_nlink;   // indexed: the union nlink
  std::optional<OverrideStat> override;  // rootless ownership record
  // Merged directory: cached nlink, -1 when unknown (atomic: filled under
  // the shared lock).
  std::atomic<int64_t> dir_nlink{-1};
  bool xattr_whiteouts = false;  // opaque value "x": may hold xattr whiteouts
  // Directory: whether its upper part has a default ACL (which then decides
  // the mode of new entries instead of the umask); unknown until a create
  // asks, and forgotten when that xattr is set or removed through us, so a
  // create costs no getxattr of the parent.
  std::optional<bool> default_acl;
  // Merged directory: the listing a reader started at offset 0 (readdir
  // offsets are positions in it), kept until that reader reaches its end.
  struct ReaderListing {
    std::mutex mutex;
    std::shared_ptr<const std::vector<MergedEntry>> entries;
  };
  OnDemand<ReaderListing> listing;

  // One name of the inode (the last one looked up or given), for copy-up
  // of a file that is opened by inode. The root has no parent.
  std::shared_ptr<Inode> parent;
  std::string name;

  // Under the writeback cache: the mtime the kernel keeps for this file
  // (what it last sent, else what the upper had when we first changed its
  // data). Data changes put it back on the upper: see UnionFs::KeepingTimes.
  struct KernelTimes {
    std::mutex mutex;  // after UnionFs's ns_mutex_ when both are held
    std::optional<struct timespec> mtime;  // guarded by mutex
  };
  OnDemand<KernelTimes> kernel_times;

  // Known to have no suid, sgid or security.capability since the last
  // chmod or security xattr change: kill requests cost nothing then.
  std::atomic<bool> privs_clear{false};

  // Bumped when data moves to the upper; open lower handles reopen.
  std::atomic<uint32_t> data_generation{0};
  // A read-only open of the lower content has considered pushing it into
  // the kernel's page cache (UnionFs::PrefetchSource): once per inode.
  std::atomic<bool> prefetch_considered{false};
  // The latch of a data copy-up and of the prefetch's push (see the top).
  OnDemand<std::mutex> data_mutex;

  // Kernel references (FUSE lookup count). Guarded by InodeTable's mutex.
  uint64_t nlookup = 0;
  std::shared_ptr<Inode> pin;  // self, while nlookup > 0
};

}  // namespace strata::fs
