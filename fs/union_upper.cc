// UnionFs: writing the upper directory — copy-up of directories, metadata
// and data, the hardlink index, whiteouts. Every new object is built in the
// work directory (<work>/strata-tmp) and renamed into place, so a killed
// daemon leaves the old state or the new one, never a half-made object.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <charconv>
#include <mutex>
#include <shared_mutex>

#include <spdlog/spdlog.h>

#include "fs/host_io.h"
#include "fs/union_fs.h"

namespace strata::fs {

namespace {

bool IsPermissionError(int code) {
  return code == EPERM || code == EINVAL || code == EACCES || code == ENOTSUP;
}

}  // namespace

// Copy-up adds an entry to the parent's upper directory, which is not a
// change of the union directory: keep its times, as kernel overlayfs does.
Status UnionFs::PlaceCopyUp(const std::string& tmp, const Inode& dir,
                            std::string_view name) {
  STRATA_ASSIGN_OR_RETURN(struct stat before, host::StatFd(dir.upper.get()));
  STRATA_RETURN_IF_ERROR(PlaceFromWork(tmp, dir, name));
  struct timespec t[2] = {before.st_atim, before.st_mtim};
  return host::Utimens(FdPath(dir.upper.get()), t);
}

Status UnionFs::PlaceFromWork(const std::string& tmp, const Inode& dir,
                              std::string_view name) {
  std::string n(name);
  if (::renameat(work_fd_.get(), tmp.c_str(), dir.upper.get(), n.c_str()) == 0)
    return Ok();
  if (errno != ENOTDIR && errno != EISDIR)
    return Error::FromErrno("rename", "into upper " + n);
  // A directory over a whiteout device (or the reverse): exchange, then
  // drop what came back into the work directory.
  if (::renameat2(work_fd_.get(), tmp.c_str(), dir.upper.get(), n.c_str(),
                  RENAME_EXCHANGE) != 0)
    return Error::FromErrno("rename", "into upper " + n);
  return host::RemoveTreeAt(work_fd_.get(), tmp);
}

Result<bool> UnionFs::NeedsWhiteout(const Inode& dir, std::string_view name) {
  STRATA_ASSIGN_OR_RETURN(auto le, LowerChild(dir, name));
  return le.has_value();
}

Status UnionFs::MakeWhiteoutAt(const Inode& dir, std::string_view name) {
  std::string n(name);
  if (whiteout_devs_) {
    if (::mknodat(dir.upper.get(), n.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0)
      return Ok();
    if (errno != EPERM) return Error::FromErrno("mknod", "whiteout " + n);
    whiteout_devs_ = false;
  }
  std::string wh = std::string(kWhPrefix) + n;
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd, host::OpenAt(dir.upper.get(), wh, O_CREAT | O_WRONLY, 0));
  return Ok();
}

Status UnionFs::RemoveUpperEntry(const Inode& dir, std::string_view name,
                                 bool whiteout) {
  std::string n(name);
  if (!whiteout) {
    // The common case (an upper-only name): one unlink; a directory, which
    // may still hold whiteouts, is emptied first.
    if (::unlinkat(dir.upper.get(), n.c_str(), 0) == 0 || errno == ENOENT)
      return Ok();
    if (errno != EISDIR) return Error::FromErrno("unlink", n);
    if (::unlinkat(dir.upper.get(), n.c_str(), AT_REMOVEDIR) == 0) return Ok();
    if (errno != ENOTEMPTY) return Error::FromErrno("rmdir", n);
    return host::RemoveTreeAt(dir.upper.get(), name);
  }
  STRATA_ASSIGN_OR_RETURN(auto st, host::StatAt(dir.upper.get(), name));
  if (!st) return MakeWhiteoutAt(dir, name);
  if (whiteout_devs_) {
    // Replace the entry by a whiteout in one rename.
    STRATA_ASSIGN_OR_RETURN(std::string tmp, TempName());
    if (::mknodat(work_fd_.get(), tmp.c_str(), S_IFCHR | 0, makedev(0, 0)) ==
        0) {
      if (!S_ISDIR(st->st_mode)) {
        if (::renameat(work_fd_.get(), tmp.c_str(), dir.upper.get(),
                       n.c_str()) != 0)
          return Error::FromErrno("rename", "whiteout over " + n);
        return Ok();
      }
      if (::renameat2(work_fd_.get(), tmp.c_str(), dir.upper.get(), n.c_str(),
                      RENAME_EXCHANGE) != 0)
        return Error::FromErrno("rename", "whiteout over " + n);
      return host::RemoveTreeAt(work_fd_.get(), tmp);
    }
    if (errno != EPERM) return Error::FromErrno("mknod", "whiteout");
    whiteout_devs_ = false;
  }
  STRATA_RETURN_IF_ERROR(host::RemoveTreeAt(dir.upper.get(), name));
  return MakeWhiteoutAt(dir, name);
}

bool UnionFs::CanOwn(uid_t uid, gid_t gid) const {
  return can_chown_ || (uid == daemon_uid_ && gid == daemon_gid_);
}

// A device node, fifo or socket `name` in `dirfd`. Where the daemon may not
// make it (no CAP_MKNOD) or not give it its owner (user xattrs, hence
// override_stat, exist only on files and directories), a placeholder: an
// empty regular file whose override_stat says what it is.
Status UnionFs::MakeSpecial(int dirfd, const std::string& name, mode_t mode,
                            dev_t rdev, uid_t uid, gid_t gid) {
  if (CanOwn(uid, gid)) {
    if (::mknodat(dirfd, name.c_str(), mode, rdev) == 0) return Ok();
    if (errno != EPERM) return Error::FromErrno("mknod", name);
  }
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd,
      host::OpenAt(dirfd, name, O_CREAT | O_EXCL | O_WRONLY, 0600));
  OverrideStat o{uid, gid, mode, rdev};
  return host::SetXattr(FdPath(dirfd) + "/" + name, kOverrideStat,
                        FormatOverrideStat(o));
}

