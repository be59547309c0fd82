#include "tools/launcher/launcher.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fs/session.h"
#include "fs/stored_lower.h"
#include "fs/union_fs.h"
#include "layerdb/base/sys.h"
#include "layerdb/base/unique_fd.h"
#include "tools/launcher/cgroup_limits.h"
#include "tools/launcher/container_user.h"
#include "tools/launcher/containers.h"
#include "tools/launcher/rootfs_setup.h"
#include "tools/launcher/terminal.h"

namespace strata::launcher {

namespace {

constexpr int kSetupFailed = 125;  // docker's status for "could not start"

// Signals passed on from each stage to the next, down to the command.
constexpr int kForwarded[] = {SIGINT,  SIGTERM, SIGHUP,   SIGQUIT,
                              SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
volatile sig_atomic_t g_forward_to = 0;

sigset_t ForwardedSet() {
  sigset_t set;
  ::sigemptyset(&set);
  for (int sig : kForwarded)
    ::sigaddset(&set, sig);
  return set;
}

void Forward(int sig) {
  if (g_forward_to > 0) ::kill(g_forward_to, sig);
}

void ForwardSignalsTo(pid_t pid) {
  g_forward_to = pid;
  struct sigaction sa {};
  sa.sa_handler = Forward;
  sa.sa_flags = SA_RESTART;
  ::sigemptyset(&sa.sa_mask);
  for (int sig : kForwarded)
    ::sigaction(sig, &sa, nullptr);
}

// The signals `pid` catches, blocks or ignores (SigCgt, SigBlk, SigIgn of
// /proc/PID/status; none when unreadable).
uint64_t HandledSignals(pid_t pid) {
  auto status = sys::ReadFile("/proc/" + std::to_string(pid) + "/status");
  if (!status) return 0;
  uint64_t mask = 0;
  for (std::string_view field : {"SigCgt:", "SigBlk:", "SigIgn:"}) {
    size_t at = status->find(field);
    if (at != std::string::npos)
      mask |= std::strtoull(status->c_str() + at + field.size(), nullptr, 16);
  }
  return mask;
}

bool TerminatesByDefault(int sig) {
  return sig != SIGWINCH && sig != SIGCONT;
}

// The kernel drops signals to a PID namespace's init that it has no handler
// for, so a command that is PID 1 (docker's default) would ignore SIGTERM it
// never asked to ignore. Do what the default action would do: when the
// command neither catches, blocks nor ignores the signal, kill it, and report
// the signal as its cause of death (returned; 0 when the signal was passed
// on). The check comes before the kill, not after: a signal sent while the
// command had no handler yet is dropped, and a handler installed before a
// later check would hide that it was lost.
int DeliverToInit(pid_t init, int sig) {
  uint64_t handled = HandledSignals(init);
  if (TerminatesByDefault(sig) && (handled & (uint64_t{1} << (sig - 1))) == 0) {
    ::kill(init, SIGKILL);
    return sig;
  }
  ::kill(init, sig);
  return 0;
}

int StatusOf(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return kSetupFailed;
}

// Waits for `pid`, reaping any other child on the way (PID 1's duty).
int WaitFor(pid_t pid) {
  while (true) {
    int ws = 0;
    pid_t got = ::waitpid(-1, &ws, 0);
    if (got == pid) return StatusOf(ws);
    if (got < 0 && errno == ECHILD) return kSetupFailed;
  }
}

// The signals stage A waits for once the container runs: the forwarded
// ones and SIGCHLD. Blocked, so that they stay pending until it looks: none
// is lost between two looks, and the FUSE threads started afterwards
// inherit the mask and never take one.
sigset_t InitWatchSet() {
  sigset_t set = ForwardedSet();
  ::sigaddset(&set, SIGCHLD);
  return set;
}

// Stage A's wait for the container's PID 1, passing signals on to it
// (DeliverToInit). `watched` (InitWatchSet) is blocked.
int WaitForInit(pid_t init, const sigset_t& watched) {
  int killed_by = 0;
  while (true) {
    int ws = 0;
    pid_t got = ::waitpid(init, &ws, WNOHANG);
    if (got == init) {
      bool emulated =
          killed_by != 0 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL;
      return emulated ? 128 + killed_by : StatusOf(ws);
    }
    if (got < 0 && errno != EINTR) return kSetupFailed;
    int sig = ::sigwaitinfo(&watched, nullptr);
    if (sig <= 0 || sig == SIGCHLD) continue;
    if (int k = DeliverToInit(init, sig); k != 0 && killed_by == 0)
      killed_by = k;
  }
}

// A stage reports a failed setup step on the error pipe, then exits.
[[noreturn]] void Fail(int err_fd, const Error& e) {
  std::string line = e.ToString();
  (void)!::write(err_fd, line.data(), line.size());
  _exit(kSetupFailed);
}

void DieWithParent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) _exit(kSetupFailed);
}

// The usual default container capability set (docker/podman).
bool IsDefaultCap(int cap) {
  switch (cap) {
    case CAP_CHOWN:
    case CAP_DAC_OVERRIDE:
    case CAP_FSETID:
    case CAP_FOWNER:
    case CAP_MKNOD:
    case CAP_NET_RAW:
    case CAP_SETGID:
    case CAP_SETUID:
    case CAP_SETFCAP:
    case CAP_SETPCAP:
    case CAP_NET_BIND_SERVICE:
    case CAP_SYS_CHROOT:
    case CAP_KILL:
    case CAP_AUDIT_WRITE:
      return true;
    default:
      return false;
  }
}

Result<std::string> ReadIfThere(const std::string& path) {
  auto t = sys::ReadFile(path);
  if (!t && t.error().code() == ENOENT) return std::string();
  return t;
}

// The command: its own session (with the container's terminal, if any),
// the container user, no new privileges, bounded capabilities, nothing open
// but stdio, then exec.
[[noreturn]] void ExecCommand(const LaunchSpec& spec, const ContainerUser& u,
                              bool can_setgroups, int tty, int err_fd) {
  ::setsid();
  if (tty >= 0) {
    if (auto s = AttachTerminal(tty); !s) Fail(err_fd, s.error());
  }
  if (can_setgroups && ::setgroups(u.groups.size(), u.groups.data()) != 0)
    Fail(err_fd, Error::FromErrno("setgroups", "user " + spec.user));
  if (::setresgid(u.gid, u.gid, u.gid) != 0)
    Fail(err_fd, Error::FromErrno("setgid",
                                  "user " + spec.user +
                                      " (is its group mapped? a single-id user "
                                      "namespace has only root)"));
  if (::setresuid(u.uid, u.uid, u.uid) != 0)
    Fail(err_fd,
         Error::FromErrno("setuid", "user " + spec.user +
                                        " (is it mapped? a single-id user "
                                        "namespace has only root)"));
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
    if (!IsDefaultCap(cap)) ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::clearenv();
  bool has_home = false;
  for (const auto& kv : spec.env) {
    has_home = has_home || kv.starts_with("HOME=");
    ::putenv(const_cast<char*>(kv.c_str()));
  }
  if (!has_home) ::setenv("HOME", u.home.c_str(), 1);
  if (::chdir(spec.cwd.c_str()) != 0)
    Fail(err_fd, Error::FromErrno("chdir", "working directory " + spec.cwd));
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);  // the error pipe closes on exec
  std::vector<char*> argv;
  for (const auto& a : spec.argv)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  int err = errno;
  std::string line = Error(err, "exec", spec.argv[0]).ToString();
  (void)!::write(err_fd, line.data(), line.size());
  _exit(err == ENOENT ? 127 : 126);
}

