#include "fs/fuse_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "fs/fuse_wire.h"

namespace strata::fs {

namespace {

DaemonContext& Ctx(fuse_req_t req) {
  return *static_cast<DaemonContext*>(fuse_req_userdata(req));
}
UnionFs& Fs(fuse_req_t req) {
  return *Ctx(req).fs;
}

void ReplyError(fuse_req_t req, const Error& e) {
  int code = e.code();
  if (code == EIO || code == ENOSPC || code == EMFILE)
    spdlog::warn("{}", e.ToString());
  else
    spdlog::debug("{}", e.ToString());
  fuse_reply_err(req, code > 0 ? code : EIO);
}

void ReplyStatus(fuse_req_t req, const Status& s) {
  if (!s) return ReplyError(req, s.error());
  fuse_reply_err(req, 0);
}

// Attributes as the kernel may cache them: without suid and sgid while
// passed-through writes may remove them (fs/backing_files.h).
const struct stat& Shown(fuse_req_t req, uint64_t nodeid, struct stat& st) {
  DaemonContext& ctx = Ctx(req);
  if (ctx.passthrough && S_ISREG(st.st_mode) &&
      ctx.backing->HidesPrivileges(nodeid))
    st.st_mode &= ~(S_ISUID | S_ISGID);
  return st;
}

fuse_entry_param Entry(fuse_req_t req, const EntryOut& e) {
  fuse_entry_param p{};
  p.ino = e.nodeid;
  p.attr = e.st;
  Shown(req, e.nodeid, p.attr);
  p.attr_timeout = Ctx(req).timeout;
  p.entry_timeout = Ctx(req).timeout;
  return p;
}

void ReplyEntry(fuse_req_t req, const Result<EntryOut>& r) {
  if (!r) return ReplyError(req, r.error());
  fuse_entry_param p = Entry(req, *r);
  if (fuse_reply_entry(req, &p) != 0 && r->nodeid != 0)
    Fs(req).Forget(r->nodeid, 1);  // the kernel never saw it
}

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{c->uid, c->gid, c->umask};
}

OpenFile* FileOf(fuse_file_info* fi) {
  return fi == nullptr ? nullptr : reinterpret_cast<OpenFile*>(fi->fh);
}

void Init(void* userdata, fuse_conn_info* conn) {
  auto* ctx = static_cast<DaemonContext*>(userdata);
  auto want = [&](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_SPLICE_MOVE);
  // No splice of requests (FUSE_CAP_SPLICE_READ): fuse_wire.h must see
  // each WRITE's header. It never happened anyway: libfuse splices only
  // when a pipe holds its whole buffer (max_write plus a page), and
  // pipe-max-size is 1 MiB.
  conn->want &= ~FUSE_CAP_SPLICE_READ;
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_READDIRPLUS);
  // Every listing with attributes, not only its first buffer (what
  // READDIRPLUS_AUTO does): a name we list costs a lookup here, in the
  // daemon, instead of a LOOKUP round trip from the kernel later (up to
  // kPlusEntries names per directory, see DoReadDir).
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_NO_OPENDIR_SUPPORT);
  ctx->no_opendir = (conn->want & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  // The writeback cache batches small writes in the page cache. The
  // kernel then keeps size, mtime and ctime of regular files itself and
  // takes none from our replies (fs/fuse/inode.c fuse_change_attributes,
  // fuse_get_cache_mask); it sends us its mtime (SETATTR mtime+ctime, from
  // fuse_flush_times / fuse_write_inode) when it writes back the inode, on
  // close, fsync and unmount. Our copy stays the kernel's because:
  //  - SetAttr applies the mtime it sends (host ctime stays the host's);
  //  - every data change we make (write, truncate, fallocate) puts the
  //    kernel's last mtime back on the upper (UnionFs::KeepingTimes): the
  //    host moves it on each of them, and the kernel sends its own mtime
  //    in no fixed order with the writes (its close-time SETATTR can be
  //    answered before the background WRITEs of the same pages);
  //  - O_DIRECT opens get no FOPEN_DIRECT_IO: the kernel's direct write
  //    path (generic_file_direct_write) updates its mtime, FOPEN_DIRECT_IO's
  //    (fuse_direct_write_iter) does not;
  //  - there is no copy_file_range op: the kernel copies through its page
  //    cache (ENOSYS).
  // Our fds are readable and never O_APPEND (HostFlags): the kernel
  // reads pages it writes partially and places appends (and writes back
  // pages) at offsets it chose.
  // Passthrough, where the kernel offers it and lets us register backing
  // files (fs/backing_files.h), excludes the writeback cache; it makes it
  // needless for the upper's files, where the writes go.
  ctx->passthrough = ctx->backing && wire::PassthroughOffered();
  if (ctx->passthrough)
    wire::WantPassthrough();
  else
    want(FUSE_CAP_WRITEBACK_CACHE);
  ctx->writeback = (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0;
  ctx->fs->set_kernel_keeps_times(ctx->writeback);
  if (ctx->posix_acl) want(FUSE_CAP_POSIX_ACL);
  // The umask is ours to apply: not where a default ACL decides the mode.
  want(FUSE_CAP_DONT_MASK);
  // Not FUSE_HANDLE_KILLPRIV (v1), which makes the server kill on every
  // write whoever writes; fuse_wire.h negotiates v2 instead, where the
  // kernel says when (a caller without CAP_FSETID) and keeps S_NOSEC.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->time_gran = 1;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, Fs(req).Lookup(parent, name));
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  Fs(req).Forget(ino, n);
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i)
    Fs(req).Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

// Whether the caller is in group `gid` (the kernel's in_group_p), asked
// only when a sgid file without group execute is written.
bool CallerInGroup(fuse_req_t req, gid_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return true;
  std::vector<gid_t> groups(64);
  int n =
      fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  if (n > static_cast<int>(groups.size())) {
    groups.resize(static_cast<size_t>(n));
    n = fuse_req_getgroups(req, n, groups.data());
  }
  if (n <= 0) return false;  // unknown: as a non-member, the safe side
  groups.resize(std::min(groups.size(), static_cast<size_t>(n)));
  return std::find(groups.begin(), groups.end(), gid) != groups.end();
}

// CallerInGroup for the request's caller, as UnionFs takes it.
auto InGroupOf(fuse_req_t req) {
  return [req](gid_t g) { return CallerInGroup(req, g); };
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto r = Fs(req).GetAttr(ino);
  if (!r) return ReplyError(req, r.error());
  fuse_reply_attr(req, &Shown(req, ino, *r), Ctx(req).timeout);
}

void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
             fuse_file_info* fi) {
  // Before the chmod: no reply may show privileges that a passed-through
  // write could then remove unseen (fs/backing_files.h).
  DaemonContext& ctx = Ctx(req);
  if (ctx.passthrough && (to_set & FUSE_SET_ATTR_MODE) &&
      (attr->st_mode & (S_ISUID | S_ISGID)))
    ctx.backing->PrivilegesAdded(ino);
  auto r = Fs(req).SetAttr(ino, *attr, to_set, FileOf(fi), InGroupOf(req));
  if (!r) return ReplyError(req, r.error());
  fuse_reply_attr(req, &Shown(req, ino, *r), ctx.timeout);
}

