#pragma once

// Store lifecycle: garbage collection, consistency checks, disk usage
// (design §1, "Lifecycle").

#include <cstdint>
#include <string>
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

// Marks from images (and, later, mounts and containers), then removes
// unreferenced views, layers and blobs, and temp files of killed imports.
// Takes the store's exclusive lock, so it waits for running imports.
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
// views, trees → blobs, dirents → nodes). With `repair`, removes what is
// broken (corrupt blobs, images whose layers are gone) and says what.
Result<FsckReport> CheckStore(Store& store, bool repair);

struct DiskUsage {
  uint64_t images = 0;
  uint64_t layers = 0;
  uint64_t blobs = 0;
  uint64_t logical_bytes = 0;  // sum over images of their merged file sizes
  uint64_t layer_bytes = 0;    // sum over layers of their file sizes
  uint64_t stored_bytes = 0;   // blob files on disk + index file
  uint64_t blob_bytes = 0;
  uint64_t index_bytes = 0;
  uint64_t inline_bytes = 0;   // small files kept in the index
  uint64_t dedup_saved = 0;    // layer_bytes - (blob_bytes + inline_bytes)
};

Result<DiskUsage> MeasureDiskUsage(const Store& store);

}  // namespace strata::layerdb