// PID 1 of the container: the command itself (docker's default), or with
// --init a tiny init that reaps orphans and forwards signals to it.
[[noreturn]] void StageB(const LaunchSpec& spec, pid_t stage_a, bool full_map,
                         bool rootless, int err_fd) {
  // Stage A is outside this PID namespace (getppid() is 0 here): only the
  // death signal applies.
  (void)stage_a;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // --memory/--pids: this process and all it starts, not the FUSE daemon.
  if (auto s = JoinCgroups(spec.cgroup_procs); !s) Fail(err_fd, s.error());
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    Fail(err_fd, Error::FromErrno("mount", "make / a slave"));
  if (spec.net_none) {
    if (auto s = BringUpLoopback(); !s) Fail(err_fd, s.error());
  }
  if (::sethostname(spec.hostname.data(), spec.hostname.size()) != 0)
    Fail(err_fd, Error::FromErrno("sethostname", spec.hostname));
  if (auto s = SetUpRootfs(SharedRootfs(spec.store_root), spec, full_map); !s)
    Fail(err_fd, s.error());
  auto passwd = ReadIfThere("/etc/passwd");
  auto group = ReadIfThere("/etc/group");
  auto user =
      ResolveUser(spec.user, passwd ? *passwd : "", group ? *group : "");
  if (!user) Fail(err_fd, user.error());
  bool can_setgroups = full_map || !rootless;
  // The terminal comes from the container's devpts (after pivot_root); its
  // master goes to `strata run`, which copies it to and from the caller's.
  std::optional<PtyPair> pty;
  if (spec.tty_socket >= 0) {
    auto p = OpenPty(STDIN_FILENO);
    if (!p) Fail(err_fd, p.error());
    if (auto s = SendFd(spec.tty_socket, p->master.get()); !s)
      Fail(err_fd, s.error());
    p->master.Reset();
    ::close(spec.tty_socket);
    pty = std::move(*p);
  }
  int tty = pty ? pty->slave.get() : -1;
  if (!spec.init) ExecCommand(spec, *user, can_setgroups, tty, err_fd);
  pid_t cmd = ::fork();
  if (cmd < 0) Fail(err_fd, Error::FromErrno("fork", "command"));
  if (cmd == 0) ExecCommand(spec, *user, can_setgroups, tty, err_fd);
  pty.reset();
  ForwardSignalsTo(cmd);
  _exit(WaitFor(cmd));
}

