#pragma once

// A process handle that its pid's reuse cannot fool (pidfd_open(2)).
// Through syscall(2): glibc 2.36's <sys/pidfd.h> declares its wrappers
// without extern "C" (fixed in 2.37), so C++ code cannot link them.

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
