#pragma once

// Launch: runs a container (design §3, "The launcher"). Three processes:
//   strata run ──fork──► stage A: the user namespace made up front (rootless,
//                        user_namespace.h) + its own mount namespace;
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

#include <functional>

#include "layerdb/base/error.h"
#include "tools/launcher/launch_spec.h"
#include "tools/launcher/user_namespace.h"

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

// Runs `spec` in `user_ns` (its maps may still be being written: stage A
// enters it and prepares the image meanwhile) and returns the command's
// exit status (128 + N when killed by signal N). `when_ended` runs once the
// container has ended, while the FUSE daemon's process is still being torn
// down (it is reaped before Launch returns). Errors: a setup step that
// failed, as one line (the stage's errno and what to fix).
Result<int> Launch(const LaunchSpec& spec, MappedUserNamespace& user_ns,
                   const std::function<void()>& when_ended);

}  // namespace strata::launcher
