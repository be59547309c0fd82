// UnionFs: operations that change names — create, mkdir, mknod, symlink,
// link, unlink, rmdir, rename. Each runs under the exclusive namespace lock
// and changes the upper directory with renames from the work directory, so
// every step leaves a consistent union.

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <shared_mutex>

#include "fs/host_io.h"
#include "fs/union_fs.h"

namespace strata::fs {

namespace {

Status CheckName(std::string_view name) {
  if (name.size() > 255)
    return Error(ENAMETOOLONG, "create", std::string(name));
  // `.wh.` names are whiteout markers in the upper format.
  if (name.starts_with(kWhPrefix))
    return Error(EINVAL, "create",
                 std::string(name) + ": names starting with .wh. are reserved");
  return Ok();
}

void DropDotWh(const Inode& dir, std::string_view name) {
  std::string wh = std::string(kWhPrefix) + std::string(name);
  ::unlinkat(dir.upper.get(), wh.c_str(), 0);
}

}  // namespace

Result<EntryOut> UnionFs::CreateObject(uint64_t parent, std::string_view name,
                                       const NewObject& what,
                                       const Caller& caller, UniqueFd* fd_out) {
  if (read_only()) return Error(EROFS, "create");
  STRATA_RETURN_IF_ERROR(CheckName(name));
  std::unique_lock lock(ns_mutex_);
  auto dir = table_->GetShared(parent);
  if (!dir) return Error(ESTALE, "create");
  ChildProbe probe;
  STRATA_ASSIGN_OR_RETURN(auto existing,
                          LookupChild(dir, name, nullptr, &probe));
  if (existing) return Error(EEXIST, "create", std::string(name));
  // A directory copied up now is empty: `probe` saw no upper entry.
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(dir));
  bool lower_has = false;
  if (probe.in_lower) {
    lower_has = *probe.in_lower;
  } else {  // hidden by an upper whiteout: the lower was not asked
    STRATA_ASSIGN_OR_RETURN(lower_has, NeedsWhiteout(*dir, name));
  }
  STRATA_ASSIGN_OR_RETURN(struct stat dst, OwnerOf(*dir));
  mode_t type = what.mode & S_IFMT;
  bool in_work = probe.upper_entry || (type == S_IFDIR && lower_has);
  std::string tmp;
  if (in_work) {
    STRATA_ASSIGN_OR_RETURN(tmp, TempName());
  }
  int dirfd = in_work ? work_fd_.get() : dir->upper.get();
  std::string nm = in_work ? tmp : std::string(name);
  mode_t mode = what.mode;
  if (type != S_IFLNK) {
    // With a default ACL on the parent, the upper filesystem derives the
    // mode from it (our umask is 0); else the caller's umask applies.
    STRATA_ASSIGN_OR_RETURN(bool dacl, HasDefaultAcl(*dir));
    if (!dacl) mode &= ~caller.umask;
  }
  gid_t gid = caller.gid;
  if (dst.st_mode & S_ISGID) {  // BSD group semantics of a setgid directory
    gid = dst.st_gid;
    if (type == S_IFDIR) mode |= S_ISGID;
  }
  dev_t rdev = what.rdev;
  UniqueFd fd;
  switch (type) {
    case S_IFREG: {
      int flags = (what.open_flags & (O_ACCMODE | O_APPEND | O_DIRECT | O_SYNC |
                                      O_DSYNC | O_NOATIME)) |
                  O_CREAT | O_EXCL;
      STRATA_ASSIGN_OR_RETURN(fd, host::OpenAt(dirfd, nm, flags, mode & 07777));
      break;
    }
    case S_IFDIR:
      if (::mkdirat(dirfd, nm.c_str(), mode & 07777) != 0)
        return Error::FromErrno("mkdir", std::string(name));
      break;
    case S_IFLNK:
      if (::symlinkat(what.target.c_str(), dirfd, nm.c_str()) != 0)
        return Error::FromErrno("symlink", std::string(name));
      break;
    default:
      STRATA_RETURN_IF_ERROR(
          MakeSpecial(dirfd, nm, mode, rdev, caller.uid, gid));
  }
  std::string path = FdPath(dirfd) + "/" + nm;
  // The mode was given at creation (where a default ACL may have shaped
  // it); set it again only for bits that creation or chown may drop.
  bool special = (mode & (S_ISUID | S_ISGID | S_ISVTX)) != 0;
  bool recorded = false;
  STRATA_RETURN_IF_ERROR(ApplyOwner(path, caller.uid, gid, mode, rdev,
                                    type == S_IFLNK, special, &recorded));
  bool opaque = type == S_IFDIR && lower_has;
  if (opaque)
    STRATA_RETURN_IF_ERROR(host::SetXattr(path, format_.Opaque(), "y"));
  if (in_work) STRATA_RETURN_IF_ERROR(PlaceFromWork(tmp, *dir, name));
  // A .wh.NAME marker only ever hides a lower entry (LookupChild reads it
  // for no other name), so only then can there be one to drop.
  if (lower_has) DropDotWh(*dir, name);
  if (type == S_IFDIR) {
    // One more subdirectory in the union (the name was not there before).
    if (int64_t n = dir->dir_nlink.load(); n >= 0) dir->dir_nlink.store(n + 1);
  }
  bool plain =
      !recorded && (type == S_IFREG || type == S_IFDIR || type == S_IFLNK);
  STRATA_ASSIGN_OR_RETURN(EntryOut out,
                          ReplyCreated(dir, name, type, &fd, plain, opaque));
  if (fd_out != nullptr) *fd_out = std::move(fd);
  return out;
}

