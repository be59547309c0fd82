#include "fs/session.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "fs/fuse_ops.h"
#include "fs/fuse_wire.h"

namespace strata::fs {

namespace {

// Each cached inode holds an O_PATH fd of its upper object: allow many.
void RaiseFdLimit() {
  struct rlimit r {};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

// glibc grows (mprotect) and trims (madvise) each thread's heap by
// M_TOP_PAD, 128 KiB by default: the worker that builds a large directory's
// listing then frees it paid for fresh pages again on every such listing.
// 8 MiB cut strata-overlay's first listing of a 10,000-entry directory by
// 1.5-1.9 ms (8%), with the same resident memory after a walk of the tree.
void TuneMalloc() {
  ::mallopt(M_TOP_PAD, 8 << 20);
}

std::string JoinOptions(const MountConfig& c, bool* posix_acl) {
  std::vector<std::string> opts = {"fsname=" + c.fsname, "subtype=" + c.subtype,
                                   "default_permissions"};
  *posix_acl = true;
  if (::geteuid() == 0) {
    // As fuse-overlayfs does: other users (container processes) may use it.
    opts.insert(opts.end(), {"allow_other", "suid", "dev"});
  }
  if (c.read_only) opts.push_back("ro");
  for (const auto& o : c.fuse_options)
    opts.push_back(o);
  return fmt::format("{}", fmt::join(opts, ","));
}

// Reports the daemon's readiness to a waiting parent: "" = mounted, else
// the error line.
void Report(int fd, const std::string& msg) {
  if (fd < 0) return;
  std::string m = msg.empty() ? "ok" : msg;
  (void)!::write(fd, m.data(), m.size());
  ::close(fd);
}

// A FUSE session for `ctx.fs`, mounted at c.mountpoint.
Result<fuse_session*> MountSession(const MountConfig& c, DaemonContext& ctx,
                                   bool signal_handlers) {
  std::string opts = JoinOptions(c, &ctx.posix_acl);
  std::vector<std::string> argv_s = {"strata", "-o", opts};
  if (c.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_session* se =
      fuse_session_new(&args, &UnionOps(), sizeof(fuse_lowlevel_ops), &ctx);
  if (se == nullptr)
    return Error(EINVAL, "mount", c.mountpoint + ": bad FUSE options: " + opts);
  ctx.se = se;
  ctx.fs->set_attr_invalidator([se](uint64_t nodeid) {
    fuse_lowlevel_notify_inval_inode(se, nodeid, -1, 0);  // attributes only
  });
  if ((signal_handlers && fuse_set_signal_handlers(se) != 0) ||
      fuse_session_mount(se, c.mountpoint.c_str()) != 0) {
    fuse_session_destroy(se);
    return Error(EIO, "mount",
                 c.mountpoint +
                     ": FUSE mount failed (is /dev/fuse usable and the "
                     "mountpoint an existing directory?)");
  }
  // Our reads and writes of /dev/fuse, for FUSE_HANDLE_KILLPRIV_V2
  // (fuse_wire.h). Same fd: libfuse still unmounts and closes it.
  static const fuse_custom_io kWireIo = {wire::Writev, wire::Read, nullptr,
                                         wire::SpliceSend};
  if (int rc = fuse_session_custom_io(se, &kWireIo, fuse_session_fd(se));
      rc != 0) {
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return Error(-rc, "fuse_session_custom_io", c.mountpoint);
  }
  // FUSE passthrough where the kernel and our privileges allow it
  // (fs/backing_files.h), unless $STRATA_PASSTHROUGH=0.
  const char* env = ::getenv("STRATA_PASSTHROUGH");
  bool off = env != nullptr && std::string_view(env) == "0";
  if (!off && BackingFiles::Permitted())
    ctx.backing = std::make_unique<BackingFiles>(fuse_session_fd(se));
  return se;
}

int ServeLoop(fuse_session* se, unsigned max_threads) {
  fuse_loop_config* loop = fuse_loop_cfg_create();
  unsigned threads = max_threads;
  if (threads == 0)
    threads = std::max(4u, 2 * std::thread::hardware_concurrency());
  fuse_loop_cfg_set_max_threads(loop, threads);
  fuse_loop_cfg_set_clone_fd(loop, 1);
  int rc = fuse_session_loop_mt(se, loop);
  fuse_loop_cfg_destroy(loop);
  return rc;
}

int Serve(MountConfig c, const ConfiguringFsFactory& make_fs, int ready_fd) {
  ::umask(0);
  RaiseFdLimit();
  TuneMalloc();
  auto fs = make_fs(c);
  if (!fs) {
    std::string msg = fs.error().ToString();
    if (ready_fd < 0)
      std::fprintf(stderr, "%s: %s\n", c.program.c_str(), msg.c_str());
    Report(ready_fd, msg);
    return 1;
  }
  DaemonContext ctx;
  ctx.fs = fs->get();
  ctx.timeout = c.timeout;
  auto se = MountSession(c, ctx, true);
  if (!se) {
    Report(ready_fd, se.error().ToString());
    return 1;
  }
  if (ready_fd >= 0) {
    // Detach from the caller's terminal only once the mount is up.
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      if (!c.debug) ::dup2(null, 2);
      if (null > 2) ::close(null);
    }
  }
  Report(ready_fd, "");
  int rc = ServeLoop(*se, c.max_threads);
  fuse_session_unmount(*se);
  fuse_remove_signal_handlers(*se);
  fuse_session_destroy(*se);
  fs->reset();
  return rc == 0 ? 0 : 1;
}

// libfuse's own messages: one line of ours says what failed.
void FuseLog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  std::string_view line(buf);
  while (!line.empty() && line.back() == '\n')
    line.remove_suffix(1);
  if (level <= FUSE_LOG_ERR)
    spdlog::debug("libfuse: {}", line);
  else
    spdlog::trace("libfuse: {}", line);
}

Status CheckMountpoint(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return Error::FromErrno("mount", "mountpoint " + path);
  if (!S_ISDIR(st.st_mode))
    return Error(ENOTDIR, "mount",
                 "mountpoint " + path + " is not a directory");
  return Ok();
}

}  // namespace

int RunMount(const MountConfig& c, const FsFactory& make_fs) {
  return RunMount(c, [&make_fs](MountConfig&) { return make_fs(); });
}

int RunMount(const MountConfig& c, const ConfiguringFsFactory& make_fs) {
  fuse_set_log_func(FuseLog);
  if (auto s = CheckMountpoint(c.mountpoint); !s) {
    std::fprintf(stderr, "%s: %s\n", c.program.c_str(),
                 s.error().ToString().c_str());
    return 1;
  }
  if (c.foreground) return Serve(c, make_fs, -1);
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    std::perror("strata: pipe");
    return 1;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("strata: fork");
    return 1;
  }
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    if (::chdir("/") != 0) _exit(1);
    _exit(Serve(c, make_fs, pipefd[1]));
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0)
    msg.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  if (msg == "ok") return 0;
  if (msg.empty())
    msg = "mount " + c.mountpoint + ": the daemon died while starting";
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::fprintf(stderr, "%s: %s\n", c.program.c_str(), msg.c_str());
  return 1;
}

