#pragma once

// UnionFs: the union of a read-only lower tree (LowerSource) and a writable
// upper directory in the kernel overlayfs format (upper_format.h), with
// copy-up, whiteouts, redirects and stable identity (design §2). It is the
// logic of the FUSE daemon; fuse_ops.cc adapts it to libfuse's low-level
// API and replies exactly once per request.
//
// Every operation returns Result/Status carrying the errno to reply with.
// Node ids are the InodeTable's; operations that return an entry count one
// kernel lookup on it (the adapter replies with it or forgets it).
//
// Thread-safety: all operations may run concurrently from libfuse's worker
// threads. Namespace state is guarded by one shared mutex (shared for
// lookups, getattr and readdir; exclusive for changes, held briefly); data
// copy-up runs under the inode's own latch with the namespace lock held
// only to publish the result; reads and writes take no union lock.

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "fs/host_io.h"
#include "fs/inode_table.h"
#include "fs/lower_source.h"
#include "fs/upper_format.h"
#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"

namespace strata::fs {

struct UnionOptions {
  std::string upper_dir;        // empty: read-only mount
  std::string work_dir;         // required with upper_dir; same filesystem
  bool volatile_upper = false;  // skip fsync; leave a crash marker
  XattrNs xattr_ns = XattrNs::kUser;
};

// Who asks (the FUSE request context), for ownership of new objects.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t umask = 0;  // applied unless the parent has a default ACL
};

// What an upper entry is, from its stat and xattrs.
struct UpperInfo {
  uint64_t ino = 0;                 // identity
  std::optional<LowerEntry> lower;  // merged lower dir, or metacopy data
  std::string lower_path;
  bool opaque = false;
  bool xattr_whiteouts = false;
  bool metacopy = false;
  bool indexed = false;
  std::optional<uint32_t> group_nlink;
  std::optional<OverrideStat> override;
};

struct EntryOut {
  uint64_t nodeid = 0;  // 0: negative entry
  struct stat st {};
};

// An open file: the fd reads and writes go to, or inline lower bytes.
struct OpenFile {
  std::shared_ptr<Inode> node;
  UniqueFd fd;
  std::string inline_data;
  bool lower = false;       // fd/inline_data are the lower content
  uint32_t generation = 0;  // node->data_generation when opened
  int flags = 0;
  std::mutex reopen_mutex;  // guards fd, lower, generation after open
  std::vector<UniqueFd> retired;
  int backing_id = 0;  // the session's passthrough (fs/backing_files.h)
};

// A lower file's content to push into the kernel's page cache on open (see
// UnionFs::PrefetchSource): its own fd, or its inline bytes.
struct PrefetchData {
  std::shared_ptr<Inode> node;
  uint32_t generation = 0;  // node->data_generation when taken
  UniqueFd fd;
  size_t size = 0;
  std::string inline_data;
};

class UnionFs {
 public:
  static Result<std::unique_ptr<UnionFs>> Create(
      std::unique_ptr<LowerSource> lower, UnionOptions options);
  ~UnionFs();

  bool read_only() const { return !upper_root_.valid(); }

  // Called with a node id whose cached attributes a copy-up changed (a
  // directory's size and nlink come from its new upper part): the session
  // tells the kernel to drop them (fuse_lowlevel_notify_inval_inode).
  void set_attr_invalidator(std::function<void(uint64_t nodeid)> fn) {
    invalidate_attrs_ = std::move(fn);
  }

  Result<EntryOut> Lookup(uint64_t parent, std::string_view name);
  void Forget(uint64_t nodeid, uint64_t n) { table_->Forget(nodeid, n); }
  Result<struct stat> GetAttr(uint64_t nodeid);
  // FUSE_SET_ATTR_KILL_SUID in `to_set` asks for KillPrivs' work (a
  // truncate by a caller without CAP_FSETID); `caller_in_group` is asked
  // only then.
  Result<struct stat> SetAttr(uint64_t nodeid, const struct stat& attr,
                              int to_set, OpenFile* file,
                              FunctionRef<bool(gid_t)> caller_in_group);
  Result<std::string> ReadLink(uint64_t nodeid);

