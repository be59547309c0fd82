#pragma once

// A process handle that its pid's reuse cannot fool (pidfd_open(2), Linux
// 5.3); glibc 2.36 has no wrapper for it on every architecture we build for,
// so these three calls go through syscall(2).

#include <sys/types.h>

#include "layerdb/base/unique_fd.h"

namespace strata::launcher {

// A pidfd for `pid`, invalid when there is no such process.
UniqueFd OpenPidfd(pid_t pid);

// Whether the process has exited (a zombie too), waiting up to `timeout_ms`
// for it (0: just look).
bool HasExited(int pidfd, int timeout_ms = 0);

// Sends `sig` to the process, never to one that got its pid since.
void SignalPidfd(int pidfd, int sig);

}  // namespace strata::launcher
