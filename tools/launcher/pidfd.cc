#include "tools/launcher/pidfd.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace strata::launcher {

UniqueFd OpenPidfd(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

// A pidfd is readable once its process has exited.
bool HasExited(int pidfd, int timeout_ms) {
  struct pollfd p = {pidfd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) != 0;
}

void SignalPidfd(int pidfd, int sig) {
  (void)::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
}

}  // namespace strata::launcher
