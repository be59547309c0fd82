#pragma once

// The container's terminal (`strata run` with a terminal on stdin and
// stdout): a pseudo-terminal of the container's own devpts instance, so the
// command never holds the host's terminal (no TIOCSTI into the caller's
// shell, as with podman -t); `strata run` copies bytes between the two with
// the host terminal in raw mode and passes window size changes on.

#include <optional>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"

namespace strata::launcher {

struct PtyPair {
  UniqueFd master;
  UniqueFd slave;
};

// Opens a new pseudo-terminal from /dev/ptmx (the container's, after
// pivot_root), with the window size of the terminal `size_of` (the caller's):
// the command must see it from its first instruction, and ProxyTerminal's
// copy comes only once `strata run` has the master. Errors: the failing
// call's errno.
Result<PtyPair> OpenPty(int size_of);

// Makes `slave` the controlling terminal and stdio of the calling process,
// which must be a session leader (after setsid).
Status AttachTerminal(int slave);

// Passes an fd over a unix socket (SCM_RIGHTS), and receives one: nullopt
// when the peer closed without sending (the container failed first).
Status SendFd(int sock, int fd);
Result<std::optional<UniqueFd>> ReceiveFd(int sock);

// Copies stdin to `master` and `master` to stdout until the container's
// side is closed, with stdin's terminal raw meanwhile; SIGWINCH copies the
// window size. Restores the terminal before returning.
void ProxyTerminal(int master);

}  // namespace strata::launcher
