#pragma once

// What `strata run` starts (design §3, "The launcher"): everything decided
// before the first fork, so that the namespace stages only carry it out.

#include <sys/types.h>

#include <string>
#include <vector>

namespace strata::launcher {

struct Volume {
  std::string host;
  std::string container;
  bool read_only = false;
};

struct LaunchSpec {
  // The image and where its container lives.
  std::string store_root;
  std::string image;  // normalized name
  uint64_t view = 0;
  std::string container_dir;  // <store>/containers/<id>
  std::string container_id;
  // --rm: the directory goes when the container ends (no final state.json).
  bool remove_when_ended = false;

  // The process (image config merged with the flags).
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd = "/";
  std::string user;  // "" (root), or USER[:GROUP] as names or numbers
  // PID 1 is a tiny init that reaps orphans and forwards signals (--init);
  // else the command is PID 1 itself, as in docker and podman.
  bool init = false;
  // A pseudo-terminal for the command, proxied to the caller's terminal
  // (terminal.h); tty_socket is how its master reaches `strata run`.
  bool tty = false;
  int tty_socket = -1;

  // The sandbox.
  std::string hostname;
  bool net_none = false;
  bool read_only = false;
  std::vector<Volume> volumes;
  std::vector<std::string> tmpfs;

  // Resource limits (--memory, --pids): the open cgroup.procs files of the
  // container's cgroups (ContainerCgroup::procs_fds(); the caller owns them
  // and keeps them open until Launch returns). The container's PID 1 joins
  // them first (JoinCgroups), so that the FUSE daemon stays outside.
  std::vector<int> cgroup_procs;
};

}  // namespace strata::launcher
