#pragma once

// The user namespace a rootless container (and `strata rm`'s and `strata
// commit`'s mapped steps) runs in: the caller's id as root plus its
// subordinate ids (id_map.h). A child made first thing unshares it and
// waits; the setuid map helpers then run while `strata run` opens the store
// and makes the container, off the start's critical path, and the stages
// enter the namespace with setns(2) instead of a handshake.

#include <sys/types.h>

#include <memory>

#include "layerdb/base/error.h"

namespace strata::launcher {

class MappedUserNamespace {
 public:
  // Starts making the namespace and its maps. For root, none (fd() is -1,
  // Enter() does nothing). Errors: the unshare's, naming the sysctl to fix.
  static Result<MappedUserNamespace> Create();
  MappedUserNamespace(MappedUserNamespace&&) noexcept;
  MappedUserNamespace& operator=(MappedUserNamespace&&) noexcept;
  ~MappedUserNamespace();

  // Waits until the maps are written (once; later calls repeat the answer).
  // Returns whether the full subordinate map was written (else the caller's
  // single id). Errors: the single map's write, as "id maps: ...".
  Result<bool> WaitForMaps();
  // Enters the namespace: for a single-threaded process that does not share
  // its filesystem attributes (a forked child). Call after WaitForMaps.
  Status Enter() const;
  bool exists() const;

 private:
  struct State;
  explicit MappedUserNamespace(std::unique_ptr<State> s);
  std::unique_ptr<State> state_;
};

}  // namespace strata::launcher