// The entry of an object CreateObject just made. `plain`: a file, directory
// or symlink whose owner is real (no override_stat), whose Inode follows
// from its lstat alone; anything else is resolved as a lookup would.
Result<EntryOut> UnionFs::ReplyCreated(const std::shared_ptr<Inode>& dir,
                                       std::string_view name, mode_t type,
                                       const UniqueFd* fd, bool plain,
                                       bool opaque) {
  if (!plain) {
    STRATA_ASSIGN_OR_RETURN(auto st, host::StatAt(dir->upper.get(), name));
    if (!st) return Error(EIO, "create", std::string(name) + " vanished");
    STRATA_ASSIGN_OR_RETURN(auto node, FromUpper(dir, name, *st));
    return Reply(node);
  }
  UniqueFd dirfd;
  if (type == S_IFDIR) {
    STRATA_ASSIGN_OR_RETURN(dirfd,
                            host::OpenAt(dir->upper.get(), name,
                                         O_PATH | O_DIRECTORY | O_NOFOLLOW));
    fd = &dirfd;
  }
  struct stat st {};
  if (fd != nullptr && fd->valid()) {
    STRATA_ASSIGN_OR_RETURN(st, host::StatFd(fd->get()));
  } else {
    STRATA_ASSIGN_OR_RETURN(auto at, host::StatAt(dir->upper.get(), name));
    if (!at) return Error(EIO, "create", std::string(name) + " vanished");
    st = *at;
  }
  STRATA_ASSIGN_OR_RETURN(
      auto node, FromNewUpper(dir, name, st, std::move(dirfd), opaque));
  if (node->unlinked || node->parent != dir || node->name != name)
    return Reply(node);  // an Inode we did not make: ask it
  EntryOut out;
  out.st = st;
  out.st.st_ino = node->st_ino;
  out.nodeid = table_->Ref(node);
  return out;
}

Result<EntryOut> UnionFs::MakeNode(uint64_t parent, std::string_view name,
                                   mode_t mode, dev_t rdev,
                                   const Caller& caller) {
  if (S_ISREG(mode) || (mode & S_IFMT) == 0) {
    UniqueFd fd;
    return CreateObject(parent, name,
                        NewObject{S_IFREG | (mode & 07777), 0, "", O_RDONLY},
                        caller, &fd);
  }
  return CreateObject(parent, name, NewObject{mode, rdev, "", 0}, caller,
                      nullptr);
}

Result<EntryOut> UnionFs::MakeDir(uint64_t parent, std::string_view name,
                                  mode_t mode, const Caller& caller) {
  return CreateObject(parent, name,
                      NewObject{S_IFDIR | (mode & 07777), 0, "", 0}, caller,
                      nullptr);
}

Result<EntryOut> UnionFs::MakeSymlink(uint64_t parent, std::string_view name,
                                      std::string_view target,
                                      const Caller& caller) {
  return CreateObject(parent, name,
                      NewObject{S_IFLNK | 0777, 0, std::string(target), 0},
                      caller, nullptr);
}