struct BackgroundMount::State {
  std::unique_ptr<UnionFs> fs;
  DaemonContext ctx;
  fuse_session* se = nullptr;
  std::thread loop;
  unsigned max_threads = 0;
};

Result<std::unique_ptr<BackgroundMount>> BackgroundMount::Mount(
    const MountConfig& c, std::unique_ptr<UnionFs> fs) {
  auto m = std::unique_ptr<BackgroundMount>(new BackgroundMount());
  m->state_ = std::make_unique<State>();
  State& st = *m->state_;
  st.fs = std::move(fs);
  st.ctx.fs = st.fs.get();
  st.ctx.timeout = c.timeout;
  st.max_threads = c.max_threads;
  TuneMalloc();
  fuse_set_log_func(FuseLog);
  STRATA_ASSIGN_OR_RETURN(st.se, MountSession(c, st.ctx, false));
  return m;
}

void BackgroundMount::AnswerInit() {
  State& st = *state_;
  struct fuse_buf buf {};
  if (fuse_session_receive_buf(st.se, &buf) > 0)
    fuse_session_process_buf(st.se, &buf);
  std::free(buf.mem);  // INIT is read into memory, never spliced
}

void BackgroundMount::Start() {
  State& st = *state_;
  st.loop = std::thread([&st] { ServeLoop(st.se, st.max_threads); });
}

BackgroundMount::~BackgroundMount() {
  if (!state_ || state_->se == nullptr) return;
  State& st = *state_;
  // Unmounting ends the loop (its reads of /dev/fuse fail with ENODEV).
  fuse_session_exit(st.se);
  fuse_session_unmount(st.se);
  if (st.loop.joinable()) st.loop.join();
  fuse_session_destroy(st.se);
  st.fs.reset();
}

Status Unmount(const std::string& mountpoint, bool lazy) {
  if (::geteuid() == 0) {
    if (::umount2(mountpoint.c_str(), lazy ? MNT_DETACH : 0) != 0)
      return Error::FromErrno("umount", mountpoint);
    return Ok();
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    if (lazy)
      ::execlp("fusermount3", "fusermount3", "-u", "-z", "--",
               mountpoint.c_str(), nullptr);
    else
      ::execlp("fusermount3", "fusermount3", "-u", "--", mountpoint.c_str(),
               nullptr);
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) < 0)
    return Error::FromErrno("fusermount3");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error(EIO, "umount", mountpoint + ": fusermount3 -u failed");
  return Ok();
}

}  // namespace strata::fs
