#include "tools/launcher/rootfs_setup.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"

namespace strata::launcher {

namespace {

Status Mount(const std::string& src, const std::string& target,
             const char* type, unsigned long flags,
             const std::string& data = "") {
  if (::mount(src.c_str(), target.c_str(), type, flags,
              data.empty() ? nullptr : data.c_str()) != 0)
    return Error::FromErrno(
        "mount", (type ? std::string(type) : "bind") + " on " + target);
  return Ok();
}

// An empty file or directory at `path` to mount over (created in the upper
// when the image lacks it).
Status EnsurePath(const std::string& path, bool dir) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) return Ok();
  std::string parent = path.substr(0, path.rfind('/'));
  if (!parent.empty()) STRATA_RETURN_IF_ERROR(sys::MakeDirs(parent, 0755));
  if (dir) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
      return Error::FromErrno("mkdir", path);
    return Ok();
  }
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return Error::FromErrno("create", path);
  ::close(fd);
  return Ok();
}

Status BindFile(const std::string& host, const std::string& target, bool ro) {
  STRATA_RETURN_IF_ERROR(EnsurePath(target, false));
  STRATA_RETURN_IF_ERROR(Mount(host, target, nullptr, MS_BIND));
  if (ro)
    STRATA_RETURN_IF_ERROR(
        Mount("", target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY));
  return Ok();
}

Status SetUpDev(const std::string& root, bool full_map) {
  std::string dev = root + "/dev";
  STRATA_RETURN_IF_ERROR(EnsurePath(dev, true));
  STRATA_RETURN_IF_ERROR(Mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC,
                               "mode=755,size=65536k"));
  for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"})
    STRATA_RETURN_IF_ERROR(
        BindFile(std::string("/dev/") + node, dev + "/" + node, false));
  STRATA_RETURN_IF_ERROR(EnsurePath(dev + "/pts", true));
  std::string pts_opts = "newinstance,ptmxmode=0666,mode=0620";
  if (full_map || ::geteuid() == 0) pts_opts += ",gid=5";
  if (!Mount("devpts", dev + "/pts", "devpts", MS_NOSUID | MS_NOEXEC, pts_opts))
    STRATA_RETURN_IF_ERROR(Mount("devpts", dev + "/pts", "devpts",
                                 MS_NOSUID | MS_NOEXEC,
                                 "newinstance,ptmxmode=0666,mode=0620"));
  if (::symlink("pts/ptmx", (dev + "/ptmx").c_str()) != 0)
    return Error::FromErrno("symlink", dev + "/ptmx");
  STRATA_RETURN_IF_ERROR(EnsurePath(dev + "/shm", true));
  STRATA_RETURN_IF_ERROR(Mount("shm", dev + "/shm", "tmpfs",
                               MS_NOSUID | MS_NODEV, "mode=1777,size=65536k"));
  STRATA_RETURN_IF_ERROR(EnsurePath(dev + "/mqueue", true));
  if (!Mount("mqueue", dev + "/mqueue", "mqueue",
             MS_NOSUID | MS_NODEV | MS_NOEXEC))
    spdlog::warn("run: no /dev/mqueue (needs an IPC namespace)");
  const char* links[][2] = {{"/proc/self/fd", "fd"},
                            {"/proc/self/fd/0", "stdin"},
                            {"/proc/self/fd/1", "stdout"},
                            {"/proc/self/fd/2", "stderr"}};
  for (auto& l : links)
    if (::symlink(l[0], (dev + "/" + l[1]).c_str()) != 0)
      return Error::FromErrno("symlink", dev + "/" + l[1]);
  return Ok();
}

