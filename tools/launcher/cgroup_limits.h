#pragma once

// Resource limits of a container (`strata run --memory/--pids`, design §3,
// "The launcher"): a cgroup per container, made by `strata run` before it
// forks and joined by the container's PID 1 (stage B) before its rootfs is
// set up, so that the container's processes are limited and the FUSE daemon
// serving its tree (stage A) is not.
//
// cgroup v2 is used where the caller's own cgroup has the controllers (a
// delegated subtree, or root on a v2 host); else the v1 memory and pids
// hierarchies (this machine: a hybrid whose v2 has only hugetlb). Where a
// limit cannot be set (not root and nothing delegated, controller missing,
// read-only cgroupfs) the container runs without it, and Create says so in
// one line: a limit is a request the host may not be able to honour, as in
// rootless podman.
//
// Thread-safety: ContainerCgroup is a plain object (no shared state); its
// CgroupFs must outlive it.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"

namespace strata::launcher {

struct ResourceLimits {
  std::optional<uint64_t> memory_bytes;  // memory.max / memory.limit_in_bytes
  std::optional<uint64_t> pids;          // pids.max

  bool any() const { return memory_bytes || pids; }
};

// Parses a size in bytes as docker's --memory takes it: digits, then an
// optional unit k, m, g or t (binary multiples: 64k = 65536), an optional
// "i" and an optional "b", case-insensitive ("1048576", "64k", "64m", "1g",
// "512MiB", "100b"). Errors: EINVAL (op "size") naming the text, for an
// empty or malformed text or one that overflows 64 bits.
Result<uint64_t> ParseByteSize(std::string_view text);

// The limits given as `strata run` flags; an empty string is a flag not
// given. --memory is a ParseByteSize size of at least 6 MiB (docker's
// minimum: less cannot even start a shell); --pids a number from 1 to
// 4194304 (the kernel's PID_MAX_LIMIT). Errors: EINVAL (op "run") naming the
// flag and its value, one line.
Result<ResourceLimits> ParseLimits(const std::string& memory,
                                   const std::string& pids);

// The file system calls ContainerCgroup makes, so that tests can run it
// against a fake cgroup tree (the seam of leveldb's Env). Every call returns
// the kernel's errno with the op and the path.
class CgroupFs {
 public:
  virtual ~CgroupFs() = default;
  virtual Result<std::string> Read(const std::string& path) = 0;
  // One write(2) of `value`: cgroup files take a value per write.
  virtual Status Write(const std::string& path, std::string_view value) = 0;
  virtual Status MakeDir(const std::string& path) = 0;
  virtual Status RemoveDir(const std::string& path) = 0;
  // An O_WRONLY | O_CLOEXEC fd of `path`.
  virtual Result<UniqueFd> OpenForWrite(const std::string& path) = 0;

  // The real cgroup file systems (a process-wide object).
  static CgroupFs* Real();
};

// The pure parts, exposed for tests.

// One line of /proc/<pid>/cgroup: "4:memory:/user.slice" (v1) or "0::/a/b"
// (v2: id 0, no controllers).
struct CgroupMembership {
  int hierarchy_id = 0;
  std::vector<std::string> controllers;  // "memory", "cpu", "name=systemd"
  std::string path;                      // relative to the hierarchy's root
};
// Errors: EINVAL (op "parse /proc/self/cgroup") naming a malformed line.
Result<std::vector<CgroupMembership>> ParseProcCgroup(std::string_view text);

// A cgroup or cgroup2 mount in /proc/<pid>/mountinfo.
struct CgroupMount {
  std::string root;         // the mounted subtree of the hierarchy ("/")
  std::string mount_point;  // octal escapes (\040) decoded
  bool v2 = false;
  std::vector<std::string> options;  // super options: "rw", "memory"...
};
// The cgroup mounts, in order; other lines (and malformed ones) are passed
// over.
std::vector<CgroupMount> ParseCgroupMounts(std::string_view mountinfo);

// The directory of the caller's own cgroup in the hierarchy carrying
// `controller` ("" for the v2 hierarchy), or nullopt when no mount shows it
// (controller not mounted, or the cgroup outside the mounted subtree).
std::optional<std::string> OwnCgroupDir(
    const std::vector<CgroupMembership>& memberships,
    const std::vector<CgroupMount>& mounts, std::string_view controller);

// What Create reads about the calling process.
struct CgroupHost {
  CgroupFs* fs = nullptr;
  std::string proc_self_cgroup;  // the text of /proc/self/cgroup
  std::string mountinfo;         // the text of /proc/self/mountinfo
  pid_t self = 0;                // the caller's pid (moved in cgroup v2)
};

// The cgroups of one container. Movable, not copyable; the destructor
// removes them (Remove, errors ignored).
class ContainerCgroup {
 public:
  // An object that does nothing (no limit asked for, or none applicable).
  ContainerCgroup() = default;
  ContainerCgroup(ContainerCgroup&& o) noexcept;
  ContainerCgroup& operator=(ContainerCgroup&& o) noexcept;
  ContainerCgroup(const ContainerCgroup&) = delete;
  ContainerCgroup& operator=(const ContainerCgroup&) = delete;
  ~ContainerCgroup();