void ReadLink(fuse_req_t req, fuse_ino_t ino) {
  auto r = Fs(req).ReadLink(ino);
  if (!r) return ReplyError(req, r.error());
  fuse_reply_readlink(req, r->c_str());
}

void MakeNode(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              dev_t rdev) {
  ReplyEntry(req, Fs(req).MakeNode(parent, name, mode, rdev, CallerOf(req)));
}

void MakeDir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, Fs(req).MakeDir(parent, name, mode, CallerOf(req)));
}

void Symlink(fuse_req_t req, const char* target, fuse_ino_t parent,
             const char* name) {
  ReplyEntry(req, Fs(req).MakeSymlink(parent, name, target, CallerOf(req)));
}

void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, Fs(req).Link(ino, parent, name));
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyStatus(req, Fs(req).Unlink(parent, name));
}

void RemoveDir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyStatus(req, Fs(req).RemoveDir(parent, name));
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name,
            fuse_ino_t new_parent, const char* new_name, unsigned flags) {
  ReplyStatus(req, Fs(req).Rename(parent, name, new_parent, new_name, flags));
}

// Pushes a whole lower file into the kernel's page cache (notify_store)
// while the opener goes on: a program and its libraries are read by page
// faults, 128 KiB per READ round trip (the FUSE readahead limit), which on a
// container's new mount was most of the time from exec to main().
void Prefetch(UnionFs& fs, fuse_session* se, fuse_ino_t ino,
              const PrefetchData& data) {
  if (se == nullptr) return;
  fs.StorePrefetch(data, [&] {
    if (!data.fd.valid()) {
      fuse_bufvec buf = FUSE_BUFVEC_INIT(data.inline_data.size());
      buf.buf[0].mem = const_cast<char*>(data.inline_data.data());
      (void)fuse_lowlevel_notify_store(se, ino, 0, &buf, FUSE_BUF_NO_SPLICE);
      return;
    }
    // In pieces, through one buffer per thread that stays mapped: given the
    // fd, libfuse reads the whole file into a new allocation, and the page
    // faults of that fresh memory were a fifth of a container start's CPU
    // time. A failure only means the rest comes by READ, as without a push.
    constexpr size_t kPiece = 256 << 10;
    thread_local std::unique_ptr<char[]> piece;
    if (!piece) piece = std::make_unique_for_overwrite<char[]>(kPiece);
    for (size_t off = 0; off < data.size;) {
      ssize_t n =
          ::pread(data.fd.get(), piece.get(), std::min(kPiece, data.size - off),
                  static_cast<off_t>(off));
      if (n <= 0) return;
      fuse_bufvec buf = FUSE_BUFVEC_INIT(static_cast<size_t>(n));
      buf.buf[0].mem = piece.get();
      if (fuse_lowlevel_notify_store(se, ino, static_cast<off_t>(off), &buf,
                                     FUSE_BUF_NO_SPLICE) != 0)
        return;
      off += static_cast<size_t>(n);
    }
  });
}

