// UnionFs: attributes and xattrs. Changing metadata copies up metadata
// only (a sparse stub that names its lower data); changing the size copies
// the data.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <mutex>
#include <shared_mutex>

#include <fuse_lowlevel.h>

#include "fs/host_io.h"
#include "fs/union_fs.h"

namespace strata::fs {

namespace {

bool IsPermissionError(int code) {
  return code == EPERM || code == EINVAL;
}

}  // namespace

Status UnionFs::SetOwner(Inode& node, const std::string& path, uid_t uid,
                         gid_t gid) {
  if (!node.override) {
    auto chown = host::Chown(path, uid, gid);
    if (chown) return Ok();
    if (!IsPermissionError(chown.error().code()) || S_ISLNK(node.type))
      return chown.error();
    // The daemon may not give the file away: record the owner instead.
    STRATA_ASSIGN_OR_RETURN(struct stat st, UpperStat(node));
    node.override = OverrideStat{st.st_uid, st.st_gid, st.st_mode, st.st_rdev};
  }
  if (uid != static_cast<uid_t>(-1)) node.override->uid = uid;
  if (gid != static_cast<gid_t>(-1)) node.override->gid = gid;
  // chown drops suid/sgid of a regular file, as the kernel would.
  if (S_ISREG(node.override->mode)) node.override->mode &= ~(S_ISUID | S_ISGID);
  return host::SetXattr(path, kOverrideStat,
                        FormatOverrideStat(*node.override));
}

Status UnionFs::SetMode(Inode& node, const std::string& path, mode_t mode) {
  if (S_ISLNK(node.type)) return Ok();
  node.privs_clear = false;
  if (node.override) {
    node.override->mode = (node.override->mode & S_IFMT) | (mode & 07777);
    STRATA_RETURN_IF_ERROR(host::SetXattr(path, kOverrideStat,
                                          FormatOverrideStat(*node.override)));
    mode = (mode & 0777) | (node.is_dir() ? 0700 : 0600);
  }
  if (::chmod(path.c_str(), mode & 07777) != 0)
    return Error::FromErrno("chmod", node.name);
  return Ok();
}

namespace {

constexpr const char* kCapabilityXattr = "security.capability";

// The kernel's rule for a caller without CAP_FSETID (file_remove_privs,
// setattr_should_drop_sgid): suid always; sgid when group-executable, or
// when the caller is not in the file's group (without group execute, sgid
// marks mandatory locking, which members may keep).
mode_t WithoutPrivs(mode_t mode, gid_t gid,
                    FunctionRef<bool(gid_t)> caller_in_group) {
  mode &= ~S_ISUID;
  if ((mode & S_ISGID) && ((mode & S_IXGRP) || !caller_in_group(gid)))
    mode &= ~S_ISGID;
  return mode;
}

}  // namespace

Status UnionFs::KillPrivsLocked(Inode& node, const std::string& path, int fd,
                                FunctionRef<bool(gid_t)> caller_in_group) {
  if (!node.is_reg()) return Ok();
  bool changed = false;
  mode_t mode = 0;
  if (node.override) {
    OverrideStat& o = *node.override;
    mode = WithoutPrivs(o.mode, o.gid, caller_in_group);
    if (mode != o.mode) {
      o.mode = mode;
      STRATA_RETURN_IF_ERROR(
          host::SetXattr(path, kOverrideStat, FormatOverrideStat(o)));
      changed = true;
    }
  } else {
    STRATA_ASSIGN_OR_RETURN(struct stat st,
                            fd >= 0 ? host::StatFd(fd) : UpperStat(node));
    mode = WithoutPrivs(st.st_mode, st.st_gid, caller_in_group);
    if (mode != st.st_mode) {
      STRATA_RETURN_IF_ERROR(host::ChmodFd(fd, path, mode & 07777));
      changed = true;
    }
  }
  // Look first: removing security.capability needs CAP_SETFCAP even when
  // it is not there, which a rootless daemon lacks.
  STRATA_ASSIGN_OR_RETURN(auto cap, host::GetXattr(path, kCapabilityXattr));
  if (cap) {
    STRATA_RETURN_IF_ERROR(host::RemoveXattr(path, kCapabilityXattr));
    changed = true;
  }
  // The kernel refreshes only mtime and size after a write: a stat asking
  // for the mode alone would show the old one.
  if (changed) AttrsChanged(node);
  // A sgid kept for a group member is not clear: the next writer may not
  // be one.
  node.privs_clear = (mode & (S_ISUID | S_ISGID)) == 0;
  return Ok();
}

Status UnionFs::KillPrivs(OpenFile& file,
                          FunctionRef<bool(gid_t)> caller_in_group) {
  Inode& node = *file.node;
  if (node.privs_clear.load(std::memory_order_relaxed)) return Ok();
  if (file.lower || !file.fd.valid()) return Ok();  // nothing written
  std::unique_lock lock(ns_mutex_);
  return KillPrivsLocked(node, UpperPath(node), file.fd.get(), caller_in_group);
}

bool UnionFs::HasPrivs(OpenFile& file) {
  Inode& node = *file.node;
  if (node.privs_clear.load(std::memory_order_relaxed)) return false;
  if (file.lower || !file.fd.valid()) return true;
  // Shared: SetMode and SetXattr clear privs_clear under the unique lock.
  std::shared_lock lock(ns_mutex_);
  mode_t mode = 0;
  if (node.override) {
    mode = node.override->mode;
  } else {
    auto st = host::StatFd(file.fd.get());
    if (!st) return true;
    mode = st->st_mode;
  }
  if (mode & (S_ISUID | S_ISGID)) return true;
  if (::fgetxattr(file.fd.get(), kCapabilityXattr, nullptr, 0) >= 0 ||
      (errno != ENODATA && errno != ENOTSUP))
    return true;
  node.privs_clear = true;
  return false;
}

Status UnionFs::SetTimes(Inode& node, const std::string& path,
                         const struct timespec times[2]) {
  if (!kernel_keeps_times_ || !node.is_reg()) return host::Utimens(path, times);
  // The kernel's mtime from now on (see KeepingTimes); UTIME_NOW (a
  // utimes(NULL)) is read back on the next data change.
  Inode::KernelTimes& kt = node.kernel_times.get();
  std::lock_guard lock(kt.mutex);
  if (times[1].tv_nsec == UTIME_NOW) kt.mtime.reset();
  if (times[1].tv_nsec != UTIME_NOW && times[1].tv_nsec != UTIME_OMIT)
    kt.mtime = times[1];
  return host::Utimens(path, times);
}

Result<struct stat> UnionFs::SetAttr(uint64_t nodeid, const struct stat& attr,
                                     int to_set, OpenFile* file,
                                     FunctionRef<bool(gid_t)> caller_in_group) {
  if (read_only()) return Error(EROFS, "setattr");
  auto node = table_->GetShared(nodeid);
  if (!node) return Error(ESTALE, "setattr");
  // The kernel may write back times it kept, ctime among
  // them, also of an inode just unlinked: nothing to copy up (ctime is
  // the host's to set), and no name to copy up to.
  if ((to_set & ~FUSE_SET_ATTR_CTIME) == 0 ||
      (node->unlinked && !node->has_upper)) {
    std::shared_lock lock(ns_mutex_);
    return StatOf(*node);
  }
  off_t old_size = -1;
  if ((to_set & FUSE_SET_ATTR_SIZE) && node->is_reg()) {
    {
      std::shared_lock lock(ns_mutex_);
      STRATA_ASSIGN_OR_RETURN(struct stat before, StatOf(*node));
      old_size = before.st_size;
    }
    STRATA_RETURN_IF_ERROR(CopyUpData(node, attr.st_size == 0));
  }
  std::unique_lock lock(ns_mutex_);
  if (!node->has_upper) {
    STRATA_RETURN_IF_ERROR(CopyUpMeta(node));
  }
  std::string path = UpperPath(*node);
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid =
        (to_set & FUSE_SET_ATTR_UID) ? attr.st_uid : static_cast<uid_t>(-1);
    gid_t gid =
        (to_set & FUSE_SET_ATTR_GID) ? attr.st_gid : static_cast<gid_t>(-1);
    STRATA_RETURN_IF_ERROR(SetOwner(*node, path, uid, gid));
  }
  // FATTR_KILL_SUIDGID (a truncate by a caller without CAP_FSETID under
  // FUSE_HANDLE_KILLPRIV_V2) arrives as FUSE_SET_ATTR_KILL_SUID: same bit.
  if ((to_set & FUSE_SET_ATTR_KILL_SUID) && !node->privs_clear)
    STRATA_RETURN_IF_ERROR(KillPrivsLocked(*node, path, -1, caller_in_group));
  if (to_set & FUSE_SET_ATTR_MODE)
    STRATA_RETURN_IF_ERROR(SetMode(*node, path, attr.st_mode));
  if (to_set & FUSE_SET_ATTR_SIZE) {
    int fd = file != nullptr && file->fd.valid() && !file->lower
                 ? file->fd.get()
                 : -1;
    auto truncate = [&]() -> Status {
      int rc = fd >= 0 ? ::ftruncate(fd, attr.st_size)
                       : ::truncate(path.c_str(), attr.st_size);
      if (rc != 0) return Error::FromErrno("truncate", node->name);
      return Ok();
    };
    // An mtime sent with it is applied below.
    STRATA_RETURN_IF_ERROR((to_set & FUSE_SET_ATTR_MTIME)
                               ? truncate()
                               : KeepingTimes(*node, fd, path, truncate));
    // Under the writeback cache the kernel sends the mtime it gave the
    // truncate (or none, when the size did not change in its view).
    if (old_size != attr.st_size && !(to_set & FUSE_SET_ATTR_MTIME) &&
        !kernel_keeps_times_) {
      // A copy-up that skipped the data already had the new size, so the
      // truncate changed nothing: the size did change in the union.
      struct timespec now[2];
      now[0].tv_nsec = UTIME_OMIT;
      now[1].tv_nsec = UTIME_NOW;
      STRATA_RETURN_IF_ERROR(host::Utimens(path, now));
    }
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec t[2];
    t[0].tv_nsec = UTIME_OMIT;
    t[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      t[0].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      t[0] = attr.st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      t[1].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      t[1] = attr.st_mtim;
    }
    STRATA_RETURN_IF_ERROR(SetTimes(*node, path, t));
  }
  return StatOf(*node);
}