  // Makes the cgroup `strata-<container_id>` below the caller's own cgroup
  // (in each v1 hierarchy that carries a limit, or once in v2) and writes
  // the limits: memory.max and memory.swap.max 0 (v2), or
  // memory.limit_in_bytes and memory.memsw.limit_in_bytes (v1, so that
  // swapping does not dodge the limit), and pids.max; opens each
  // cgroup.procs for JoinCgroups. A stale directory of that name (left by a
  // killed `strata run`) is removed first. Call it before the container's
  // processes exist, in the process that will wait for them.
  //
  // A limit that cannot be set is left out and *warning gets one line (no
  // newline) naming the flag, the failing step with its errno text and what
  // would fix it; *warning is "" when every limit is set. In cgroup v2, when
  // the caller's cgroup holds only the caller, the caller moves itself to a
  // leaf `strata-<id>.launcher` (cgroup v2 hands controllers only to
  // cgroups without processes of their own) and Remove moves it back.
  //
  // Errors: EINVAL for a container id that is not a plain name, or a zero
  // limit; EINVAL or ERANGE from the kernel for a limit it refuses. Nothing
  // is left behind on error.
  static Result<ContainerCgroup> Create(const std::string& container_id,
                                        const ResourceLimits& limits,
                                        std::string* warning);
  // The same, against `host` (tests pass a fake CgroupFs and /proc texts).
  static Result<ContainerCgroup> Create(const std::string& container_id,
                                        const ResourceLimits& limits,
                                        const CgroupHost& host,
                                        std::string* warning);

  // The open cgroup.procs files, for JoinCgroups in the container's PID 1
  // (inherited through fork; O_CLOEXEC, so the command does not keep them).
  // Owned by this object: valid until Remove or destruction.
  //
  // Opened here, in `strata run`, rather than by path in PID 1: PID 1 is in
  // new user and mount namespaces where the host's cgroup files can belong
  // to unmapped ids, whereas the kernel checks a write to cgroup.procs
  // against the credentials the file was opened with (Linux 5.16, "cgroup:
  // Use open-time credentials for process migraton perm checks"); and a file
  // that cannot be opened shows up before any fork, in the warning, rather
  // than as a failed setup step inside the container.
  std::vector<int> procs_fds() const;
  // The cgroup directories made, in creation order (for messages, tests).
  std::vector<std::string> dirs() const;
  // What would be left if this process died before Remove: dirs() and the
  // cgroup v2 leaf the caller moved itself to, in an order rmdir can take.
  std::vector<std::string> leftovers() const;

  // Removes the cgroups. REQUIRES: the container's processes have exited
  // (a cgroup with processes cannot be removed: EBUSY is retried for about
  // a second, for exiting tasks the kernel has not released yet). Removes
  // as much as it can and returns the first error; a second call does
  // nothing.
  Status Remove();

 private:
  struct Group {
    std::string dir;
    UniqueFd procs;
  };

  // Sets the limits up; returns the warning ("" when all are set).
  Result<std::string> SetUp(const std::string& id, const ResourceLimits& limits,
                            const std::vector<CgroupMembership>& memberships,
                            const std::vector<CgroupMount>& mounts);
  Status SetUpV1(const std::string& parent, const std::string& id,
                 const ResourceLimits& limits);
  Status SetUpV2(const std::string& base, const std::string& id,
                 const ResourceLimits& limits, pid_t self);
  Status EnableV2Controllers(const std::string& base, const std::string& id,
                             const std::string& wanted, pid_t self);
  Status MakeGroup(const std::string& dir, const ResourceLimits& limits,
                   bool v2);
  Status MoveBack();

  CgroupFs* fs_ = nullptr;
  std::vector<Group> groups_;
  // cgroup v2, when the caller moved itself out of its own cgroup `base`:
  // the leaf it moved to and the controllers it enabled in base.
  std::string v2_base_, v2_leaf_, v2_enabled_;
  pid_t self_ = 0;
};

// Moves the calling process into the cgroups whose cgroup.procs are open as
// `procs_fds` (writes "0" into each). For the container's PID 1, first thing:
// what it starts or execs stays in them. Errors: the write's errno (EACCES,
// EBUSY...).
Status JoinCgroups(std::span<const int> procs_fds);

// Removes what a killed `strata run` left (ContainerCgroup::leftovers, one
// directory a line in `recorded`): each directory that is still there, if
// it is a strata cgroup under /sys/fs/cgroup (the list comes from a file in
// the store). Errors: the first rmdir that failed (EBUSY after a second:
// processes still in it).
Status RemoveLeftoverCgroups(std::string_view recorded);

}  // namespace strata::launcher