// The flags of our own fd for an open. Never O_DIRECT: a WRITE's payload
// follows its header in libfuse's buffer, not aligned as direct I/O needs
// (ext4 refused it with EINVAL); the kernel's page cache of the mount is
// what the caller bypasses. With the writeback cache the kernel reads pages
// it writes partially (through any open file of the inode) and places
// appends itself: our fd must be readable and must not append.
int HostFlags(fuse_req_t req, int flags) {
  flags &= ~O_DIRECT;
  if (!Ctx(req).writeback) return flags;
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return flags & ~O_APPEND;
}

bool IsWriter(const OpenFile& file) {
  return (file.flags & O_ACCMODE) != O_RDONLY;
}

// The backing file for an open that `file` serves (wire::AnswerWithBacking
// sends it with the reply), when the session passes files through.
void ChooseBacking(fuse_req_t req, uint64_t nodeid, OpenFile& file) {
  DaemonContext& ctx = Ctx(req);
  if (!ctx.passthrough) return;
  // A lower file too where nothing is ever copied up (a read-only mount):
  // none of its readers has a copy-up to follow.
  bool upper = !file.lower && file.fd.valid();
  bool fixed = upper || (ctx.fs->read_only() && file.fd.valid());
  bool privileged = upper && ctx.fs->HasPrivs(file);
  file.backing_id = ctx.backing->Open(nodeid, fixed ? file.fd.get() : -1,
                                      IsWriter(file), privileged);
  if (file.backing_id != 0) wire::AnswerWithBacking(file.backing_id);
}

// The end of an open's use of its backing file (`ctx` is the session's).
void ReleaseBacking(DaemonContext& ctx, uint64_t nodeid, OpenFile& file) {
  if (!ctx.passthrough) return;
  if (ctx.backing->Release(nodeid, file.backing_id, IsWriter(file)))
    fuse_lowlevel_notify_inval_inode(ctx.se, nodeid, -1, 0);  // attributes
}

void SetOpenFlags(fuse_req_t req, fuse_file_info* fi, const OpenFile& file) {
  fi->fh = reinterpret_cast<uint64_t>(&file);
  // The lower tree never changes and we are the only writer of the upper:
  // the page cache stays valid across opens.
  fi->keep_cache = 1;
  // Our flush has nothing to do: writes are done when they are answered,
  // and locks are the kernel's (no FLUSH round trip on every close).
  fi->noflush = 1;
  // See Init: under the writeback cache O_DIRECT takes the kernel's own
  // direct I/O path, which keeps its mtime right.
  if ((fi->flags & O_DIRECT) && !Ctx(req).writeback) fi->direct_io = 1;
}