// Stage A's own mount namespace and the image's lower tree: neither needs
// the id maps, so this runs while the parent writes them.
Result<std::unique_ptr<fs::LowerSource>> PrepareImage(const LaunchSpec& spec) {
  if (::unshare(CLONE_NEWNS) != 0)
    return Error::FromErrno("unshare", "mount namespace");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return Error::FromErrno("mount", "make / private");
  STRATA_ASSIGN_OR_RETURN(auto lower, fs::StoredLowerSource::OpenPinned(
                                          spec.store_root, spec.view));
  return std::unique_ptr<fs::LowerSource>(std::move(lower));
}

// The union, once the ids are mapped: it probes what the mapped user may do
// in the upper (chown, trusted xattrs) and mounts as that user.
Result<std::unique_ptr<fs::BackgroundMount>> MountImage(
    const LaunchSpec& spec, std::unique_ptr<fs::LowerSource> lower) {
  fs::UnionOptions uo;
  uo.upper_dir = spec.container_dir + "/upper";
  uo.work_dir = spec.container_dir + "/work";
  uo.xattr_ns = fs::XattrNs::kTrusted;  // downgraded to user. where refused
  STRATA_ASSIGN_OR_RETURN(auto ufs, fs::UnionFs::Create(std::move(lower), uo));
  fs::MountConfig mc;
  mc.mountpoint = SharedRootfs(spec.store_root);
  mc.fsname = "strata:" + spec.image;
  mc.subtype = "strata";
  // The command runs with no_new_privs, so suid bits and file capabilities
  // never apply in the container; on a nosuid mount exec does not even read
  // security.capability (a GETXATTR round trip per exec).
  mc.fuse_options = {"nosuid"};
  return fs::BackgroundMount::Mount(mc, std::move(ufs));
}

