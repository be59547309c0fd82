#pragma once

// A directory of its own under /tmp (or another parent), made with
// mkdtemp(3) and removed with everything in it when the object goes: the
// scratch space of the unit tests. Not for a mount point: the removal
// recurses (a mount point is removed with rmdir only).

#include <string>

#include "layerdb/base/error.h"

namespace strata {

class TempDir {
 public:
  // Makes `prefix` followed by six random characters, e.g.
  // Make("/tmp/strata-store-test."). Errors: mkdtemp's errno.
  static Result<TempDir> Make(const std::string& prefix);

  TempDir(TempDir&& o) noexcept;
  TempDir& operator=(TempDir&& o) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();  // removes it; errors are ignored

  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  void Remove();
  std::string path_;
};

}  // namespace strata