// A write open of a lower file copies its data up, and its passed-through
// open then makes the kernel drop the file's page cache (passthrough takes
// no FOPEN_KEEP_CACHE): for a 1 GiB file read before, half as long again as
// the copy. Dropped meanwhile instead, on another thread. Not under O_TRUNC,
// whose open holds the inode lock that the dropping would wait for.
std::jthread DropPagesDuringCopyUp(fuse_req_t req, fuse_ino_t ino, int flags) {
  DaemonContext& ctx = Ctx(req);
  if (!ctx.passthrough || (flags & O_ACCMODE) == O_RDONLY || (flags & O_TRUNC))
    return {};
  // Below 1 MiB there is at most 0.2 ms to save (150-220 ms per GiB), not
  // worth a thread.
  auto size = ctx.fs->DataToCopyUp(ino);
  if (!size || *size < (off_t{1} << 20)) return {};
  try {
    return std::jthread([se = ctx.se, ino] {
      fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);  // all of its pages
    });
  } catch (const std::system_error&) {
    return {};  // no thread to spare: the kernel drops them at the open
  }
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int flags = HostFlags(req, fi->flags);
  std::jthread dropping = DropPagesDuringCopyUp(req, ino, flags);
  auto r = Fs(req).Open(ino, flags);
  if (dropping.joinable()) dropping.join();
  // A daemon without CAP_DAC_OVERRIDE cannot read a file its owner may not
  // read: write-only then (a partial write into a page the kernel has not
  // cached then fails with EIO: it cannot read the rest of the page).
  if (!r && r.error().code() == EACCES && flags != fi->flags)
    r = Fs(req).Open(ino, fi->flags & ~(O_APPEND | O_DIRECT));
  if (!r) return ReplyError(req, r.error());
  // FUSE_OPEN_KILL_SUIDGID: an O_TRUNC open (fuse_wire.h).
  if (wire::RequestKillsPrivs()) {
    auto s = Fs(req).KillPrivs(**r, InGroupOf(req));
    if (!s) return ReplyError(req, s.error());
  }
  OpenFile* file = r->release();
  SetOpenFlags(req, fi, *file);
  ChooseBacking(req, ino, *file);
  // Taken before the reply, which frees `req`; a RELEASE may then free
  // `file` too.
  DaemonContext& ctx = Ctx(req);
  UnionFs& fs = Fs(req);
  // Not into a page cache that a passed-through file does not use.
  auto prefetch =
      file->backing_id == 0 ? fs.PrefetchSource(ino, *file) : std::nullopt;
  if (fuse_reply_open(req, fi) != 0) {
    ReleaseBacking(ctx, ino, *file);
    delete file;
    return;
  }
  fuse_session* se = ctx.se;
  if (prefetch) Prefetch(fs, se, ino, *prefetch);
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
            fuse_file_info* fi) {
  auto r = Fs(req).CreateFile(parent, name, mode, HostFlags(req, fi->flags),
                              CallerOf(req));
  if (!r) return ReplyError(req, r.error());
  OpenFile* file = r->second.release();
  SetOpenFlags(req, fi, *file);
  uint64_t nodeid = r->first.nodeid;
  ChooseBacking(req, nodeid, *file);
  DaemonContext& ctx = Ctx(req);
  fuse_entry_param p = Entry(req, r->first);
  if (fuse_reply_create(req, &p, fi) != 0) {
    ctx.fs->Forget(nodeid, 1);
    ReleaseBacking(ctx, nodeid, *file);
    delete file;
  }
}

