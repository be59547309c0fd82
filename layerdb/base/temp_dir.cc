#include "layerdb/base/temp_dir.h"

#include <stdlib.h>

#include <utility>

#include "layerdb/base/sys.h"

namespace strata {

Result<TempDir> TempDir::Make(const std::string& prefix) {
  std::string path = prefix + "XXXXXX";
  if (::mkdtemp(path.data()) == nullptr)
    return Error::FromErrno("mkdtemp", prefix);
  return TempDir(std::move(path));
}

TempDir::TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& o) noexcept {
  if (this != &o) {
    Remove();
    path_ = std::exchange(o.path_, {});
  }
  return *this;
}

TempDir::~TempDir() {
  Remove();
}

void TempDir::Remove() {
  if (!path_.empty()) (void)sys::RemoveTree(path_);
  path_.clear();
}

}  // namespace strata