// After `node` lost a name: is any left? The last one makes it unlinked.
Status UnionFs::LostName(const std::shared_ptr<Inode>& node) {
  // A lower hardlink group keeps its union nlink in the index entry.
  if (node->is_reg() && !node->has_upper && node->lower_nlink > 1)
    STRATA_RETURN_IF_ERROR(EnsureIndexed(node));
  bool gone = true;
  if (node->is_dir()) {
    gone = true;
  } else if (node->indexed && node->is_reg()) {
    STRATA_RETURN_IF_ERROR(AdjustGroupNlink(*node, -1));
    gone = node->group_nlink.value_or(0) == 0;
  } else if (node->indexed) {
    STRATA_ASSIGN_OR_RETURN(struct stat st, UpperStat(*node));
    gone = st.st_nlink <= 1;  // only the index entry is left
  } else if (node->upper.valid()) {
    STRATA_ASSIGN_OR_RETURN(struct stat st, host::StatFd(node->upper.get()));
    gone = st.st_nlink == 0;
  }
  if (gone) {
    node->unlinked = true;
    table_->Detach(*node);
  }
  return Ok();
}

Status UnionFs::Unlink(uint64_t parent, std::string_view name) {
  if (read_only()) return Error(EROFS, "unlink");
  std::unique_lock lock(ns_mutex_);
  auto dir = table_->GetShared(parent);
  if (!dir) return Error(ESTALE, "unlink");
  ChildProbe probe;
  STRATA_ASSIGN_OR_RETURN(auto node, LookupChild(dir, name, nullptr, &probe));
  if (!node) return Error(ENOENT, "unlink", std::string(name));
  if (node->is_dir()) return Error(EISDIR, "unlink", std::string(name));
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(dir));
  STRATA_RETURN_IF_ERROR(Anchor(*node, *dir, name));
  bool wh = probe.in_lower.value_or(false);
  if (!probe.in_lower) {  // an upper entry: the lower was not asked
    STRATA_ASSIGN_OR_RETURN(wh, NeedsWhiteout(*dir, name));
  }
  STRATA_RETURN_IF_ERROR(RemoveUpperEntry(*dir, name, wh));
  return LostName(node);
}

// Keeps a nameless-to-be file reachable: an open file may still use it.
Status UnionFs::Anchor(Inode& node, const Inode& dir, std::string_view name) {
  if (node.is_dir() || !node.has_upper || node.indexed || node.upper.valid())
    return Ok();
  auto fd = host::OpenAt(dir.upper.get(), name, O_PATH | O_NOFOLLOW);
  if (fd) node.upper = std::move(*fd);
  return Ok();
}

// Gives a copied-up non-directory an index entry, the stable name of a
// hardlink group, before it gets a second name.
Status UnionFs::IndexUpper(Inode& node) {
  if (node.indexed) return Ok();
  STRATA_ASSIGN_OR_RETURN(struct stat st, UpperStat(node));
  std::string src = UpperPath(node);
  std::string key = IndexKey(node.st_ino);
  int flags = host::IsFdLink(src) ? AT_SYMLINK_FOLLOW : 0;
  if (::linkat(AT_FDCWD, src.c_str(), index_fd_.get(), key.c_str(), flags) != 0)
    return Error::FromErrno("link", "index entry " + key);
  if (node.is_reg()) {
    STRATA_RETURN_IF_ERROR(host::SetXattr(FdPath(index_fd_.get()) + "/" + key,
                                          format_.Nlink(),
                                          std::to_string(st.st_nlink)));
    node.group_nlink = static_cast<uint32_t>(st.st_nlink);
  }
  node.indexed = true;
  node.upper.Reset();
  return Ok();
}

Status UnionFs::RemoveDir(uint64_t parent, std::string_view name) {
  if (read_only()) return Error(EROFS, "rmdir");
  std::unique_lock lock(ns_mutex_);
  auto dir = table_->GetShared(parent);
  if (!dir) return Error(ESTALE, "rmdir");
  STRATA_ASSIGN_OR_RETURN(auto node, LookupChild(dir, name));
  if (!node) return Error(ENOENT, "rmdir", std::string(name));
  if (!node->is_dir()) return Error(ENOTDIR, "rmdir", std::string(name));
  STRATA_ASSIGN_OR_RETURN(bool empty, IsEmptyDir(node));
  if (!empty) return Error(ENOTEMPTY, "rmdir", std::string(name));
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(dir));
  STRATA_ASSIGN_OR_RETURN(bool wh, NeedsWhiteout(*dir, name));
  STRATA_RETURN_IF_ERROR(RemoveUpperEntry(*dir, name, wh));
  // One subdirectory less in the union.
  int64_t n = dir->dir_nlink.load();
  dir->dir_nlink.store(n > 2 ? n - 1 : -1);
  return LostName(node);
}