void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t off,
          fuse_file_info* fi) {
  OpenFile& file = *FileOf(fi);
  auto fd = Fs(req).ReadFd(file);
  if (!fd) return ReplyError(req, fd.error());
  if (*fd < 0) {
    const std::string& d = file.inline_data;
    size_t start = std::min(static_cast<size_t>(off), d.size());
    size_t n = std::min(size, d.size() - start);
    // A copy: once the reply is written the kernel may release the file
    // (and free these bytes) before fuse_reply_buf returns.
    std::string chunk = d.substr(start, n);
    fuse_reply_buf(req, chunk.data(), chunk.size());
    return;
  }
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags =
      static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = *fd;
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void WriteBuf(fuse_req_t req, fuse_ino_t, fuse_bufvec* in, off_t off,
              fuse_file_info* fi) {
  OpenFile& file = *FileOf(fi);
  if (file.lower || !file.fd.valid()) return (void)fuse_reply_err(req, EBADF);
  // FUSE_WRITE_KILL_SUIDGID (fuse_wire.h): before the data, as the kernel's
  // file_remove_privs.
  if (wire::RequestKillsPrivs()) {
    auto s = Fs(req).KillPrivs(file, InGroupOf(req));
    if (!s) return ReplyError(req, s.error());
  }
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags =
      static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = file.fd.get();
  out.buf[0].pos = off;
  ssize_t n = 0;
  auto s = Fs(req).KeepingTimes(*file.node, file.fd.get(), "", [&]() -> Status {
    n = fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_NONBLOCK);
    if (n < 0) return Error(static_cast<int>(-n), "write", file.node->name);
    return Ok();
  });
  if (!s) return ReplyError(req, s.error());
  fuse_reply_write(req, static_cast<size_t>(n));
}

// Nothing to do (writes are done when answered; locks are the kernel's).
// ENOSYS, not 0: the kernel then stops sending FLUSH, which it sends on
// every close under the writeback cache even with noflush.
void Flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, ENOSYS);
}

void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  ReleaseBacking(Ctx(req), ino, *file);
  delete file;
  fuse_reply_err(req, 0);
}

void Fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  ReplyStatus(req, Fs(req).Fsync(*FileOf(fi), datasync != 0));
}

void Fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
               fuse_file_info* fi) {
  OpenFile& file = *FileOf(fi);
  if (file.lower || !file.fd.valid()) return (void)fuse_reply_err(req, EBADF);
  ReplyStatus(req, Fs(req).Fallocate(file, mode, offset, length));
}

void Lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence,
           fuse_file_info* fi) {
  OpenFile& file = *FileOf(fi);
  auto fd = Fs(req).ReadFd(file);
  if (!fd) return ReplyError(req, fd.error());
  if (*fd < 0) {  // inline bytes have no holes
    off_t size = static_cast<off_t>(file.inline_data.size());
    if (off >= size) return (void)fuse_reply_err(req, ENXIO);
    return (void)fuse_reply_lseek(req, whence == SEEK_DATA ? off : size);
  }
  off_t r = ::lseek(*fd, off, whence);
  if (r < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_lseek(req, r);
}

// No opendir (FUSE_CAP_NO_OPENDIR_SUPPORT): the kernel then keeps every
// directory's listing in its cache (FOPEN_CACHE_DIR) and sends no
// OPENDIR/RELEASEDIR, two round trips per directory a walk opens. Kernels
// without it get an open that asks for the same caching.
void OpenDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  if (Ctx(req).no_opendir) return (void)fuse_reply_err(req, ENOSYS);
  fi->fh = 0;
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

struct PendingEntry {
  std::string name;
  uint64_t ino;
  uint32_t type;
  uint64_t next;
};

constexpr uint64_t kPlusEntries = 1024;

void DoReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               bool plus) {
  // Collect first: lookups for readdirplus take the namespace lock, which
  // ReadDir holds.
  std::vector<PendingEntry> pending;
  size_t budget = 0;
  auto s = Fs(req).ReadDir(
      ino, static_cast<uint64_t>(off),
      [&](std::string_view name, uint64_t st_ino, uint32_t type,
          uint64_t next) {
        budget += (plus ? 160 : 32) + name.size();
        if (budget > size + 4096) return false;
        pending.push_back({std::string(name), st_ino, type, next});
        return true;
      });
  if (!s) return ReplyError(req, s.error());
  std::vector<char> buf(size);
  size_t used = 0;
  for (const auto& e : pending) {
    char* p = buf.data() + used;
    size_t rem = size - used;
    size_t need = 0;
    if (!plus) {
      struct stat st {};
      st.st_ino = e.ino;
      st.st_mode = e.type;
      need = fuse_add_direntry(req, p, rem, e.name.c_str(), &st,
                               static_cast<off_t>(e.next));
      if (need > rem) break;
    } else {
      fuse_entry_param ep{};
      bool counted = false;
      // Attributes for the first kPlusEntries names of a directory only: a
      // walk stats what it lists (no LOOKUP round trip later), while a
      // plain listing of a huge directory does not pay a lookup per name.
      // An entry with node id 0 carries no attributes (the kernel then
      // only lists it).
      if (e.name == "." || e.name == ".." || e.next > kPlusEntries) {
        ep.attr.st_ino = e.ino;
        ep.attr.st_mode = e.type;
      } else {
        auto r = Fs(req).Lookup(ino, e.name);
        if (!r || r->nodeid == 0) continue;  // changed meanwhile
        ep = Entry(req, *r);
        counted = true;
      }
      need = fuse_add_direntry_plus(req, p, rem, e.name.c_str(), &ep,
                                    static_cast<off_t>(e.next));
      if (need > rem) {
        if (counted) Fs(req).Forget(ep.ino, 1);
        break;
      }
    }
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             fuse_file_info*) {
  DoReadDir(req, ino, size, off, false);
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 fuse_file_info*) {
  DoReadDir(req, ino, size, off, true);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

void FsyncDir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  ReplyStatus(req, Fs(req).FsyncDir(ino));
}

void StatFs(fuse_req_t req, fuse_ino_t) {
  auto r = Fs(req).StatFs();
  if (!r) return ReplyError(req, r.error());
  fuse_reply_statfs(req, &*r);
}

void SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name,
              const char* value, size_t size, int flags) {
  ReplyStatus(
      req, Fs(req).SetXattr(ino, name, std::string_view(value, size), flags));
}

