#pragma once

// A step that must run where a container's files are readable and its ids
// mean what they meant to the container: in a forked child that, for a
// rootless caller, first enters a new user namespace mapping the caller's
// subordinate ids (MappedUserNamespace). Used by `strata rm` and `strata
// commit`.

#include <functional>

#include "layerdb/base/error.h"

namespace strata::launcher {

// Runs `body` in a child (in a new user namespace when the caller is not
// root) and returns its outcome, the error carried back over a pipe. The
// child's stdio is the caller's.
Status RunAsMappedRoot(const std::function<Status()>& body);

// Runs `body` in a forked child, `meanwhile` in the caller while the child
// runs, and returns the child's outcome. For a process that must fork
// before it starts threads (a FUSE daemon reading its own mount through a
// child).
Status RunInChild(const std::function<Status()>& body,
                  const std::function<void()>& meanwhile);

}  // namespace strata::launcher
