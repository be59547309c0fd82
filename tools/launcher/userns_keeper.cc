#include "tools/launcher/userns_keeper.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include <spdlog/spdlog.h>

#include "layerdb/base/number.h"
#include "layerdb/base/sys.h"
#include "tools/launcher/pidfd.h"

namespace strata::launcher {

namespace {

constexpr int kControlFd = 3;  // the keeper's end of the control socket
constexpr char kKeep = 'K';

// What the keeper reports once it has tried to unshare.
struct KeeperReport {
  int err = 0;
  pid_t pid = -1;
};

// $STRATA_USERNS_KEEP: seconds a keeper may idle; 0 is off.
unsigned IdleSeconds() {
  const char* text = ::getenv("STRATA_USERNS_KEEP");
  if (text == nullptr) return 600;
  auto v = ParseNumber<unsigned>(text);
  if (!v) {
    spdlog::warn("STRATA_USERNS_KEEP={}: not a number of seconds; using 600",
                 text);
    return 600;
  }
  return *v;
}

// `dir`, made if missing, when it is a directory of this user that no one
// else may enter (not a link someone else planted).
bool IsPrivateDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return false;
  struct stat st {};
  return ::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
         st.st_uid == ::getuid() && (st.st_mode & 077) == 0;
}

// Not exited: a zombie's /proc/PID/ns/user still opens (the namespace is
// in its creds), so the pidfd is asked, not /proc.
bool StillRunning(int pidfd) {
  return !HasExited(pidfd);
}

std::optional<pid_t> RecordedPid(const std::string& pid_file) {
  auto text = sys::ReadFile(pid_file);
  if (!text || !text->ends_with('\n')) return std::nullopt;  // as Keep wrote
  return ParseNumber<pid_t>(
      std::string_view(*text).substr(0, text->size() - 1));
}

// The new keeper, between the double fork and the exec: a session of its
// own, no terminal or caller's pipe held (a caller reading our stdout to
// EOF must not wait for it), default signals, the control socket as fd 3.
[[noreturn]] void ExecKeeper(const KeeperPlace& place, int control) {
  ::setsid();
  int null = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd)
    if (null >= 0) ::dup2(null, fd);
  if (control == kControlFd)
    ::fcntl(control, F_SETFD, 0);
  else
    ::dup2(control, kControlFd);
  ::close_range(kControlFd + 1, ~0U, 0);
  if (::chdir("/") != 0) _exit(127);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT})
    ::signal(sig, SIG_DFL);
  std::string idle = std::to_string(place.idle_seconds);
  // No environment: a process that lives on need not hold the caller's.
  char* const argv[] = {const_cast<char*>(kKeeperName),
                        const_cast<char*>(place.pid_file.c_str()),
                        const_cast<char*>(idle.c_str()), nullptr};
  char* const envp[] = {nullptr};
  ::execve("/proc/self/exe", argv, envp);
  _exit(127);
}

// The keeper after its maps: lives while the pid file names it and was
// used (its mtime) within the idle time. Looks at least once a minute, so
// that one whose record another keeper took ends soon.
int KeepWhileUsed(const std::string& pid_file, unsigned idle) {
  for (;;) {
    if (RecordedPid(pid_file) != ::getpid()) return 0;
    struct stat st {};
    if (::stat(pid_file.c_str(), &st) != 0) return 0;
    time_t now = ::time(nullptr);
    time_t idle_for = now > st.st_mtime ? now - st.st_mtime : 0;
    if (idle_for >= static_cast<time_t>(idle)) {
      if (RecordedPid(pid_file) == ::getpid()) ::unlink(pid_file.c_str());
      return 0;
    }
    ::sleep(static_cast<unsigned>(std::min<time_t>(idle - idle_for, 60)));
  }
}

}  // namespace