void ReplyXattrBytes(fuse_req_t req, const std::string& v, size_t size) {
  if (size == 0) return (void)fuse_reply_xattr(req, v.size());
  if (size < v.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, v.data(), v.size());
}

// security.selinux reaches a FUSE daemon only when no SELinux is active
// (the LSM answers it from the inode otherwise), so a file without that
// xattr has no label anyone could use. EOPNOTSUPP rather than ENODATA then:
// libselinux and coreutils remember it per device and stop asking, which
// spares `ls -l` one round trip per file (bench/run's ls -lR).
constexpr std::string_view kSelinuxXattr = "security.selinux";

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto r = Fs(req).GetXattr(ino, name);
  if (!r && r.error().code() == ENODATA && name == kSelinuxXattr)
    return (void)fuse_reply_err(req, EOPNOTSUPP);
  if (!r) return ReplyError(req, r.error());
  ReplyXattrBytes(req, *r, size);
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto r = Fs(req).ListXattrs(ino);
  if (!r) return ReplyError(req, r.error());
  std::string all;
  for (const auto& n : *r) {
    all += n;
    all.push_back('\0');
  }
  ReplyXattrBytes(req, all, size);
}

void RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  ReplyStatus(req, Fs(req).RemoveXattr(ino, name));
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.lookup = Lookup;
  ops.forget = Forget;
  ops.forget_multi = ForgetMulti;
  ops.getattr = GetAttr;
  ops.setattr = SetAttr;
  ops.readlink = ReadLink;
  ops.mknod = MakeNode;
  ops.mkdir = MakeDir;
  ops.symlink = Symlink;
  ops.link = Link;
  ops.unlink = Unlink;
  ops.rmdir = RemoveDir;
  ops.rename = Rename;
  ops.open = Open;
  ops.create = Create;
  ops.read = Read;
  ops.write_buf = WriteBuf;
  ops.flush = Flush;
  ops.release = Release;
  ops.fsync = Fsync;
  ops.fallocate = Fallocate;
  ops.lseek = Lseek;
  ops.opendir = OpenDir;
  ops.readdir = ReadDir;
  ops.readdirplus = ReadDirPlus;
  ops.releasedir = ReleaseDir;
  ops.fsyncdir = FsyncDir;
  ops.statfs = StatFs;
  ops.setxattr = SetXattr;
  ops.getxattr = GetXattr;
  ops.listxattr = ListXattr;
  ops.removexattr = RemoveXattr;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& UnionOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace strata::fs
