#pragma once

// The containers of a store (<store>/containers/<id>/): config.json written at
// creation, state.json updated by `strata run` (the launcher's pid while it
// runs, the exit status after), upper/ and work/ (the container's changes),
// rootfs/ (the mount point) and hostname.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerdb/base/error.h"
#include "tools/launcher/launch_spec.h"

namespace strata::launcher {

struct ContainerInfo {
  std::string id;
  std::string image;
  uint64_t view = 0;  // the image's view when the container was made
  std::vector<std::string> command;
  int64_t created = 0;
  pid_t pid = 0;  // the launcher, while running
  bool running = false;
  std::optional<int> exit_status;
};

nlohmann::json ToJson(const ContainerInfo& c);

// Makes spec.container_dir with its config.json, hostname and the upper,
// work and rootfs directories. Errors: EEXIST when a container of that id
// exists (two `run --name X` at once: one wins).
Status CreateContainer(const LaunchSpec& spec);

// Records that the container's launcher runs as `pid`, or (pid 0) that it
// ended with `exit_status`.
Status RecordState(const std::string& container_dir, pid_t pid,
                   std::optional<int> exit_status);

// Records the cgroup directories made for the container (ContainerCgroup::
// leftovers), for `strata rm` to remove should `strata run` be killed
// before it removes them itself. Nothing is written for none.
Status RecordCgroups(const std::string& container_dir,
                     const std::vector<std::string>& dirs);

// Every container of the store, by id. Errors: EIO for an unreadable
// config.json (named).
Result<std::vector<ContainerInfo>> ListContainers(
    const std::string& store_root);

// Removes container `id`: refused while it runs unless `force` (which kills
// its launcher first). Files its processes made owned by subordinate ids are
// removed from inside a user namespace with the caller's id map. Errors:
// ENOENT (no such container), EBUSY (running).
Status RemoveContainer(const std::string& store_root, const std::string& id,
                       bool force);

// Removes a container known to have ended (`strata run --rm`, just after
// it): no listing, no liveness check. Cgroups it recorded (RecordCgroups)
// and that are still there go too.
Status RemoveEndedContainer(const std::string& store_root,
                            const std::string& id);

// The empty directory every container's union is mounted on, each time in
// a mount namespace of the container's own, never on the host's:
// <store>/rootfs. Not per container, so that nothing of a container is a
// mount point once it ends (removing a mount point of a live namespace
// waits for an RCU grace period, 1 ms here).
std::string SharedRootfs(const std::string& store_root);
// The same, made if missing (by the first container or commit of a store).
Result<std::string> MakeSharedRootfs(const std::string& store_root);

}  // namespace strata::launcher