Result<std::string> UnionFs::GetXattr(uint64_t nodeid, std::string_view name) {
  std::string n(name);
  if (UpperFormat::IsPrivateXattr(n) || n == kOverrideStat)
    return Error(ENODATA, "getxattr", n);
  std::shared_lock lock(ns_mutex_);
  Inode& node = table_->Get(nodeid);
  if (node.has_upper) {
    auto v = host::GetXattr(UpperPath(node), n);
    // FIXME: a hardlinked symlink whose remembered name was unlinked has no
    // path for l*xattr (getxattrat(2) needs Linux 6.13); it shows none.
    if (!v && v.error().code() == ENOENT && S_ISLNK(node.type))
      return Error(ENODATA, "getxattr", n);
    if (!v) return v.error();
    if (!*v) return Error(ENODATA, "getxattr", n);
    return std::move(**v);
  }
  if (!node.lower) return Error(ENODATA, "getxattr", n);
  STRATA_ASSIGN_OR_RETURN(auto all, lower_->Xattrs(*node.lower));
  for (auto& [k, v] : all)
    if (k == n) return std::move(v);
  return Error(ENODATA, "getxattr", n);
}

Result<std::vector<std::string>> UnionFs::ListXattrs(uint64_t nodeid) {
  std::shared_lock lock(ns_mutex_);
  Inode& node = table_->Get(nodeid);
  std::vector<std::string> out;
  if (node.has_upper) {
    auto listed = host::ListXattrNames(UpperPath(node));
    if (!listed && listed.error().code() == ENOENT && S_ISLNK(node.type))
      return out;  // see GetXattr
    if (!listed) return listed.error();
    for (auto& n : *listed)
      if (!UpperFormat::IsPrivateXattr(n) && n != kOverrideStat)
        out.push_back(std::move(n));
    return out;
  }
  if (!node.lower) return out;
  STRATA_ASSIGN_OR_RETURN(auto all, lower_->Xattrs(*node.lower));
  for (auto& kv : all)
    out.push_back(std::move(kv.first));
  return out;
}