// The FUSE daemon, in the container's user and mount namespaces.
[[noreturn]] void StageA(const LaunchSpec& spec,
                         const MappedUserNamespace& user_ns, pid_t parent,
                         int maps_done, int err_fd, int status_fd) {
  DieWithParent(parent);
  bool rootless = user_ns.exists();
  bool full_map = false;
  if (auto s = user_ns.Enter(); !s) Fail(err_fd, s.error());
  auto lower = PrepareImage(spec);  // while the helpers may still map ids
  if (rootless) {
    char c = 0;
    if (::read(maps_done, &c, 1) != 1 || c == 'E')
      _exit(kSetupFailed);  // the parent reports why
    full_map = c == 'F';
  }
  if (!lower) Fail(err_fd, lower.error());
  auto mount = MountImage(spec, std::move(*lower));
  if (!mount) Fail(err_fd, mount.error());
  (*mount)->AnswerInit();  // the container's first lookup need not wait
  // clone(2) with the namespace flags, not unshare + fork: a process that
  // unshared its PID namespace may not start threads (the FUSE loop's).
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
              (spec.net_none ? CLONE_NEWNET : 0);
  struct InitArgs {
    const LaunchSpec* spec;
    pid_t stage_a;
    bool full_map, rootless;
    int err_fd;
  } args{&spec, ::getpid(), full_map, rootless, err_fd};
  constexpr size_t kStack = 1 << 20;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) Fail(err_fd, Error::FromErrno("mmap", "init stack"));
  // Single-threaded still: the FUSE loop starts after.
  pid_t init = ::clone(
      [](void* p) -> int {
        auto* a = static_cast<InitArgs*>(p);
        StageB(*a->spec, a->stage_a, a->full_map, a->rootless, a->err_fd);
      },
      static_cast<char*>(stack) + kStack, flags | SIGCHLD, &args);
  if (init < 0)
    Fail(err_fd, Error::FromErrno("clone", "mount/PID/UTS/IPC namespaces"));
  // Held so that the container's mount namespace outlives its PID 1: the
  // unmounting of /proc, /dev, /sys and the rest (an RCU grace period, about
  // 1 ms) then happens as this process exits, after the status is reported,
  // not in PID 1's exit before it. None if PID 1 has already ended.
  UniqueFd container_mounts(
      ::open(("/proc/" + std::to_string(init) + "/ns/mnt").c_str(),
             O_RDONLY | O_CLOEXEC));
  // Until here a signal ends stage A by its default action, which
  // `strata run` reports as the container's status.
  const sigset_t watched = InitWatchSet();
  ::sigprocmask(SIG_BLOCK, &watched, nullptr);
  (*mount)->Start();
  int status = WaitForInit(init, watched);
  // Every process of the container is gone and its writes are done (FUSE
  // writes are synchronous). Exiting closes /dev/fuse, which aborts the
  // connection, and ends this mount namespace with the mount in it: no
  // unmount, thread joins or LMDB teardown needed (1-2 ms of every run).
  // Only the view's pin is ours to remove. The status goes to `strata run`
  // first, so that its cleanup overlaps this process's teardown in the
  // kernel (0.5 ms or so).
  ::unlink((spec.store_root + "/pins/" + std::to_string(::getpid())).c_str());
  ::close(err_fd);
  (void)!::write(status_fd, &status, sizeof status);
  _exit(status);
}

}  // namespace

namespace {

// What a container needs from the host, checked up front so that the error
// is one line saying what to fix rather than a failing step deep inside.
Status CheckHost() {
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Error(
        err, "run",
        err == EACCES
            ? "/dev/fuse is not usable by this user (as root: chmod 0666 "
              "/dev/fuse, the mode most distributions use)"
            : "/dev/fuse: cannot open it (is the fuse module loaded?)");
  }
  ::close(fd);
  return Ok();
}

}  // namespace

ForwardedSignalsHold::ForwardedSignalsHold() {
  const sigset_t forwarded = ForwardedSet();
  ::sigprocmask(SIG_BLOCK, &forwarded, &caller_mask_);
}

ForwardedSignalsHold::~ForwardedSignalsHold() {
  ::sigprocmask(SIG_SETMASK, &caller_mask_, nullptr);
}