// Sets owner, mode, xattrs and times of the object at `path` (a new object
// in the work directory) as `st` and `xattrs` say. Where the daemon may not
// chown, the owner and mode go to user.containers.override_stat.
Status UnionFs::CopyAttrsTo(const std::string& path, const struct stat& st,
                            const host::XattrList& xattrs, bool is_symlink) {
  // Owner first: chown drops security.capability and suid bits.
  STRATA_RETURN_IF_ERROR(ApplyOwner(path, st.st_uid, st.st_gid, st.st_mode,
                                    st.st_rdev, is_symlink));
  for (const auto& [name, value] : xattrs) {
    auto s = host::SetXattr(path, name, value);
    if (!s) {
      if (IsPermissionError(s.error().code()) && !name.starts_with("user.")) {
        spdlog::debug("copy-up: {} not kept ({})", name, s.error().ToString());
        continue;
      }
      if (is_symlink && name.starts_with("user.")) continue;  // not allowed
      return s.error();
    }
  }
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  STRATA_RETURN_IF_ERROR(host::Utimens(path, times));
  return Ok();
}

Status UnionFs::ApplyOwner(const std::string& path, uid_t uid, gid_t gid,
                           mode_t mode, dev_t rdev, bool is_symlink,
                           bool set_mode, bool* recorded) {
  bool owned = true;
  if (uid != daemon_uid_ || gid != daemon_gid_) {
    auto chown = host::Chown(path, uid, gid);
    if (!chown) {
      if (!IsPermissionError(chown.error().code())) return chown.error();
      owned = false;
    }
  }
  if (!is_symlink && (set_mode || !owned)) {
    // Where ownership is only recorded, the daemon keeps access to the file.
    mode_t real = mode & 07777;
    if (!owned) real = (real & 0777) | (S_ISDIR(mode) ? 0700 : 0600);
    if (::chmod(path.c_str(), real) != 0)
      return Error::FromErrno("chmod", path);
  }
  if (!owned && !is_symlink) {
    // The real object is a file or directory here (a fifo, socket or device
    // the daemon may not own is a placeholder file: MakeSpecial).
    OverrideStat o{uid, gid, mode, rdev};
    STRATA_RETURN_IF_ERROR(
        host::SetXattr(path, kOverrideStat, FormatOverrideStat(o)));
    if (recorded != nullptr) *recorded = true;
  }
  return Ok();
}