// Gives `node`, visible as `name` in `dir`, an entry of its own there in
// the upper directory (metadata only; a hardlink group links its index
// entry).
Status UnionFs::Materialize(const std::shared_ptr<Inode>& node,
                            const std::shared_ptr<Inode>& dir,
                            std::string_view name) {
  STRATA_ASSIGN_OR_RETURN(auto at, host::StatAt(dir->upper.get(), name));
  if (at && !IsWhiteoutDev(*at)) return Ok();
  if (node->is_reg() && (node->indexed || node->lower_nlink > 1)) {
    STRATA_RETURN_IF_ERROR(EnsureIndexed(node));
    return LinkUpperAt(*node, *dir, name);
  }
  if (node->has_upper)
    return Error(EIO, "rename", std::string(name) + ": upper entry missing");
  Renamed(node, dir, name);
  return CopyUpMeta(node);
}

Status UnionFs::LinkUpperAt(const Inode& node, const Inode& dir,
                            std::string_view name) {
  STRATA_ASSIGN_OR_RETURN(std::string tmp, TempName());
  std::string src = UpperPath(node);
  int flags = host::IsFdLink(src) ? AT_SYMLINK_FOLLOW : 0;
  if (::linkat(AT_FDCWD, src.c_str(), work_fd_.get(), tmp.c_str(), flags) != 0)
    return Error::FromErrno("link", std::string(name));
  STRATA_RETURN_IF_ERROR(PlaceFromWork(tmp, dir, name));
  DropDotWh(dir, name);
  return Ok();
}

Result<EntryOut> UnionFs::Link(uint64_t nodeid, uint64_t new_parent,
                               std::string_view new_name) {
  if (read_only()) return Error(EROFS, "link");
  STRATA_RETURN_IF_ERROR(CheckName(new_name));
  auto node = table_->GetShared(nodeid);
  if (!node) return Error(ESTALE, "link");
  if (node->is_dir()) return Error(EPERM, "link", std::string(new_name));
  // One upper inode for both names: a single-name lower file is copied up
  // in place first (outside the namespace lock).
  if (node->is_reg() && node->lower_nlink <= 1 && !node->indexed)
    STRATA_RETURN_IF_ERROR(CopyUpData(node, false));
  std::unique_lock lock(ns_mutex_);
  auto dir = table_->GetShared(new_parent);
  if (!dir) return Error(ESTALE, "link");
  STRATA_ASSIGN_OR_RETURN(auto existing, LookupChild(dir, new_name));
  if (existing) return Error(EEXIST, "link", std::string(new_name));
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(dir));
  if (!node->has_upper) {
    if (node->is_reg()) {
      STRATA_RETURN_IF_ERROR(EnsureIndexed(node));
    } else {
      STRATA_RETURN_IF_ERROR(CopyUpMeta(node));
    }
  }
  STRATA_RETURN_IF_ERROR(IndexUpper(*node));
  STRATA_RETURN_IF_ERROR(LinkUpperAt(*node, *dir, new_name));
  if (node->is_reg()) STRATA_RETURN_IF_ERROR(AdjustGroupNlink(*node, +1));
  return Reply(node);
}

