#pragma once

// Store lifecycle: garbage collection, consistency checks, disk usage
// (design §1, "Lifecycle").

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/store.h"

namespace strata::layerdb {

struct GcReport {
  uint64_t layers_removed = 0;
  uint64_t views_removed = 0;
  uint64_t blobs_removed = 0;
  uint64_t bytes_freed = 0;
};

// Marks from images and from pins (files in <root>/pins/, one tree id per
// line, written by mounts and containers; a file named by the pid of a dead
// process is stale and removed), then removes unreferenced views, layers and
// blobs, and temp files of killed imports. The index is swept in one write
// transaction and blob files are removed only after it commits. Takes the
// store's exclusive lock, so it waits for running imports.
// Errors: EINVAL (an unreadable pin file), EIO (an undecodable record: run
// CheckStore), ENOSPC.
Result<GcReport> CollectGarbage(Store& store);

struct FsckProblem {
  std::string what;  // one line naming the object and the fault
  bool repaired = false;
};

struct FsckReport {
  uint64_t blobs_checked = 0;
  uint64_t nodes_checked = 0;
  std::vector<FsckProblem> problems;
};

// Re-hashes every blob, checks every index reference (images → layers and
// views, trees → blobs, dirents → nodes, every tree has a root). With
// `repair`, removes what is broken (corrupt blobs; images whose view or a
// layer is missing or damaged; the damaged layers and views themselves, so
// that a re-import does not reuse them) and appends what it did to each
// problem's line. Stray files in blobs/ and unreadable blobs are reported,
// never removed. Takes the shared lock, or the exclusive one to repair.
Result<FsckReport> CheckStore(Store& store, bool repair);

struct DiskUsage {
  uint64_t images = 0;
  uint64_t layers = 0;
  uint64_t blobs = 0;
  uint64_t logical_bytes = 0;  // sum over images of their merged file sizes
  uint64_t layer_bytes = 0;    // sum over layers of their file sizes
  uint64_t stored_bytes = 0;   // blob_bytes + index_bytes
  uint64_t blob_bytes = 0;     // st_size of the blob files (not st_blocks)
  uint64_t index_bytes = 0;    // st_size of index/data.mdb
  uint64_t inline_bytes = 0;   // small files kept in the index, over layers
  // max(0, logical_bytes - (blob_bytes + inline_bytes)): what the images
  // would take as plain copies, less what their contents take here.
  uint64_t dedup_saved = 0;
};

// Reads one index snapshot and lists the blob files; takes no lock, so the
// figures are approximate while imports or gc run.
Result<DiskUsage> MeasureDiskUsage(const Store& store);

}  // namespace strata::layerdb

namespace strata::layerdb {

// A pin: <root>/pins/<name> naming trees that gc must keep while it exists
// (a mount's view, a container's layers). Written atomically under the
// store's shared lock (see CollectGarbage); removed when the Pin is
// destroyed. A name that is a pid is stale once that process is gone.
class Pin {
 public:
  Pin() = default;
  explicit Pin(std::string path) : path_(std::move(path)) {}
  Pin(Pin&& o) noexcept : path_(std::exchange(o.path_, {})) {}
  Pin& operator=(Pin&& o) noexcept {
    Release();
    path_ = std::exchange(o.path_, {});
    return *this;
  }
  ~Pin() { Release(); }
  void Release();

 private:
  std::string path_;
};

// Errors: EACCES/EROFS when the store is not writable by the caller (a
// read-only store cannot be collected by that caller either), ENOSPC.
Result<Pin> PinTrees(const Store& store, const std::string& name,
                     const std::vector<TreeId>& trees);

}  // namespace strata::layerdb