Status SetUpSys(const std::string& root, bool own_net) {
  std::string sys_dir = root + "/sys";
  STRATA_RETURN_IF_ERROR(EnsurePath(sys_dir, true));
  if (own_net && Mount("sysfs", sys_dir, "sysfs",
                       MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC))
    return Ok();
  // Without a network namespace of its own the kernel refuses a fresh sysfs:
  // bind the host's, read-only.
  STRATA_RETURN_IF_ERROR(Mount("/sys", sys_dir, nullptr, MS_BIND | MS_REC));
  return Mount(
      "", sys_dir, nullptr,
      MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
}

// After pivot_root: what container runtimes hide or make read-only.
void MaskProc() {
  for (const char* f : {"/proc/kcore", "/proc/keys", "/proc/timer_list",
                        "/proc/sched_debug", "/proc/latency_stats"}) {
    struct stat st {};
    if (::stat(f, &st) == 0 && !S_ISDIR(st.st_mode))
      (void)Mount("/dev/null", f, nullptr, MS_BIND);
  }
  for (const char* d : {"/proc/acpi", "/proc/scsi", "/sys/firmware"}) {
    struct stat st {};
    if (::stat(d, &st) == 0 && S_ISDIR(st.st_mode))
      (void)Mount("tmpfs", d, "tmpfs", MS_RDONLY, "size=0");
  }
  for (const char* d :
       {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"}) {
    if (Mount(d, d, nullptr, MS_BIND | MS_REC))
      (void)Mount("", d, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY);
  }
}

}  // namespace

Status SetUpRootfs(const std::string& root, const LaunchSpec& spec,
                   bool full_map) {
  STRATA_RETURN_IF_ERROR(EnsurePath(root + "/proc", true));
  STRATA_RETURN_IF_ERROR(
      Mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC));
  STRATA_RETURN_IF_ERROR(SetUpDev(root, full_map));
  STRATA_RETURN_IF_ERROR(SetUpSys(root, spec.net_none));
  if (!spec.net_none) {
    for (const char* f : {"/etc/resolv.conf", "/etc/hosts"})
      if (::access(f, R_OK) == 0)
        STRATA_RETURN_IF_ERROR(BindFile(f, root + f, true));
  }
  STRATA_RETURN_IF_ERROR(
      BindFile(spec.container_dir + "/hostname", root + "/etc/hostname", true));
  for (const auto& v : spec.volumes) {
    struct stat st {};
    if (::stat(v.host.c_str(), &st) != 0)
      return Error::FromErrno("volume", v.host);
    std::string target = root + v.container;
    STRATA_RETURN_IF_ERROR(EnsurePath(target, S_ISDIR(st.st_mode)));
    STRATA_RETURN_IF_ERROR(Mount(v.host, target, nullptr, MS_BIND | MS_REC));
    if (v.read_only)
      STRATA_RETURN_IF_ERROR(
          Mount("", target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY));
  }
  for (const auto& t : spec.tmpfs) {
    STRATA_RETURN_IF_ERROR(EnsurePath(root + t, true));
    STRATA_RETURN_IF_ERROR(
        Mount("tmpfs", root + t, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
  }
  if (::chdir(root.c_str()) != 0) return Error::FromErrno("chdir", root);
  if (::syscall(SYS_pivot_root, ".", ".") != 0)
    return Error::FromErrno("pivot_root", root);
  if (::umount2(".", MNT_DETACH) != 0)
    return Error::FromErrno("umount", "old root");
  if (::chdir("/") != 0) return Error::FromErrno("chdir", "/");
  MaskProc();
  if (spec.read_only)  // nosuid as mounted (launcher.cc, MountImage)
    STRATA_RETURN_IF_ERROR(
        Mount("", "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID));
  return Ok();
}

Status BringUpLoopback() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Error::FromErrno("socket", "lo");
  struct ifreq ifr {};
  std::snprintf(ifr.ifr_name, IFNAMSIZ, "lo");
  int rc = ::ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP;
    rc = ::ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int err = errno;
  ::close(s);
  if (rc != 0) return Error(err, "ioctl", "bring up lo");
  return Ok();
}

}  // namespace strata::launcher
