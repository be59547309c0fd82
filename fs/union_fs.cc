// UnionFs: construction, the work directory, and path helpers.

#include "fs/union_fs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "fs/host_io.h"
#include "layerdb/base/sys.h"

namespace strata::fs {

namespace {

// Where kernel overlayfs looks for the volatile marker; strata uses the same
// path so that neither mounts an upper a crashed volatile mount left behind.
constexpr const char* kVolatileMarker = "work/incompat/volatile";

}  // namespace

UnionFs::UnionFs(std::unique_ptr<LowerSource> lower, UnionOptions options)
    : lower_(std::move(lower)),
      options_(std::move(options)),
      format_(options_.xattr_ns) {}

UnionFs::~UnionFs() {
  if (!read_only() && options_.volatile_upper) {
    // A clean unmount: flush, then drop the marker. (syncfs needs a real
    // fd, not the O_PATH one.)
    auto fd = host::OpenAt(upper_root_.get(), ".", O_RDONLY | O_DIRECTORY);
    if (fd && sys::SyncFs(fd->get()))
      ::unlink((options_.work_dir + "/" + kVolatileMarker).c_str());
  }
}

namespace {

// An exclusive lock, waiting up to a second for it: umount(8) returns before
// the daemon of the previous mount has exited and released its locks, and a
// script that mounts the same upper again right away must not fail for that.
bool LockSoon(int fd) {
  for (int i = 0; i < 200; ++i) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK) return false;
    ::usleep(5000);
  }
  errno = EWOULDBLOCK;
  return false;
}

}  // namespace

Result<std::unique_ptr<UnionFs>> UnionFs::Create(
    std::unique_ptr<LowerSource> lower, UnionOptions options) {
  std::unique_ptr<UnionFs> fs(
      new UnionFs(std::move(lower), std::move(options)));
  STRATA_RETURN_IF_ERROR(fs->Init());
  return fs;
}

Status UnionFs::Init() {
  daemon_uid_ = ::geteuid();
  daemon_gid_ = ::getegid();
  auto root = std::make_shared<Inode>(lower_->Root().st.st_ino, S_IFDIR);
  root->lower = lower_->Root().ref;
  if (options_.upper_dir.empty()) {
    table_ = std::make_unique<InodeTable>(std::move(root));
    return Ok();
  }
  const std::string& up = options_.upper_dir;
  const std::string& work = options_.work_dir;
  if (work.empty())
    return Error(EINVAL, "mount", "upper " + up + " needs a work directory");
  auto upper = host::OpenAt(AT_FDCWD, up, O_PATH | O_DIRECTORY);
  if (!upper) return upper.error().WithContext("upper directory");
  STRATA_RETURN_IF_ERROR(sys::MakeDirs(work, 0700));
  STRATA_ASSIGN_OR_RETURN(UniqueFd work_root,
                          host::OpenAt(AT_FDCWD, work, O_PATH | O_DIRECTORY));
  STRATA_ASSIGN_OR_RETURN(struct stat ust, host::StatFd(upper->get()));
  STRATA_ASSIGN_OR_RETURN(struct stat wst, host::StatFd(work_root.get()));
  if (ust.st_dev != wst.st_dev)
    return Error(EXDEV, "mount",
                 "upper " + up + " and work " + work +
                     " must be on the same filesystem");
  // One daemon per upper: a second one would race on copy-ups.
  STRATA_ASSIGN_OR_RETURN(lock_fd_, host::OpenAt(work_root.get(), "strata.lock",
                                                 O_RDWR | O_CREAT, 0600));
  if (!LockSoon(lock_fd_.get()))
    return Error(errno == EWOULDBLOCK ? EBUSY : errno, "mount",
                 "work directory " + work + " is in use by another mount");
  // ... and one mount per upper, whatever its work directory (kernel
  // overlayfs refuses this too).
  STRATA_ASSIGN_OR_RETURN(upper_lock_fd_,
                          host::OpenAt(AT_FDCWD, up, O_RDONLY | O_DIRECTORY));
  if (!LockSoon(upper_lock_fd_.get()))
    return Error(errno == EWOULDBLOCK ? EBUSY : errno, "mount",
                 "upper directory " + up + " is in use by another mount");
  std::string marker = work + "/" + kVolatileMarker;
  if (::access(marker.c_str(), F_OK) == 0)
    return Error(EINVAL, "mount",
                 "upper " + up +
                     " was left by a volatile mount that did not end "
                     "cleanly and may be incomplete; remove " +
                     marker + " to use it anyway");
  if (options_.volatile_upper) {
    STRATA_RETURN_IF_ERROR(sys::MakeDirs(work + "/work/incompat", 0700));
    STRATA_RETURN_IF_ERROR(sys::WriteFileAtomic(marker, ""));
  }
  STRATA_RETURN_IF_ERROR(CheckFormat(work_root.get(), work));
  // Leftovers of copy-ups a killed daemon did not finish: never visible in
  // the union, so removing them restores the old state.
  STRATA_RETURN_IF_ERROR(host::RemoveTreeAt(work_root.get(), "strata-tmp"));
  if (::mkdirat(work_root.get(), "strata-tmp", 0700) != 0)
    return Error::FromErrno("mkdir", work + "/strata-tmp");
  if (::mkdirat(work_root.get(), "strata-index", 0700) != 0 && errno != EEXIST)
    return Error::FromErrno("mkdir", work + "/strata-index");
  STRATA_ASSIGN_OR_RETURN(work_fd_, host::OpenAt(work_root.get(), "strata-tmp",
                                                 O_PATH | O_DIRECTORY));
  STRATA_ASSIGN_OR_RETURN(
      index_fd_,
      host::OpenAt(work_root.get(), "strata-index", O_PATH | O_DIRECTORY));
  upper_root_ = std::move(*upper);
  ProbeUpper();
  STRATA_ASSIGN_OR_RETURN(
      root->upper, host::OpenAt(upper_root_.get(), ".", O_PATH | O_DIRECTORY));
  root->has_upper = true;
  STRATA_ASSIGN_OR_RETURN(
      auto opq, host::GetXattr(FdPath(root->upper.get()), format_.Opaque()));
  root->opaque = opq && *opq == "y";
  if (root->opaque) root->lower.reset();
  table_ = std::make_unique<InodeTable>(std::move(root));
  return Ok();
}