std::optional<KeeperPlace> FindKeeperPlace() {
  unsigned idle = IdleSeconds();
  if (idle == 0) return std::nullopt;
  // Named for the user even under $XDG_RUNTIME_DIR: `su` and `setpriv`
  // leave the caller's in the environment.
  std::string name = "/strata-" + std::to_string(::getuid());
  std::string dir;
  if (const char* xdg = ::getenv("XDG_RUNTIME_DIR"); xdg && xdg[0] == '/')
    dir = xdg + name;
  if (dir.empty() || !IsPrivateDir(dir)) dir = "/tmp" + name;
  if (!IsPrivateDir(dir)) {
    spdlog::debug("userns keeper: {} is not a private directory; not kept",
                  dir);
    return std::nullopt;
  }
  return KeeperPlace{dir + "/userns.pid", idle};
}

std::optional<UniqueFd> JoinKeeper(const KeeperPlace& place,
                                   const IdMapPlan& plan) {
  auto pid = RecordedPid(place.pid_file);
  if (!pid || *pid <= 0) return std::nullopt;
  // The pidfd pins the process: if it is still running after the checks,
  // the namespace opened through /proc/PID is the keeper's, not that of a
  // process that got its pid since.
  UniqueFd pidfd = OpenPidfd(*pid);
  if (!pidfd.valid()) return std::nullopt;
  std::string proc = "/proc/" + std::to_string(*pid);
  auto comm = sys::ReadFile(proc + "/comm");
  if (!comm || *comm != std::string(kKeeperName) + "\n") return std::nullopt;
  UniqueFd ns(::open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid() || !StillRunning(pidfd.get())) return std::nullopt;
  if (!HasPlannedMaps(*pid, plan)) {
    spdlog::debug(
        "userns keeper {}: its id maps are not /etc/sub[ug]id's; "
        "replacing it",
        *pid);
    SignalPidfd(pidfd.get(), SIGTERM);
    return std::nullopt;
  }
  if (!StillRunning(pidfd.get())) return std::nullopt;
  ::utimensat(AT_FDCWD, place.pid_file.c_str(), nullptr, 0);  // used now
  return ns;
}

Result<NewKeeper> StartKeeper(const KeeperPlace& place) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return Error::FromErrno("socketpair", "userns keeper");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  // Forked twice so that it is no child of ours: it outlives this command
  // and is reaped by init (or the caller's subreaper).
  pid_t middle = ::fork();
  if (middle < 0) return Error::FromErrno("fork", "userns keeper");
  if (middle == 0) {
    pid_t keeper = ::fork();
    if (keeper == 0) ExecKeeper(place, theirs.get());
    _exit(keeper < 0 ? 1 : 0);
  }
  theirs.Reset();
  while (::waitpid(middle, nullptr, 0) < 0 && errno == EINTR) {
  }
  KeeperReport r;
  r.err = EIO;
  if (::read(ours.get(), &r, sizeof r) != sizeof r)
    return Error(EIO, "userns keeper", "it did not start");
  if (r.err != 0) return Error(r.err, "unshare", "user namespace");
  NewKeeper k;
  k.pid = r.pid;
  std::string path = "/proc/" + std::to_string(r.pid) + "/ns/user";
  k.ns.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!k.ns.valid()) return Error::FromErrno("open", path);
  k.control = std::move(ours);
  return k;
}

Status Keep(NewKeeper& keeper, const KeeperPlace& place) {
  STRATA_RETURN_IF_ERROR(sys::WriteFileAtomic(place.pid_file,
                                              std::to_string(keeper.pid) + "\n",
                                              sys::Durability::kVisible));
  if (::write(keeper.control.get(), &kKeep, 1) != 1)
    return Error::FromErrno("write", "userns keeper");
  keeper.control.Reset();
  return Ok();
}

int RunKeeper(int argc, char** argv) {
  if (argc != 3) return 2;
  auto idle = ParseNumber<unsigned>(argv[2]);
  if (!idle) return 2;
  ::prctl(PR_SET_NAME, kKeeperName);  // exec'd as /proc/self/exe: "exe"
  KeeperReport r{0, ::getpid()};
  if (::unshare(CLONE_NEWUSER) != 0) r.err = errno;
  if (::write(kControlFd, &r, sizeof r) != sizeof r || r.err != 0) return 1;
  char c = 0;
  if (::read(kControlFd, &c, 1) != 1 || c != kKeep) return 0;  // not kept
  ::close(kControlFd);
  return KeepWhileUsed(argv[1], *idle);
}

}  // namespace strata::launcher
