#pragma once

// Mounting a UnionFs and running its FUSE loop (design §2, "Mounting").
//
// RunMount forks the daemon (unless `foreground`), which builds the
// filesystem (make_fs runs in the daemon: LMDB must be opened after the
// fork), mounts it and only then tells the parent, which exits 0 — so a
// command that returns has a working mount — or prints the daemon's
// one-line error and exits 1. The daemon serves until unmounted or sent
// SIGTERM/SIGINT/SIGHUP, then unmounts.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fs/union_fs.h"
#include "layerdb/base/error.h"

namespace strata::fs {

struct MountConfig {
  std::string program = "strata";  // prefix of error lines
  std::string mountpoint;
  std::string fsname;   // shown in /proc/mounts as the source
  std::string subtype;  // "strata" → type fuse.strata
  bool foreground = false;
  bool debug = false;
  bool read_only = false;
  // Mount options for the kernel / fusermount3 (allow_other, ...). The
  // root defaults (allow_other, default_permissions, suid, dev) are added
  // by RunMount.
  std::vector<std::string> fuse_options;
  unsigned max_threads = 0;  // 0: 2 × CPUs, at least 4
  double timeout = 86400.0;
};

using FsFactory = std::function<Result<std::unique_ptr<UnionFs>>()>;
// As FsFactory, and may complete the daemon's copy of the config (fsname,
// ...) from what it opened: it runs before the mount.
using ConfiguringFsFactory =
    std::function<Result<std::unique_ptr<UnionFs>>(MountConfig& config)>;

// Returns the process exit status (0 mounted / served and unmounted, 1
// failed). In the parent of a forked daemon it returns once the mount is
// ready or has failed; an error of make_fs is printed by the parent, as one
// line "PROGRAM: ERROR".
int RunMount(const MountConfig& config, const FsFactory& make_fs);
int RunMount(const MountConfig& config, const ConfiguringFsFactory& make_fs);

// A filesystem mounted and served by threads of the calling process: the
// launcher's daemon, which lives in the container's user and mount
// namespaces. Mount() mounts (nothing is served yet, so the caller may still
// fork a single-threaded child); Start() serves; the destructor unmounts and
// stops.
class BackgroundMount {
 public:
  static Result<std::unique_ptr<BackgroundMount>> Mount(
      const MountConfig& config, std::unique_ptr<UnionFs> fs);
  // Answers the kernel's INIT on the calling thread (no thread is started),
  // so that the first request of the mount's user is served as soon as
  // Start() runs. Optional; call it before Start().
  void AnswerInit();
  void Start();
  ~BackgroundMount();

 private:
  BackgroundMount() = default;
  struct State;
  std::unique_ptr<State> state_;
};

// Unmounts `mountpoint` (umount2 as root, else fusermount3 -u).
Status Unmount(const std::string& mountpoint, bool lazy);

}  // namespace strata::fs
