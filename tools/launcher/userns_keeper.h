#pragma once

// The user namespace kept between starts, as podman's rootless "pause
// process" does. Making a user namespace and having the setuid newuidmap
// and newgidmap map it is the costliest step of a rootless start (about
// 1.8 ms of 12 here); a keeper process that holds one lets the next
// `strata run`, `rm` or `commit` of the same user enter it at once.
//
// The keeper (`strata-userns` in ps) is started by the first command that
// finds none, records its pid in a private directory
// ($XDG_RUNTIME_DIR/strata-UID, else /tmp/strata-UID), holds nothing but the
// namespace, and exits after $STRATA_USERNS_KEEP seconds without use
// (default 600; 0 turns keeping off). Running containers do not need it:
// their processes hold the namespace. A keeper whose maps are not what
// /etc/subuid and /etc/subgid now give is replaced.

#include <sys/types.h>

#include <optional>
#include <string>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"
#include "tools/launcher/id_map.h"

namespace strata::launcher {

struct KeeperPlace {
  std::string pid_file;  // in a directory only this user may write
  unsigned idle_seconds = 600;
};

// Where this user's keeper is recorded; none when keeping is off or no
// private runtime directory can be had (then each command makes its own
// namespace, as before).
std::optional<KeeperPlace> FindKeeperPlace();

// The user namespace of the recorded keeper, marked as used, when the
// keeper is alive and its maps are `plan`'s; none otherwise (a keeper with
// other maps is told to end).
std::optional<UniqueFd> JoinKeeper(const KeeperPlace& place,
                                   const IdMapPlan& plan);

// A keeper just started: it has unshared its user namespace and waits for
// its maps. Keep() records it; dropping it unrecorded ends the keeper.
struct NewKeeper {
  pid_t pid = -1;
  UniqueFd ns;       // /proc/PID/ns/user
  UniqueFd control;  // the keeper lives on only when told so here
};

// Errors: the fork's, the keeper's unshare (its errno), or the open of its
// namespace.
Result<NewKeeper> StartKeeper(const KeeperPlace& place);

// Records the keeper (its maps written) in the place and lets it live.
Status Keep(NewKeeper& keeper, const KeeperPlace& place);

// The keeper's process, run when strata's argv[0] is kKeeperName:
// `strata-userns PID_FILE IDLE_SECONDS`, its control socket as fd 3.
inline constexpr const char* kKeeperName = "strata-userns";
int RunKeeper(int argc, char** argv);

}  // namespace strata::launcher
