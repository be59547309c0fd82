#pragma once

// Launch: runs a container (design §3, "The launcher"). Three processes:
//   strata run ──fork──► stage A: user namespace (rootless) + mount namespace;
//                        serves the image through FUSE (the daemon lives in
//                        the container's namespaces: no setuid helper)
//                └─clone─► stage B: PID 1 of new PID/UTS/IPC[/net] and mount
//                          namespaces: mounts /proc, /dev, /sys, pivots, then
//                          becomes the command (setsid, user, no_new_privs,
//                          bounded capabilities, exec), as in docker; stage A
//                          forwards signals and does what their default
//                          action would (the kernel drops them for an init)
//                          └─fork──► with --init, the command, while stage B
//                                    stays a tiny init: reaps orphans and
//                                    forwards signals
// Every stage dies with its parent (PR_SET_PDEATHSIG), so a killed `strata
// run` leaves no process and, with stage A's mount namespace, no mount.

#include <signal.h>

#include "layerdb/base/error.h"
#include "tools/launcher/launch_spec.h"

namespace strata::launcher {

// Blocks the signals Launch forwards (SIGINT, SIGTERM, SIGHUP, ...) while it
// lives. Made before the container exists on disk: a signal arriving before
// Launch forwards it would otherwise end `strata run` without its cleanup
// (--rm, state). Launch unblocks them once it forwards them; the destructor
// restores the caller's mask, so one still pending is then delivered.
class ForwardedSignalsHold {
 public:
  ForwardedSignalsHold();
  ~ForwardedSignalsHold();
  ForwardedSignalsHold(const ForwardedSignalsHold&) = delete;
  ForwardedSignalsHold& operator=(const ForwardedSignalsHold&) = delete;

 private:
  sigset_t caller_mask_;
};

// Runs `spec` and returns the command's exit status (128 + N when killed by
// signal N). Errors: a setup step that failed, as one line (the stage's
// errno and what to fix).
Result<int> Launch(const LaunchSpec& spec);

}  // namespace strata::launcher
