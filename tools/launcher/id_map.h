#pragma once

// User namespace id maps for a rootless container: the caller's own id as
// root, plus the subordinate range /etc/subuid and /etc/subgid grant it
// (written by the setuid newuidmap/newgidmap of Debian's uidmap), or only
// the single id when there is none (then setgroups is denied, as the kernel
// requires for an unprivileged gid_map).

#include <sys/types.h>

#include <optional>
#include <string>

#include "layerdb/base/error.h"

namespace strata::launcher {

struct SubRange {
  uint64_t start = 0;
  uint64_t count = 0;
};

// The first range of `user` (name or uid) in a subuid/subgid file.
std::optional<SubRange> FindSubRange(const std::string& file_text,
                                     const std::string& name, uid_t id);

// The maps of a process that has unshared its user namespace, being
// written: newuidmap and newgidmap run at once (posix_spawn) and the caller
// goes on with other work until FinishIdMaps.
struct PendingIdMaps {
  pid_t target = -1;
  pid_t uid_helper = -1;
  pid_t gid_helper = -1;  // either -1: the single id is written at the end
};

// Starts the helpers when the caller has a subordinate range and uidmap is
// installed. Never fails: a helper that cannot start leaves the single map.
PendingIdMaps StartIdMaps(pid_t pid);

// Waits for the helpers; where they failed or did not run, writes the
// single-id map itself (the target must still be alive). Returns whether
// the full map was written. Errors: the write's errno, naming the file.
Result<bool> FinishIdMaps(PendingIdMaps& pending);

}  // namespace strata::launcher