Result<bool> UnionFs::HasDefaultAcl(Inode& dir) {
  if (!dir.default_acl) {
    STRATA_ASSIGN_OR_RETURN(auto acl, host::GetXattr(FdPath(dir.upper.get()),
                                                     std::string(kDefaultAcl)));
    dir.default_acl = acl.has_value();
  }
  return *dir.default_acl;
}

Status UnionFs::EnsureUpperDir(const std::shared_ptr<Inode>& dir) {
  if (read_only()) return Error(EROFS, "copy-up");
  if (dir->has_upper) return Ok();
  if (!dir->parent) return Error(EIO, "copy-up", "root without upper");
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(dir->parent));
  STRATA_ASSIGN_OR_RETURN(struct stat st, lower_->GetAttr(*dir->lower));
  STRATA_ASSIGN_OR_RETURN(auto xattrs, lower_->Xattrs(*dir->lower));
  STRATA_ASSIGN_OR_RETURN(std::string tmp, TempName());
  if (::mkdirat(work_fd_.get(), tmp.c_str(), 0700) != 0)
    return Error::FromErrno("mkdir", "copy-up of " + dir->name);
  STRATA_RETURN_IF_ERROR(
      CopyAttrsTo(FdPath(work_fd_.get()) + "/" + tmp, st, xattrs, false));
  STRATA_RETURN_IF_ERROR(PlaceCopyUp(tmp, *dir->parent, dir->name));
  STRATA_ASSIGN_OR_RETURN(dir->upper,
                          host::OpenAt(dir->parent->upper.get(), dir->name,
                                       O_PATH | O_DIRECTORY | O_NOFOLLOW));
  dir->has_upper = true;
  AttrsChanged(*dir);
  return Ok();
}

void UnionFs::AttrsChanged(const Inode& node) {
  if (!invalidate_attrs_) return;
  if (uint64_t id = table_->KnownNodeId(node)) invalidate_attrs_(id);
}

Status UnionFs::CopyUpMeta(const std::shared_ptr<Inode>& node) {
  if (read_only()) return Error(EROFS, "copy-up");
  if (node->has_upper) return Ok();
  if (node->is_dir()) return EnsureUpperDir(node);
  if (node->is_reg() && node->lower_nlink > 1) return EnsureIndexed(node);
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(node->parent));
  LowerRef ref = *node->lower;
  STRATA_ASSIGN_OR_RETURN(struct stat st, lower_->GetAttr(ref));
  STRATA_ASSIGN_OR_RETURN(auto xattrs, lower_->Xattrs(ref));
  STRATA_ASSIGN_OR_RETURN(std::string tmp, TempName());
  std::string path = FdPath(work_fd_.get()) + "/" + tmp;
  bool symlink = S_ISLNK(st.st_mode);
  bool metacopy = false;
  if (S_ISREG(st.st_mode)) {
    STRATA_ASSIGN_OR_RETURN(
        UniqueFd fd,
        host::OpenAt(work_fd_.get(), tmp, O_CREAT | O_EXCL | O_WRONLY, 0600));
    // A sparse stub of the right size: `du` of the upper shows no data.
    if (::ftruncate(fd.get(), st.st_size) != 0)
      return Error::FromErrno("ftruncate", "copy-up stub");
    STRATA_RETURN_IF_ERROR(host::SetXattr(path, format_.MetaCopy(), ""));
    STRATA_RETURN_IF_ERROR(
        host::SetXattr(path, format_.LowerData(), node->lower_path));
    metacopy = true;
  } else if (symlink) {
    STRATA_ASSIGN_OR_RETURN(std::string target, lower_->ReadLink(ref));
    if (::symlinkat(target.c_str(), work_fd_.get(), tmp.c_str()) != 0)
      return Error::FromErrno("symlink", "copy-up of " + node->name);
  } else {
    STRATA_RETURN_IF_ERROR(MakeSpecial(work_fd_.get(), tmp, st.st_mode,
                                       st.st_rdev, st.st_uid, st.st_gid));
  }
  auto origin =
      host::SetXattr(path, format_.Origin(), std::to_string(node->st_ino));
  if (!origin && !(symlink || !S_ISREG(st.st_mode))) return origin.error();
  STRATA_RETURN_IF_ERROR(CopyAttrsTo(path, st, xattrs, symlink));
  STRATA_RETURN_IF_ERROR(PlaceCopyUp(tmp, *node->parent, node->name));
  node->has_upper = true;
  node->metacopy = metacopy;
  AttrsChanged(*node);
  if (auto ov = host::GetXattr(UpperPath(*node), kOverrideStat); ov && *ov)
    node->override = ParseOverrideStat(**ov, st.st_mode & S_IFMT);
  return Ok();
}