Result<int> Launch(const LaunchSpec& spec_in, MappedUserNamespace& user_ns,
                   const std::function<void()>& when_ended) {
  STRATA_RETURN_IF_ERROR(CheckHost());
  LaunchSpec spec = spec_in;
  int err_pipe[2], maps_done[2], status_pipe[2], tty_sock[2] = {-1, -1};
  if (::pipe2(err_pipe, O_CLOEXEC) != 0 || ::pipe2(maps_done, O_CLOEXEC) != 0 ||
      ::pipe2(status_pipe, O_CLOEXEC) != 0)
    return Error::FromErrno("pipe", "launcher");
  if (spec.tty) {
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, tty_sock) != 0)
      return Error::FromErrno("socketpair", "terminal");
    spec.tty_socket = tty_sock[1];
  }
  pid_t parent = ::getpid();
  // Signals wait until this process forwards them: one arriving between the
  // fork and the handlers would otherwise end `strata run` without its
  // cleanup (--rm, state). Unblocked (not restored) afterwards: the caller
  // may hold them already (ForwardedSignalsHold).
  ForwardedSignalsHold hold;
  const sigset_t forwarded = ForwardedSet();
  pid_t a = ::fork();
  if (a < 0) return Error::FromErrno("fork", "launcher");
  if (a == 0) {
    ::sigprocmask(SIG_UNBLOCK, &forwarded, nullptr);
    ::close(err_pipe[0]);
    if (tty_sock[0] >= 0) ::close(tty_sock[0]);
    ::close(maps_done[1]);
    ::close(status_pipe[0]);
    StageA(spec, user_ns, parent, maps_done[0], err_pipe[1], status_pipe[1]);
  }
  ForwardSignalsTo(a);
  ::sigprocmask(SIG_UNBLOCK, &forwarded, nullptr);
  // A stage that died early closes its pipes: the writes below then fail
  // with EPIPE, which must not kill `strata run` before its cleanup.
  ::signal(SIGPIPE, SIG_IGN);
  if (tty_sock[1] >= 0) ::close(tty_sock[1]);
  ::close(err_pipe[1]);
  ::close(maps_done[0]);
  ::close(status_pipe[1]);
  (void)RecordState(spec.container_dir, a, std::nullopt);
  std::optional<Error> setup_error;
  if (user_ns.exists()) {
    auto full = user_ns.WaitForMaps();
    if (!full) setup_error = full.error();
    char c = !full ? 'E' : (*full ? 'F' : 'S');
    (void)!::write(maps_done[1], &c, 1);
  }
  ::close(maps_done[1]);
  if (tty_sock[0] >= 0) {
    // Until the container's side closes; nothing comes when setup failed.
    UniqueFd sock(tty_sock[0]);
    if (auto master = ReceiveFd(sock.get()); master && *master)
      ProxyTerminal((*master)->get());
  }
  // The status as stage A reports it once the container has ended, or, when
  // it died without (a failed setup step), as waitpid gives it.
  UniqueFd status_r(status_pipe[0]);
  int status = -1;
  ssize_t got;
  while ((got = ::read(status_r.get(), &status, sizeof status)) < 0 &&
         errno == EINTR) {
  }
  bool died_early = got != static_cast<ssize_t>(sizeof status);
  auto reap = [a] {
    int ws = 0;
    while (::waitpid(a, &ws, 0) < 0 && errno == EINTR) {
    }
    return StatusOf(ws);
  };
  if (died_early) status = reap();
  g_forward_to = 0;
  std::string msg;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(err_pipe[0], buf, sizeof buf)) > 0)
    msg.append(buf, static_cast<size_t>(n));
  ::close(err_pipe[0]);
  if (!spec.remove_when_ended) (void)RecordState(spec.container_dir, 0, status);
  if (when_ended) when_ended();
  // Its mounts and FUSE connection go as it exits. After --rm nothing
  // waits for that: the container's directory is gone and nothing of it is
  // a mount point (SharedRootfs); otherwise state.json must not show the
  // container ended while its daemon still holds the upper.
  if (!died_early && !spec.remove_when_ended) reap();
  if (setup_error) return *setup_error;
  if (!msg.empty()) {
    // One line, and the status: 126/127 for exec failures (as a shell
    // gives), 125 for a setup step.
    std::fprintf(stderr, "strata: %s\n", msg.c_str());
    return status == 126 || status == 127 ? status : kSetupFailed;
  }
  return status;
}

}  // namespace strata::launcher