Status UnionFs::Rename(uint64_t parent, std::string_view name,
                       uint64_t new_parent, std::string_view new_name,
                       unsigned flags) {
  if (read_only()) return Error(EROFS, "rename");
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0 ||
      (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
    return Error(EINVAL, "rename", "unsupported flags");
  STRATA_RETURN_IF_ERROR(CheckName(new_name));
  std::unique_lock lock(ns_mutex_);
  auto from = table_->GetShared(parent);
  auto to = table_->GetShared(new_parent);
  if (!from || !to) return Error(ESTALE, "rename");
  STRATA_ASSIGN_OR_RETURN(auto src, LookupChild(from, name));
  if (!src) return Error(ENOENT, "rename", std::string(name));
  STRATA_ASSIGN_OR_RETURN(auto dst, LookupChild(to, new_name));
  if (flags & RENAME_NOREPLACE && dst)
    return Error(EEXIST, "rename", std::string(new_name));
  if (flags & RENAME_EXCHANGE && !dst)
    return Error(ENOENT, "rename", std::string(new_name));
  if (src == dst) return Ok();  // the same file: rename(2) does nothing
  if (dst && !(flags & RENAME_EXCHANGE)) {
    if (src->is_dir() && !dst->is_dir())
      return Error(ENOTDIR, "rename", std::string(new_name));
    if (!src->is_dir() && dst->is_dir())
      return Error(EISDIR, "rename", std::string(new_name));
    if (dst->is_dir()) {
      STRATA_ASSIGN_OR_RETURN(bool empty, IsEmptyDir(dst));
      if (!empty) return Error(ENOTEMPTY, "rename", std::string(new_name));
    }
  }
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(from));
  STRATA_RETURN_IF_ERROR(EnsureUpperDir(to));
  STRATA_RETURN_IF_ERROR(Materialize(src, from, name));
  std::string n1(name), n2(new_name);
  int fd1 = from->upper.get(), fd2 = to->upper.get();
  if (flags & RENAME_EXCHANGE) {
    STRATA_RETURN_IF_ERROR(Materialize(dst, to, new_name));
    if (::renameat2(fd1, n1.c_str(), fd2, n2.c_str(), RENAME_EXCHANGE) != 0)
      return Error::FromErrno("rename", n1 + " <-> " + n2);
    if (src->is_dir()) STRATA_RETURN_IF_ERROR(MarkMovedDir(*src));
    if (dst->is_dir()) STRATA_RETURN_IF_ERROR(MarkMovedDir(*dst));
    Renamed(src, to, new_name);
    Renamed(dst, from, name);
    from->dir_nlink.store(-1);
    to->dir_nlink.store(-1);
    return Ok();
  }
  if (dst) STRATA_RETURN_IF_ERROR(Anchor(*dst, *to, new_name));
  STRATA_ASSIGN_OR_RETURN(bool wh, NeedsWhiteout(*from, name));
  STRATA_ASSIGN_OR_RETURN(auto target, host::StatAt(fd2, new_name));
  if (dst && dst->is_dir() && target && S_ISDIR(target->st_mode)) {
    // Union-empty, but it may hold whiteouts: empty it for rename(2).
    STRATA_ASSIGN_OR_RETURN(
        UniqueFd d,
        host::OpenAt(fd2, n2, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOATIME));
    STRATA_ASSIGN_OR_RETURN(auto entries, host::ReadDirAll(d.get()));
    for (const auto& e : entries)
      STRATA_RETURN_IF_ERROR(host::RemoveTreeAt(d.get(), e.name));
  }
  if (src->is_dir() && target && !S_ISDIR(target->st_mode)) {
    // A directory over a whiteout: swap them; the whiteout lands on the old
    // name, which is what that name needs when the lower has it.
    if (::renameat2(fd1, n1.c_str(), fd2, n2.c_str(), RENAME_EXCHANGE) != 0)
      return Error::FromErrno("rename", n1 + " -> " + n2);
    if (!wh && ::unlinkat(fd1, n1.c_str(), 0) != 0)
      return Error::FromErrno("unlink", "whiteout " + n1);
  } else if (wh && whiteout_devs_ &&
             ::renameat2(fd1, n1.c_str(), fd2, n2.c_str(), RENAME_WHITEOUT) ==
                 0) {
    // Moved, and the old name whited out, in one step.
  } else {
    if (::renameat(fd1, n1.c_str(), fd2, n2.c_str()) != 0)
      return Error::FromErrno("rename", n1 + " -> " + n2);
    if (wh) STRATA_RETURN_IF_ERROR(MakeWhiteoutAt(*from, name));
  }
  DropDotWh(*to, new_name);
  if (src->is_dir()) {
    STRATA_RETURN_IF_ERROR(MarkMovedDir(*src));
    from->dir_nlink.store(-1);
    to->dir_nlink.store(-1);
  }
  if (dst) STRATA_RETURN_IF_ERROR(LostName(dst));
  Renamed(src, to, new_name);
  return Ok();
}

}  // namespace strata::fs