// Copies the data of `ref` into `fd`, a new file in the work directory;
// `durable`: the caller fsyncs it next (host::CopyData). Returns whether
// the copy shares the lower file's extents (FICLONE).
static Result<host::CopyKind> FillFromLower(LowerSource& lower, LowerRef ref,
                                            int fd, bool durable) {
  STRATA_ASSIGN_OR_RETURN(layerdb::FileContent content, lower.OpenContent(ref));
  if (content.in_blob())
    return host::CopyData(content.fd.get(), fd, content.size, durable);
  const std::string& d = content.inline_data;
  if (!d.empty() &&
      ::pwrite(fd, d.data(), d.size(), 0) != static_cast<ssize_t>(d.size()))
    return Error::FromErrno("write", "copy-up");
  return host::CopyKind::kCopied;
}

// Makes a filled copy-up target durable before it is renamed into place.
// Not after a clone, as kernel overlayfs (ovl_copy_up_file) does not: the
// lower data is on disk (blobs are synced at import; FICLONE writes back a
// lower file's dirty pages before it shares them), and the clone is
// journaled metadata that the filesystems with FICLONE (XFS, Btrfs) commit
// before the later rename. Its fsync was 0.57 of the 1.3 ms
// a first write took on XFS (bench/reflink_bench).
Status UnionFs::SyncCopy(int fd, host::CopyKind kind) {
  return kind == host::CopyKind::kShared ? Ok() : SyncFile(fd);
}

Status UnionFs::EnsureIndexed(const std::shared_ptr<Inode>& node) {
  if (node->indexed) return Ok();
  if (read_only()) return Error(EROFS, "copy-up");
  LowerRef ref = *node->lower;
  STRATA_ASSIGN_OR_RETURN(struct stat st, lower_->GetAttr(ref));
  STRATA_ASSIGN_OR_RETURN(auto xattrs, lower_->Xattrs(ref));
  STRATA_ASSIGN_OR_RETURN(std::string tmp, TempName());
  std::string path = FdPath(work_fd_.get()) + "/" + tmp;
  {
    STRATA_ASSIGN_OR_RETURN(
        UniqueFd fd,
        host::OpenAt(work_fd_.get(), tmp, O_CREAT | O_EXCL | O_RDWR, 0600));
    STRATA_ASSIGN_OR_RETURN(auto kind, FillFromLower(*lower_, ref, fd.get(),
                                                     !options_.volatile_upper));
    STRATA_RETURN_IF_ERROR(SyncCopy(fd.get(), kind));
  }
  STRATA_RETURN_IF_ERROR(
      host::SetXattr(path, format_.Origin(), std::to_string(node->st_ino)));
  STRATA_RETURN_IF_ERROR(
      host::SetXattr(path, format_.Nlink(), std::to_string(node->lower_nlink)));
  STRATA_RETURN_IF_ERROR(CopyAttrsTo(path, st, xattrs, false));
  std::string key = IndexKey(node->st_ino);
  if (::renameat(work_fd_.get(), tmp.c_str(), index_fd_.get(), key.c_str()) !=
      0)
    return Error::FromErrno("rename", "index entry " + key);
  node->has_upper = true;
  node->indexed = true;
  AttrsChanged(*node);
  node->metacopy = false;
  node->group_nlink = node->lower_nlink;
  if (auto ov = host::GetXattr(UpperPath(*node), kOverrideStat); ov && *ov)
    node->override = ParseOverrideStat(**ov, S_IFREG);
  node->data_generation.fetch_add(1);
  return Ok();
}

Status UnionFs::AdjustGroupNlink(Inode& node, int delta) {
  int64_t n = static_cast<int64_t>(node.group_nlink.value_or(1)) + delta;
  if (n < 0) n = 0;
  node.group_nlink = static_cast<uint32_t>(n);
  return host::SetXattr(UpperPath(node), format_.Nlink(), std::to_string(n));
}

