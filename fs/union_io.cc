// UnionFs: opening files and the state reads and writes need. Reads and
// writes themselves go straight to the fd of an OpenFile (fuse_ops.cc),
// with no union lock.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <shared_mutex>

#include "fs/host_io.h"
#include "fs/union_fs.h"

namespace strata::fs {

namespace {

// Flags for reopening an upper file through /proc/self/fd: what the caller
// asked for, minus what the kernel already handled.
int ReopenFlags(int flags) {
  return (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC;
}

}  // namespace

Result<std::unique_ptr<OpenFile>> UnionFs::Open(uint64_t nodeid, int flags) {
  auto node = table_->GetShared(nodeid);
  if (!node) return Error(ESTALE, "open");
  bool write = (flags & O_ACCMODE) != O_RDONLY;
  bool trunc = (flags & O_TRUNC) != 0;
  if ((write || trunc) && read_only()) return Error(EROFS, "open", node->name);
  if ((write || trunc) && node->is_reg())
    STRATA_RETURN_IF_ERROR(CopyUpData(node, trunc));
  auto file = std::make_unique<OpenFile>();
  file->node = node;
  file->flags = flags;
  std::shared_lock lock(ns_mutex_);
  file->generation = node->data_generation.load();
  if (node->has_upper && !node->metacopy) {
    STRATA_ASSIGN_OR_RETURN(file->fd, OpenUpper(*node, ReopenFlags(flags)));
    return file;
  }
  if (!node->lower) return Error(ENOENT, "open", node->name);
  STRATA_ASSIGN_OR_RETURN(layerdb::FileContent content,
                          lower_->OpenContent(*node->lower));
  file->lower = true;
  file->fd = std::move(content.fd);
  file->inline_data = std::move(content.inline_data);
  return file;
}

std::optional<off_t> UnionFs::DataToCopyUp(uint64_t nodeid) {
  auto node = table_->GetShared(nodeid);
  if (!node || read_only() || !node->is_reg()) return std::nullopt;
  std::optional<LowerRef> ref;
  {
    std::shared_lock lock(ns_mutex_);
    if ((node->has_upper && !node->metacopy) || !node->lower)
      return std::nullopt;
    ref = node->lower;
  }
  auto st = lower_->GetAttr(*ref);
  if (!st) return std::nullopt;
  return st->st_size;
}

Result<std::pair<EntryOut, std::unique_ptr<OpenFile>>> UnionFs::CreateFile(
    uint64_t parent, std::string_view name, mode_t mode, int flags,
    const Caller& caller) {
  UniqueFd fd;
  STRATA_ASSIGN_OR_RETURN(
      EntryOut entry,
      CreateObject(parent, name,
                   NewObject{S_IFREG | (mode & 07777), 0, "", flags}, caller,
                   &fd));
  auto file = std::make_unique<OpenFile>();
  file->node = table_->GetShared(entry.nodeid);
  file->flags = flags;
  file->fd = std::move(fd);
  file->generation = file->node->data_generation.load();
  // New: no capability, and suid or sgid only if asked (see HasPrivs).
  if ((entry.st.st_mode & (S_ISUID | S_ISGID)) == 0)
    file->node->privs_clear = true;
  return std::make_pair(entry, std::move(file));
}

Result<int> UnionFs::ReadFd(OpenFile& file) {
  std::lock_guard reopen(file.reopen_mutex);
  if (file.lower && file.node->data_generation.load() != file.generation) {
    // Copied up since this file was opened: read the upper copy from now
    // on, as kernel overlayfs does.
    std::shared_lock lock(ns_mutex_);
    Inode& node = *file.node;
    if (node.has_upper && !node.metacopy) {
      STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenUpper(node, O_RDONLY));
      // A concurrent read may still be splicing from the old fd.
      file.retired.push_back(std::move(file.fd));
      file.fd = std::move(fd);
      file.inline_data.clear();
      file.lower = false;
    }
    file.generation = node.data_generation.load();
  }
  return file.fd.valid() ? file.fd.get() : -1;
}

Status UnionFs::Fallocate(OpenFile& file, int mode, off_t offset,
                          off_t length) {
  // The kernel's own mtime moves only when the file grew (fs/fuse/file.c
  // fuse_file_fallocate), and then it sends it to us.
  int fd = file.fd.get();
  return KeepingTimes(*file.node, fd, "", [&]() -> Status {
    if (::fallocate(fd, mode, offset, length) != 0)
      return Error::FromErrno("fallocate", file.node->name);
    return Ok();
  });
}

Status UnionFs::KeepingTimes(Inode& node, int fd, const std::string& path,
                             FunctionRef<Status()> change) {
  if (!kernel_keeps_times_) return change();
  Inode::KernelTimes& kt = node.kernel_times.get();
  std::lock_guard lock(kt.mutex);
  if (!kt.mtime) {
    STRATA_ASSIGN_OR_RETURN(struct stat st,
                            fd >= 0 ? host::StatFd(fd) : UpperStat(node));
    kt.mtime = st.st_mtim;
  }
  Status s = change();
  struct timespec t[2] = {{0, UTIME_OMIT}, *kt.mtime};
  Status kept = fd >= 0 && ::futimens(fd, t) != 0
                    ? Error::FromErrno("futimens", node.name)
                    : (fd >= 0 ? Ok() : host::Utimens(path, t));
  return s ? kept : s;
}

namespace {
constexpr off_t kPrefetchMaxBytes = 8 << 20;
}  // namespace

std::optional<PrefetchData> UnionFs::PrefetchSource(uint64_t nodeid,
                                                    const OpenFile& file) {
  if (!file.lower || (file.flags & O_ACCMODE) != O_RDONLY ||
      !file.node->is_reg())
    return std::nullopt;
  // Decided on the first such open: later opens of a file that is not
  // pushed cost no attribute read here.
  if (file.node->prefetch_considered.exchange(true)) return std::nullopt;
  auto st = GetAttr(nodeid);
  if (!st || (st->st_mode & 0111) == 0 || st->st_size == 0 ||
      st->st_size > kPrefetchMaxBytes)
    return std::nullopt;
  PrefetchData d;
  d.node = file.node;
  d.generation = file.generation;
  d.size = static_cast<size_t>(st->st_size);
  if (!file.fd.valid()) {
    d.inline_data = file.inline_data;
    return d;
  }
  d.fd = UniqueFd(::fcntl(file.fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!d.fd.valid()) return std::nullopt;
  return d;
}

void UnionFs::StorePrefetch(const PrefetchData& data,
                            FunctionRef<void()> store) {
  std::lock_guard latch(data.node->data_mutex.get());
  if (data.node->data_generation.load() == data.generation) store();
}

Status UnionFs::Fsync(OpenFile& file, bool datasync) {
  if (file.lower || !file.fd.valid() || options_.volatile_upper) return Ok();
  int rc = datasync ? ::fdatasync(file.fd.get()) : ::fsync(file.fd.get());
  if (rc != 0) return Error::FromErrno("fsync", file.node->name);
  return Ok();
}

}  // namespace strata::fs
