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

// Writes the maps of process `pid` (which has unshared its user namespace).
// Returns whether the full map was written. Errors: the helper's exit or the
// write's errno, naming what to fix.
Result<bool> WriteIdMaps(pid_t pid);

}  // namespace strata::launcher