Status UnionFs::CopyUpData(const std::shared_ptr<Inode>& node, bool truncate) {
  std::lock_guard latch(node->data_mutex.get());
  std::optional<LowerRef> ref;
  {
    std::unique_lock lock(ns_mutex_);
    if (read_only()) return Error(EROFS, "copy-up");
    if (!node->is_reg()) return Ok();
    if (node->has_upper && !node->metacopy) return Ok();
    if (!node->has_upper && node->lower_nlink > 1) return EnsureIndexed(node);
    STRATA_RETURN_IF_ERROR(EnsureUpperDir(node->parent));
    ref = node->lower;
  }
  // The data is copied with no union lock held: other requests go on.
  STRATA_ASSIGN_OR_RETURN(std::string tmp, TempName());
  std::string path = FdPath(work_fd_.get()) + "/" + tmp;
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd,
      host::OpenAt(work_fd_.get(), tmp, O_CREAT | O_EXCL | O_RDWR, 0600));
  auto kind = host::CopyKind::kCopied;
  if (!truncate) {
    STRATA_ASSIGN_OR_RETURN(
        kind, FillFromLower(*lower_, *ref, fd.get(), !options_.volatile_upper));
  }
  STRATA_RETURN_IF_ERROR(SyncCopy(fd.get(), kind));
  std::unique_lock lock(ns_mutex_);
  // Metadata as it is now: a chmod or chown may have made a stub meanwhile.
  struct stat st {};
  host::XattrList xattrs;
  if (node->has_upper) {
    STRATA_ASSIGN_OR_RETURN(st, UpperStat(*node));
    STRATA_ASSIGN_OR_RETURN(auto all, host::ReadXattrs(UpperPath(*node)));
    for (auto& kv : all) {
      if (kv.first.ends_with("overlay.metacopy") ||
          kv.first.ends_with("strata.lowerdata"))
        continue;
      xattrs.push_back(std::move(kv));
    }
    if (node->override) {
      st.st_uid = daemon_uid_;
      st.st_gid = daemon_gid_;
    }
  } else {
    STRATA_ASSIGN_OR_RETURN(st, lower_->GetAttr(*ref));
    STRATA_ASSIGN_OR_RETURN(xattrs, lower_->Xattrs(*ref));
    xattrs.emplace_back(format_.Origin(), std::to_string(node->st_ino));
  }
  if (truncate) st.st_size = 0;
  STRATA_RETURN_IF_ERROR(CopyAttrsTo(path, st, xattrs, false));
  if (node->override && node->has_upper) {
    // Keep the recorded owner (CopyAttrsTo saw the daemon's own ids).
    STRATA_RETURN_IF_ERROR(host::SetXattr(path, kOverrideStat,
                                          FormatOverrideStat(*node->override)));
    if (::chmod(path.c_str(), (node->override->mode & 0777) | 0600) != 0)
      return Error::FromErrno("chmod", path);
  }
  if (node->unlinked) {
    // Open but nameless: the data lives on in an unnamed upper file.
    STRATA_ASSIGN_OR_RETURN(
        node->upper, host::OpenAt(work_fd_.get(), tmp, O_PATH | O_NOFOLLOW));
    ::unlinkat(work_fd_.get(), tmp.c_str(), 0);
  } else {
    STRATA_RETURN_IF_ERROR(PlaceCopyUp(tmp, *node->parent, node->name));
  }
  node->has_upper = true;
  node->metacopy = false;
  AttrsChanged(*node);
  if (!node->override) {
    if (auto ov = host::GetXattr(UpperPath(*node), kOverrideStat); ov && *ov)
      node->override = ParseOverrideStat(**ov, S_IFREG);
  }
  node->data_generation.fetch_add(1);
  return Ok();
}

void UnionFs::Renamed(const std::shared_ptr<Inode>& node,
                      const std::shared_ptr<Inode>& new_parent,
                      std::string_view new_name) {
  node->parent = new_parent;
  node->name = std::string(new_name);
}

Status UnionFs::MarkMovedDir(Inode& dir) {
  std::string path = FdPath(dir.upper.get());
  if (dir.lower && !dir.opaque)
    return host::SetXattr(path, format_.Redirect(), "/" + dir.lower_path);
  dir.opaque = true;
  return host::SetXattr(path, format_.Opaque(), "y");
}

}  // namespace strata::fs
