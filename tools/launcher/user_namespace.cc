#include "tools/launcher/user_namespace.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"
#include "layerdb/base/unique_fd.h"
#include "tools/launcher/id_map.h"
#include "tools/launcher/userns_keeper.h"

namespace strata::launcher {

struct MappedUserNamespace::State {
  UniqueFd ns;  // /proc/<holder>/ns/user: keeps it once the holder is gone
  IdMapPlan plan;
  // Who holds the namespace until its maps are written: a keeper just
  // started (userns_keeper.h), else a child of ours.
  std::optional<NewKeeper> keeper;
  std::optional<KeeperPlace> place;
  pid_t holder = -1;
  PendingIdMaps pending;
  std::optional<Result<bool>> maps;

  // Also when a moved-to MappedUserNamespace drops its old state.
  ~State() { Release(); }

  // Joins this user's kept namespace, or starts a keeper whose maps are
  // then written; false when keeping is off or the keeper did not start.
  bool UseKeeper() {
    place = FindKeeperPlace();
    if (!place) return false;
    if (auto kept = JoinKeeper(*place, plan)) {
      ns = std::move(*kept);
      maps = plan.full();
      return true;
    }
    auto k = StartKeeper(*place);
    if (!k) {
      spdlog::debug("userns keeper: {}", k.error().ToString());
      return false;
    }
    ns = std::move(k->ns);
    pending = StartIdMaps(k->pid, plan);
    keeper = std::move(*k);
    return true;
  }

  // Once the maps are written: a new keeper is recorded when they are the
  // planned ones (else dropped: it ends); a holder child is killed and
  // reaped. A signal, not EOF on a pipe: the children forked meanwhile
  // share the pipe's fds.
  void Release() {
    if (pending.target > 0 && !maps) maps = FinishIdMaps(pending);
    if (keeper && maps && *maps && **maps == plan.full()) {
      if (auto kept = Keep(*keeper, *place); !kept)
        spdlog::debug("userns keeper: {}", kept.error().ToString());
    }
    keeper.reset();
    if (holder > 0) {
      ::kill(holder, SIGKILL);
      while (::waitpid(holder, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    holder = -1;
  }
};

namespace {

// Why an unshare(CLONE_NEWUSER) failed, with the setting to change.
Error UnshareError(int err) {
  auto clone_ok = sys::ReadFile("/proc/sys/kernel/unprivileged_userns_clone");
  if (clone_ok && clone_ok->starts_with("0"))
    return Error(err, "run",
                 "unprivileged user namespaces are disabled (as root: sysctl "
                 "kernel.unprivileged_userns_clone=1)");
  auto max = sys::ReadFile("/proc/sys/user/max_user_namespaces");
  if (max && max->starts_with("0"))
    return Error(err, "run",
                 "user namespaces are disabled (as root: sysctl "
                 "user.max_user_namespaces=15000)");
  return Error(err, "unshare",
               "user namespace (are unprivileged user namespaces enabled?)");
}

// The holder: unshares, says so (its errno, 0 for done) and waits to be
// killed.
[[noreturn]] void Hold(pid_t parent, int report) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) _exit(1);
  int err = ::unshare(CLONE_NEWUSER) == 0 ? 0 : errno;
  (void)!::write(report, &err, sizeof err);
  if (err != 0) _exit(1);
  for (;;)
    ::pause();
}

}  // namespace

Result<MappedUserNamespace> MappedUserNamespace::Create() {
  auto st = std::make_unique<State>();
  if (::geteuid() == 0) return MappedUserNamespace(std::move(st));
  st->plan = PlanIdMaps();
  if (st->UseKeeper()) return MappedUserNamespace(std::move(st));
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0)
    return Error::FromErrno("pipe", "userns");
  UniqueFd report_r(report[0]), report_w(report[1]);
  pid_t parent = ::getpid();
  st->holder = ::fork();
  if (st->holder < 0) return Error::FromErrno("fork", "user namespace");
  if (st->holder == 0) Hold(parent, report_w.get());
  report_w.Reset();
  MappedUserNamespace ns(std::move(st));
  State& s = *ns.state_;
  int err = EIO;
  if (::read(report_r.get(), &err, sizeof err) != sizeof err) err = EIO;
  if (err != 0) return UnshareError(err);
  std::string path = "/proc/" + std::to_string(s.holder) + "/ns/user";
  s.ns.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!s.ns.valid()) return Error::FromErrno("open", path);
  s.pending = StartIdMaps(s.holder, s.plan);
  return ns;
}

MappedUserNamespace::MappedUserNamespace(std::unique_ptr<State> s)
    : state_(std::move(s)) {}
MappedUserNamespace::MappedUserNamespace(MappedUserNamespace&&) noexcept =
    default;
MappedUserNamespace& MappedUserNamespace::operator=(
    MappedUserNamespace&&) noexcept = default;

MappedUserNamespace::~MappedUserNamespace() = default;

Result<bool> MappedUserNamespace::WaitForMaps() {
  if (!state_ || !state_->ns.valid()) return false;
  state_->Release();  // the maps are written: the fd keeps the namespace
  if (!*state_->maps) return state_->maps->error().WithContext("id maps");
  return **state_->maps;
}

Status MappedUserNamespace::Enter() const {
  if (!exists()) return Ok();
  if (::setns(state_->ns.get(), CLONE_NEWUSER) != 0)
    return Error::FromErrno("setns", "the container's user namespace");
  return Ok();
}

bool MappedUserNamespace::exists() const {
  return state_ && state_->ns.valid();
}

}  // namespace strata::launcher
