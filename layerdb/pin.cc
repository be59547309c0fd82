#include <stdio.h>
#include <unistd.h>

#include "layerdb/base/sys.h"
#include "layerdb/lifecycle.h"

namespace strata::layerdb {

void Pin::Release() {
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

Result<Pin> PinTrees(const Store& store, const std::string& name,
                     const std::vector<TreeId>& trees) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store.LockShared());
  std::string dir = store.root() + "/pins";
  STRATA_RETURN_IF_ERROR(sys::MakeDirs(dir));
  std::string text;
  for (TreeId t : trees)
    text += std::to_string(t) + "\n";
  // Written under a name gc skips (a leading "."), then renamed.
  std::string path = dir + "/" + name;
  std::string tmp = dir + "/." + name;
  // No fsync: a pin only means something while its process lives, and a
  // crash ends that process.
  STRATA_RETURN_IF_ERROR(
      sys::WriteFileAtomic(tmp, text, sys::Durability::kVisible));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = Error::FromErrno("rename", path);
    ::unlink(tmp.c_str());
    return e;
  }
  return Pin(path);
}

}  // namespace strata::layerdb
