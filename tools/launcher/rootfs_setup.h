#pragma once

// The container's filesystem view, set up by its PID 1 in a mount namespace
// of its own, before it drops the old root (bubblewrap's order: /proc must
// be mounted while a full procfs is still visible, field notes §7).

#include <string>

#include "layerdb/base/error.h"
#include "tools/launcher/launch_spec.h"

namespace strata::launcher {

// Mounts /proc, /dev (tmpfs with the usual nodes, devpts, shm, mqueue),
// /sys (read-only), /etc/hosts, /etc/resolv.conf, /etc/hostname, volumes
// and tmpfs under `root`, pivots into it and masks the sensitive /proc
// paths. `full_map`: the user namespace maps the subordinate range (devpts
// may then use gid 5). Errors name the path and the step.
Status SetUpRootfs(const std::string& root, const LaunchSpec& spec,
                   bool full_map);

// Brings up the loopback interface of a fresh network namespace.
Status BringUpLoopback();

}  // namespace strata::launcher
