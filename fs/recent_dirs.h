#pragma once

// RecentDirs: the O_PATH fds of the last few lower directories whose
// entries DirLowerSource statted. A READDIRPLUS reply looks up 1,024
// children of one directory in a row; with the directory's fd at hand each
// is one fstatat(2) of its name, instead of an openat2 walk from the layer
// root, an fstat and a close: that walk was a third of the daemon's time in
// the first listing of a 10,000-entry directory (docs/benchmarks.md).
// Thread-safe; an fd stays valid for whoever holds it after its eviction.

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "layerdb/base/error.h"
#include "layerdb/base/function_ref.h"
#include "layerdb/base/unique_fd.h"

namespace strata::fs {

class RecentDirs {
 public:
  // The fd of directory `rel` of `layer`, opened by `open` on a miss.
  Result<std::shared_ptr<const UniqueFd>> Get(
      uint32_t layer, const std::string& rel,
      FunctionRef<Result<UniqueFd>()> open);

 private:
  struct Slot {
    uint32_t layer = 0;
    std::string rel;
    std::shared_ptr<const UniqueFd> fd;
  };
  std::mutex mu_;
  std::array<Slot, 8> slots_;
  size_t next_ = 0;  // the slot the next miss replaces (round robin)
};

}  // namespace strata::fs
