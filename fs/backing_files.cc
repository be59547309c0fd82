#include "fs/backing_files.h"

#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"

namespace strata::fs {

namespace {

// Protocol 7.40 (Linux 6.9), newer than Debian 12's <linux/fuse.h>.
struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr unsigned long kBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kBackingClose = _IOW(229, 2, uint32_t);

// The initial user namespace maps every id to itself (a namespace made by
// root with the same map would pass too; the kernel then refuses, see Open).
bool InInitialUserNamespace() {
  auto map = sys::ReadFile("/proc/self/uid_map");
  unsigned long inside = 1, outside = 1, count = 0;
  return map &&
         std::sscanf(map->c_str(), "%lu %lu %lu", &inside, &outside, &count) ==
             3 &&
         inside == 0 && outside == 0 && count == 4294967295UL;
}

bool HasSysAdmin() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32))) !=
         0;
}

}  // namespace

bool BackingFiles::Permitted() {
  return HasSysAdmin() && InInitialUserNamespace();
}

// The kernel keeps the credentials of the registering thread for the
// backing file's I/O (fuse_backing_open: prepare_creds). Without CAP_FSETID
// in them, a write through it removes suid, sgid and capabilities from the
// upper file (see the header).
int BackingFiles::Register(int upper_fd) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2]{};
  bool dropped = false;
  if (::syscall(SYS_capget, &header, caps) == 0) {
    __user_cap_data_struct without[2] = {caps[0], caps[1]};
    without[CAP_FSETID / 32].effective &= ~(1u << (CAP_FSETID % 32));
    dropped = ::syscall(SYS_capset, &header, without) == 0;
  }
  int id = -1, err = errno;
  if (dropped) {  // never with CAP_FSETID
    BackingMap map{upper_fd, 0, 0};
    id = ::ioctl(dev_fd_, kBackingOpen, &map);
    err = errno;
    ::syscall(SYS_capset, &header, caps);  // this thread's, as they were
  }
  if (id > 0) return id;
  // Not fatal: the opens are cached, as without passthrough.
  spdlog::warn(
      "FUSE passthrough: no backing file ({}{}); files are cached "
      "instead",
      dropped ? "" : "cannot drop CAP_FSETID: ", std::strerror(err));
  refused_ = true;
  return 0;
}

int BackingFiles::Open(uint64_t nodeid, int upper_fd, bool writer,
                       bool privileged) {
  std::lock_guard lock(mutex_);
  Opens& o = opens_[nodeid];
  // The kernel takes no cached open beside a passed-through one: once
  // passed, every open of the inode is.
  bool pass = o.passed > 0 ||
              (upper_fd >= 0 && o.cached == 0 && !privileged && !refused_);
  if (pass && o.backing_id == 0) o.backing_id = Register(upper_fd);
  if (!pass || o.backing_id == 0) {
    ++o.cached;
    return 0;
  }
  ++o.passed;
  if (writer) {
    ++o.passed_writers;
    if (privileged && !o.hides_privileges) {
      o.hides_privileges = true;
      ++hiding_;
    }
  }
  return o.backing_id;
}

bool BackingFiles::Release(uint64_t nodeid, int backing_id, bool writer) {
  std::lock_guard lock(mutex_);
  auto it = opens_.find(nodeid);
  if (it == opens_.end()) return false;
  Opens& o = it->second;
  bool shown = false;
  if (backing_id == 0) {
    if (o.cached > 0) --o.cached;
  } else {
    if (writer && o.passed_writers > 0 && --o.passed_writers == 0 &&
        o.hides_privileges) {
      o.hides_privileges = false;
      --hiding_;
      shown = true;
    }
    if (o.passed > 0 && --o.passed == 0) {
      // The kernel holds the file for each open it passed through: the
      // id is only needed for opens to come.
      uint32_t id = static_cast<uint32_t>(o.backing_id);
      ::ioctl(dev_fd_, kBackingClose, &id);
      o.backing_id = 0;
    }
  }
  if (o.passed == 0 && o.cached == 0) opens_.erase(it);
  return shown;
}

void BackingFiles::PrivilegesAdded(uint64_t nodeid) {
  std::lock_guard lock(mutex_);
  auto it = opens_.find(nodeid);
  if (it == opens_.end() || it->second.passed_writers == 0 ||
      it->second.hides_privileges)
    return;
  it->second.hides_privileges = true;
  ++hiding_;
}

bool BackingFiles::HidesPrivileges(uint64_t nodeid) {
  if (hiding_.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard lock(mutex_);
  auto it = opens_.find(nodeid);
  return it != opens_.end() && it->second.hides_privileges;
}

}  // namespace strata::fs