  Result<EntryOut> MakeNode(uint64_t parent, std::string_view name, mode_t mode,
                            dev_t rdev, const Caller& caller);
  Result<EntryOut> MakeDir(uint64_t parent, std::string_view name, mode_t mode,
                           const Caller& caller);
  Result<EntryOut> MakeSymlink(uint64_t parent, std::string_view name,
                               std::string_view target, const Caller& caller);
  Result<EntryOut> Link(uint64_t nodeid, uint64_t new_parent,
                        std::string_view new_name);
  Status Unlink(uint64_t parent, std::string_view name);
  Status RemoveDir(uint64_t parent, std::string_view name);
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags);

  Result<std::unique_ptr<OpenFile>> Open(uint64_t nodeid, int flags);
  Result<std::pair<EntryOut, std::unique_ptr<OpenFile>>> CreateFile(
      uint64_t parent, std::string_view name, mode_t mode, int flags,
      const Caller& caller);
  // The fd to read from (reopened on the upper after a copy-up), or -1 with
  // `inline_data` to serve.
  Result<int> ReadFd(OpenFile& file);
  // For the first read-only open of an executable lower file up to
  // kPrefetchMaxBytes: what to push into the page cache. Programs and
  // shared libraries are executable and read nearly whole by the loader;
  // other files keep the kernel's on-demand readahead.
  std::optional<PrefetchData> PrefetchSource(uint64_t nodeid,
                                             const OpenFile& file);
  // Runs `store` (the push of `data` into the kernel's page cache) unless
  // the file's data moved to the upper since `data` was taken. It holds the
  // copy-up latch meanwhile: a copy-up, and so any write, which needs one,
  // cannot overlap the push and have its pages overwritten with the lower
  // content. (A copy-up of this file waits for the push; the READs the push
  // may wait for take no latch.)
  void StorePrefetch(const PrefetchData& data, FunctionRef<void()> store);
  Status Fsync(OpenFile& file, bool datasync);
  // fallocate(2) on the upper fd. REQUIRES: !file.lower.
  Status Fallocate(OpenFile& file, int mode, off_t offset, off_t length);
  // Runs `change`, which changes the data of the upper object (`fd`, or
  // `path` when fd < 0), and then, when the kernel keeps the times
  // (writeback cache), puts the kernel's mtime back on it: the host sets
  // its own on every write and truncate, and the kernel never reads it
  // (see fuse_ops.cc Init). Serialised per inode with SetAttr's times.
  Status KeepingTimes(Inode& node, int fd, const std::string& path,
                      FunctionRef<Status()> change);

  // The kernel keeps mtime, ctime and size of regular files (writeback
  // cache) and sends the times it wants: see fuse_ops.cc Init. Call before
  // any request.
  void set_kernel_keeps_times(bool on) { kernel_keeps_times_ = on; }
  // Drops suid, sgid (where group-executable, or where the caller is not
  // in the file's group) and security.capability of an open upper file:
  // what the kernel asks (FUSE_HANDLE_KILLPRIV_V2, fuse_wire.h) for a
  // write, truncate or O_TRUNC open by a caller without CAP_FSETID. Free
  // once the inode is known to have none of them.
  Status KillPrivs(OpenFile& file, FunctionRef<bool(gid_t)> caller_in_group);
  // The size of the data an open of `nodeid` for writing would copy up
  // (nullopt: none, the data is the upper's already or it is no file).
  std::optional<off_t> DataToCopyUp(uint64_t nodeid);
  // Whether an open upper file has suid, sgid or security.capability (true
  // when that cannot be told). Free once the inode is known to have none.
  bool HasPrivs(OpenFile& file);

  // Fills from `offset`: `fn(name, st_ino, type, next_offset)` until it
  // returns false. Offsets 1 and 2 are "." and "..". There is no opendir:
  // the kernel caches listings (FOPEN_CACHE_DIR) and asks only when a
  // directory changed, so a merged directory's snapshot is made when a
  // reader starts at offset 0 and kept in its inode.
  Status ReadDir(
      uint64_t nodeid, uint64_t offset,
      FunctionRef<bool(std::string_view, uint64_t, uint32_t, uint64_t)> fn);
  Status FsyncDir(uint64_t nodeid);

  Result<struct statvfs> StatFs();

  Result<std::string> GetXattr(uint64_t nodeid, std::string_view name);
  Result<std::vector<std::string>> ListXattrs(uint64_t nodeid);
  Status SetXattr(uint64_t nodeid, std::string_view name,
                  std::string_view value, int flags);
  Status RemoveXattr(uint64_t nodeid, std::string_view name);

 private:
  UnionFs(std::unique_ptr<LowerSource> lower, UnionOptions options);
  Status Init();
  void ProbeUpper();
  Status CheckFormat(int work_fd, const std::string& work);

  // --- lookup and identity (union_lookup.cc); REQUIRES ns_mutex_ held.
  // What LookupChild saw on its way, for callers about to change the name
  // (so that they do not stat the upper or probe the lower tree again).
  struct ChildProbe {
    bool upper_entry = false;      // the upper directory has an entry there
                                   // (a whiteout, when the name is hidden)
    std::optional<bool> in_lower;  // the lower tree has it (when asked)
  };
  // With `lower_st`: set to the lower record's attributes when the child
  // comes from the lower tree only (so a lookup reads the record once).
  Result<std::shared_ptr<Inode>> LookupChild(
      const std::shared_ptr<Inode>& dir, std::string_view name,
      std::optional<struct stat>* lower_st = nullptr,
      ChildProbe* probe = nullptr);
  // With `live`: a non-directory whose identity has a usable live Inode
  // sets it and returns only `ino` (the rest would be discarded).
  Result<UpperInfo> ResolveUpper(const Inode& dir, std::string_view name,
                                 const struct stat& st,
                                 std::shared_ptr<Inode>* live = nullptr);
  Result<std::shared_ptr<Inode>> FromUpper(const std::shared_ptr<Inode>& dir,
                                           std::string_view name,
                                           const struct stat& st);
  // The Inode of an object this mount just made in the upper directory at
  // `name` (`st` its lstat, `dirfd` its O_PATH fd when a directory): it has
  // no xattrs of the upper format but the opaque mark, so none are read.
  Result<std::shared_ptr<Inode>> FromNewUpper(const std::shared_ptr<Inode>& dir,
                                              std::string_view name,
                                              const struct stat& st,
                                              UniqueFd dirfd, bool opaque);
  Result<std::shared_ptr<Inode>> FromLower(const std::shared_ptr<Inode>& dir,
                                           std::string_view name,
                                           const LowerEntry& le);
  Result<std::optional<LowerEntry>> LowerChild(const Inode& dir,
                                               std::string_view name);
  Result<std::optional<LowerEntry>> LowerByPath(std::string_view path);
  Result<bool> IsUpperWhiteout(const Inode& dir, std::string_view name,
                               const struct stat& st);
  Result<EntryOut> Reply(const std::shared_ptr<Inode>& node);
  Result<struct stat> StatOf(Inode& node);
  // Mode and group of a directory as the union shows them (for new
  // entries: setgid, group), without StatOf's merged nlink.
  Result<struct stat> OwnerOf(const Inode& dir) const;
  // Whether the upper part of `dir` has a default ACL (cached in the Inode;
  // REQUIRES the exclusive lock).
  Result<bool> HasDefaultAcl(Inode& dir);

  // --- upper plumbing (union_upper.cc)
  Status EnsureUpperDir(const std::shared_ptr<Inode>& dir);  // takes ns lock
  Status CopyUpMeta(const std::shared_ptr<Inode>& node);     // REQUIRES excl
  Status CopyUpData(const std::shared_ptr<Inode>& node, bool truncate);
  Status EnsureIndexed(const std::shared_ptr<Inode>& node);  // REQUIRES excl
  Result<std::string> TempName();
  Status PlaceCopyUp(const std::string& tmp, const Inode& dir,
                     std::string_view name);
  Status PlaceFromWork(const std::string& tmp, const Inode& dir,
                       std::string_view name);
  Status MakeWhiteoutAt(const Inode& dir, std::string_view name);
  Status RemoveUpperEntry(const Inode& dir, std::string_view name,
                          bool whiteout);
  Result<bool> NeedsWhiteout(const Inode& dir, std::string_view name);
  Status CopyAttrsTo(
      const std::string& path, const struct stat& st,
      const std::vector<std::pair<std::string, std::string>>& xattrs,
      bool is_symlink);
  Status SyncFile(int fd);
  Status SyncCopy(int fd, host::CopyKind kind);
  Result<std::vector<MergedEntry>> MergedListing(Inode& dir);
  Result<bool> IsEmptyDir(const std::shared_ptr<Inode>& dir);
  // Sets the owner (or records it where chown is refused) and, with
  // `set_mode`, the mode (chown may have dropped suid/sgid).
  // `recorded` (optional) is set when the owner went to override_stat.
  Status ApplyOwner(const std::string& path, uid_t uid, gid_t gid, mode_t mode,
                    dev_t rdev, bool is_symlink, bool set_mode = true,
                    bool* recorded = nullptr);
  Status AdjustGroupNlink(Inode& node, int delta);
  Status SetOwner(Inode& node, const std::string& path, uid_t uid, gid_t gid);
  bool CanOwn(uid_t uid, gid_t gid) const;
  Status MakeSpecial(int dirfd, const std::string& name, mode_t mode,
                     dev_t rdev, uid_t uid, gid_t gid);
  Status SetMode(Inode& node, const std::string& path, mode_t mode);
  // utimensat of `path`, noting the mtime the kernel keeps (KeepingTimes).
  Status SetTimes(Inode& node, const std::string& path,
                  const struct timespec times[2]);
  // KillPrivs on the upper object at `path` (fd < 0) or `fd`.
  // REQUIRES: ns_mutex_ held exclusively.
  Status KillPrivsLocked(Inode& node, const std::string& path, int fd,
                         FunctionRef<bool(gid_t)> caller_in_group);
  void Renamed(const std::shared_ptr<Inode>& node,
               const std::shared_ptr<Inode>& new_parent,
               std::string_view new_name);
  Status MarkMovedDir(Inode& dir);
  struct NewObject {
    mode_t mode;  // type and permission bits
    dev_t rdev;
    std::string target;  // symlinks
    int open_flags;      // regular files
  };
  Result<EntryOut> CreateObject(uint64_t parent, std::string_view name,
                                const NewObject& what, const Caller& caller,
                                UniqueFd* fd_out);
  Result<EntryOut> ReplyCreated(const std::shared_ptr<Inode>& dir,
                                std::string_view name, mode_t type,
                                const UniqueFd* fd, bool plain, bool opaque);
  Status LostName(const std::shared_ptr<Inode>& node);
  Status Anchor(Inode& node, const Inode& dir, std::string_view name);
  Status IndexUpper(Inode& node);
  Status Materialize(const std::shared_ptr<Inode>& node,
                     const std::shared_ptr<Inode>& dir, std::string_view name);
  Status LinkUpperAt(const Inode& node, const Inode& dir,
                     std::string_view name);

  // Paths usable with path-based syscalls on the upper filesystem.
  static std::string FdPath(int fd);
  // Where a copied-up object is in the upper filesystem (REQUIRES
  // has_upper), as a path for path calls, its lstat, and an open fd.
  std::string UpperPath(const Inode& node) const;
  Result<struct stat> UpperStat(const Inode& node) const;
  Result<UniqueFd> OpenUpper(const Inode& node, int flags) const;
  static std::string IndexKey(uint64_t st_ino);
  std::string ChildPath(const Inode& dir, std::string_view name) const;

  std::unique_ptr<LowerSource> lower_;
  UnionOptions options_;
  bool kernel_keeps_times_ = false;
  UpperFormat format_;
  UniqueFd upper_root_;        // O_PATH; invalid when read-only
  UniqueFd work_fd_;           // <work>/strata-tmp
  UniqueFd index_fd_;          // <work>/strata-index
  UniqueFd lock_fd_;           // flock on <work>/strata.lock
  UniqueFd upper_lock_fd_;     // flock on the upper directory itself
  bool whiteout_devs_ = true;  // false: mknod refused; write .wh.NAME
  bool can_chown_ = true;      // false: record ownership in override_stat
  uid_t daemon_uid_ = 0;
  gid_t daemon_gid_ = 0;
  std::unique_ptr<InodeTable> table_;
  // Guards every Inode's namespace fields. Lock order: Inode::data_mutex,
  // then ns_mutex_.
  std::shared_mutex ns_mutex_;
  std::atomic<uint64_t> temp_counter_{0};
  std::function<void(uint64_t)> invalidate_attrs_;
  void AttrsChanged(const Inode& node);
};

}  // namespace strata::fs