// The upper format version (docs/format.md): a newer one is refused.
Status UnionFs::CheckFormat(int work_fd, const std::string& work) {
  std::string path = FdPath(work_fd) + "/strata-format";
  auto text = sys::ReadFile(path);
  if (!text) {
    if (text.error().code() != ENOENT) return text.error();
    // Written again at the next mount if a crash loses it.
    return sys::WriteFileAtomic(work + "/strata-format",
                                std::to_string(kUpperFormatVersion) + "\n",
                                sys::Durability::kVisible);
  }
  while (!text->empty() &&
         std::isspace(static_cast<unsigned char>(text->back())))
    text->pop_back();
  int version = std::atoi(text->c_str());
  if (version > kUpperFormatVersion || version <= 0)
    return Error(EINVAL, "mount",
                 "work directory " + work + " has upper format " + *text +
                     " but this strata supports " +
                     std::to_string(kUpperFormatVersion) + "; upgrade strata");
  return Ok();
}

// What the upper filesystem lets this daemon do: 0/0 whiteout devices
// (refused to unprivileged users before Linux 5.8 and on some filesystems),
// trusted.* xattrs (root in the initial user namespace only), chown.
void UnionFs::ProbeUpper() {
  int wfd = work_fd_.get();
  if (::mknodat(wfd, "probe-wh", S_IFCHR | 0600, makedev(0, 0)) == 0) {
    ::unlinkat(wfd, "probe-wh", 0);
  } else {
    whiteout_devs_ = false;
    spdlog::info("upper: whiteout devices refused ({}); writing .wh. files",
                 std::strerror(errno));
  }
  int fd = ::openat(wfd, "probe-x", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) {
    if (options_.xattr_ns == XattrNs::kTrusted &&
        ::fsetxattr(fd, "trusted.overlay.probe", "", 0, 0) != 0) {
      options_.xattr_ns = XattrNs::kUser;
      format_ = UpperFormat(XattrNs::kUser);
    }
    can_chown_ = ::fchown(fd, daemon_uid_ + 1, daemon_gid_ + 1) == 0;
    ::close(fd);
    ::unlinkat(wfd, "probe-x", 0);
  }
}

std::string UnionFs::FdPath(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

std::string UnionFs::ChildPath(const Inode& dir, std::string_view name) const {
  return FdPath(dir.upper.get()) + "/" + std::string(name);
}

std::string UnionFs::IndexKey(uint64_t st_ino) {
  char buf[17];
  auto r = std::to_chars(buf, buf + 16, st_ino, 16);
  return std::string(buf, r.ptr);
}

std::string UnionFs::UpperPath(const Inode& node) const {
  if (node.indexed)
    return FdPath(index_fd_.get()) + "/" + IndexKey(node.st_ino);
  // Directories and anchored files: the fd's magic link, which path calls
  // in host_io.h follow.
  if (node.upper.valid() && !S_ISLNK(node.type))
    return FdPath(node.upper.get());
  if (node.parent && node.parent->upper.valid())
    return ChildPath(*node.parent, node.name);
  return FdPath(node.upper.get());
}

Result<struct stat> UnionFs::UpperStat(const Inode& node) const {
  if (node.upper.valid() && !node.indexed)
    return host::StatFd(node.upper.get());
  if (node.indexed) {
    STRATA_ASSIGN_OR_RETURN(
        auto st, host::StatAt(index_fd_.get(), IndexKey(node.st_ino)));
    if (st) return *st;
  } else if (node.parent && node.parent->upper.valid()) {
    STRATA_ASSIGN_OR_RETURN(auto st,
                            host::StatAt(node.parent->upper.get(), node.name));
    if (st) return *st;
  }
  return Error(ESTALE, "stat", "upper of " + node.name + " is gone");
}

Result<UniqueFd> UnionFs::OpenUpper(const Inode& node, int flags) const {
  std::string path = UpperPath(node);
  if (!host::IsFdLink(path)) flags |= O_NOFOLLOW;
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Error::FromErrno("open", node.name);
  return UniqueFd(fd);
}

Result<std::string> UnionFs::TempName() {
  return "cu-" + std::to_string(::getpid()) + "-" +
         std::to_string(temp_counter_.fetch_add(1));
}

Status UnionFs::SyncFile(int fd) {
  if (options_.volatile_upper) return Ok();
  if (::fsync(fd) != 0) return Error::FromErrno("fsync", "copy-up");
  return Ok();
}

Result<struct statvfs> UnionFs::StatFs() {
  if (read_only()) return lower_->StatFs();
  struct statvfs sv {};
  if (::fstatvfs(upper_root_.get(), &sv) != 0)
    return Error::FromErrno("statvfs", options_.upper_dir);
  return sv;
}

}  // namespace strata::fs
