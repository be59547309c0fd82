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

// The maps the caller's user namespaces get: its own ids as root, plus its
// subordinate ranges when it has both and uidmap is installed (`full`).
struct IdMapPlan {
  uid_t uid = 0;
  gid_t gid = 0;
  std::optional<SubRange> uids, gids;
  bool full() const { return uids && gids; }
};
IdMapPlan PlanIdMaps();

// Whether the user namespace of `pid` has exactly the plan's maps (read
// from /proc/PID/uid_map and gid_map; false when unreadable).
bool HasPlannedMaps(pid_t pid, const IdMapPlan& plan);

// The maps of a process that has unshared its user namespace, being
// written: newuidmap and newgidmap run at once (posix_spawn) and the caller
// goes on with other work until FinishIdMaps.
struct PendingIdMaps {
  pid_t target = -1;
  pid_t uid_helper = -1;
  pid_t gid_helper = -1;  // either -1: the single id is written at the end
};

// Starts the helpers for a full plan. Never fails: a helper that cannot
// start leaves the single map.
PendingIdMaps StartIdMaps(pid_t pid, const IdMapPlan& plan);

// Waits for the helpers; where they failed or did not run, writes the
// single-id map itself (the target must still be alive). Returns whether
// the full map was written. Errors: the write's errno, naming the file.
Result<bool> FinishIdMaps(PendingIdMaps& pending);

}  // namespace strata::launcher