Status UnionFs::SetXattr(uint64_t nodeid, std::string_view name,
                         std::string_view value, int flags) {
  std::string n(name);
  if (UpperFormat::IsPrivateXattr(n) || n == kOverrideStat)
    return Error(EPERM, "setxattr", n);
  if (read_only()) return Error(EROFS, "setxattr");
  auto node = table_->GetShared(nodeid);
  if (!node) return Error(ESTALE, "setxattr");
  std::unique_lock lock(ns_mutex_);
  if (!node->has_upper) STRATA_RETURN_IF_ERROR(CopyUpMeta(node));
  if (n == kDefaultAcl) node->default_acl.reset();
  if (n.starts_with("security.")) node->privs_clear = false;
  auto set = host::SetXattr(UpperPath(*node), n, value, flags);
  if (!set) return Error(set.error().code(), "setxattr", n);
  return Ok();
}

Status UnionFs::RemoveXattr(uint64_t nodeid, std::string_view name) {
  std::string n(name);
  if (UpperFormat::IsPrivateXattr(n) || n == kOverrideStat)
    return Error(EPERM, "removexattr", n);
  if (read_only()) return Error(EROFS, "removexattr");
  auto node = table_->GetShared(nodeid);
  if (!node) return Error(ESTALE, "removexattr");
  std::unique_lock lock(ns_mutex_);
  if (!node->has_upper) {
    // Nothing to copy up for an attribute that is not there.
    STRATA_ASSIGN_OR_RETURN(auto all, lower_->Xattrs(*node->lower));
    bool found = false;
    for (const auto& kv : all)
      found = found || kv.first == n;
    if (!found) return Error(ENODATA, "removexattr", n);
    STRATA_RETURN_IF_ERROR(CopyUpMeta(node));
  }
  if (n == kDefaultAcl) node->default_acl.reset();
  std::string path = UpperPath(*node);
  int rc = host::IsFdLink(path) ? ::removexattr(path.c_str(), n.c_str())
                                : ::lremovexattr(path.c_str(), n.c_str());
  if (rc != 0) return Error::FromErrno("removexattr", n);
  return Ok();
}

}  // namespace strata::fs
