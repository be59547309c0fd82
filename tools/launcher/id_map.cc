#include "tools/launcher/id_map.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <vector>

#include "layerdb/base/number.h"
#include "layerdb/base/sys.h"

namespace strata::launcher {

namespace {

std::string UserName(uid_t uid) {
  struct passwd pw {};
  struct passwd* out = nullptr;
  std::vector<char> buf(4096);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &out) == 0 &&
      out != nullptr)
    return out->pw_name;
  return std::to_string(uid);
}

// newuidmap and newgidmap run at the same time (posix_spawn: no copy of
// our address space): together they are most of a container's start time.
Result<pid_t> StartHelper(const std::vector<std::string>& argv) {
  std::vector<char*> a;
  for (const auto& s : argv)
    a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  // The launcher ignores SIGPIPE; the helper gets the default back.
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  sigset_t def;
  ::sigemptyset(&def);
  ::sigaddset(&def, SIGPIPE);
  ::posix_spawnattr_setsigdefault(&attr, &def);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  std::string path = "/usr/bin/" + argv[0];  // checked by StartIdMaps
  int err =
      ::posix_spawn(&pid, path.c_str(), nullptr, &attr, a.data(), environ);
  ::posix_spawnattr_destroy(&attr);
  if (err != 0) return Error(err, "spawn", path);
  return pid;
}

Status WaitHelper(pid_t pid, const std::string& name) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return Error::FromErrno("waitpid", name);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error(EPERM, "id map",
                 name + " failed (exit " + std::to_string(WEXITSTATUS(status)) +
                     "); check /etc/subuid and /etc/subgid, or that uidmap is "
                     "installed");
  return Ok();
}

Status WriteProc(pid_t pid, const char* file, const std::string& text) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Error::FromErrno("open", path);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return Error(err, "write", path);
  return Ok();
}

}  // namespace

std::optional<SubRange> FindSubRange(const std::string& file_text,
                                     const std::string& name, uid_t id) {
  std::istringstream in(file_text);
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string who = line.substr(0, a);
    if (who != name && who != std::to_string(id)) continue;
    auto start = ParseNumber<uint64_t>(line.substr(a + 1, b - a - 1));
    auto count = ParseNumber<uint64_t>(line.substr(b + 1));
    if (start && count && *count > 0) return SubRange{*start, *count};
  }
  return std::nullopt;
}

IdMapPlan PlanIdMaps() {
  IdMapPlan plan;
  plan.uid = ::getuid();
  plan.gid = ::getgid();
  if (::access("/usr/bin/newuidmap", X_OK) != 0 ||
      ::access("/usr/bin/newgidmap", X_OK) != 0)
    return plan;  // the single id then
  std::string name = UserName(plan.uid);
  auto subuid = sys::ReadFile("/etc/subuid");
  auto subgid = sys::ReadFile("/etc/subgid");
  if (subuid) plan.uids = FindSubRange(*subuid, name, plan.uid);
  if (subgid) plan.gids = FindSubRange(*subgid, name, plan.uid);
  if (!plan.full()) plan.uids = plan.gids = std::nullopt;
  return plan;
}

namespace {

// "0 ID 1", then "1 START COUNT" for a range: a map as /proc shows it to a
// process of the parent namespace, one triple per line.
bool MapIs(pid_t pid, const char* file, uint64_t id,
           const std::optional<SubRange>& range) {
  auto text = sys::ReadFile("/proc/" + std::to_string(pid) + "/" + file);
  if (!text) return false;
  std::vector<uint64_t> want = {0, id, 1};
  if (range) want.insert(want.end(), {1, range->start, range->count});
  std::istringstream in(*text);
  std::vector<uint64_t> got;
  for (uint64_t v = 0; in >> v;)
    got.push_back(v);
  return in.eof() && got == want;
}

}  // namespace

bool HasPlannedMaps(pid_t pid, const IdMapPlan& plan) {
  return MapIs(pid, "uid_map", plan.uid, plan.uids) &&
         MapIs(pid, "gid_map", plan.gid, plan.gids);
}

PendingIdMaps StartIdMaps(pid_t pid, const IdMapPlan& plan) {
  PendingIdMaps p;
  p.target = pid;
  if (!plan.full()) return p;
  std::string t = std::to_string(pid);
  auto u = StartHelper({"newuidmap", t, "0", std::to_string(plan.uid), "1", "1",
                        std::to_string(plan.uids->start),
                        std::to_string(plan.uids->count)});
  auto g = StartHelper({"newgidmap", t, "0", std::to_string(plan.gid), "1", "1",
                        std::to_string(plan.gids->start),
                        std::to_string(plan.gids->count)});
  p.uid_helper = u ? *u : -1;
  p.gid_helper = g ? *g : -1;
  return p;
}

Result<bool> FinishIdMaps(PendingIdMaps& p) {
  bool ok = p.uid_helper > 0 && p.gid_helper > 0;
  if (p.uid_helper > 0) ok = WaitHelper(p.uid_helper, "newuidmap") && ok;
  if (p.gid_helper > 0) ok = WaitHelper(p.gid_helper, "newgidmap") && ok;
  p.uid_helper = p.gid_helper = -1;
  if (ok) return true;
  // One id: ours as root. setgroups must be denied before an unprivileged
  // process may write gid_map.
  uid_t uid = ::getuid();
  gid_t gid = ::getgid();
  STRATA_RETURN_IF_ERROR(WriteProc(p.target, "setgroups", "deny"));
  STRATA_RETURN_IF_ERROR(
      WriteProc(p.target, "uid_map", "0 " + std::to_string(uid) + " 1\n"));
  STRATA_RETURN_IF_ERROR(
      WriteProc(p.target, "gid_map", "0 " + std::to_string(gid) + " 1\n"));
  return false;
}

}  // namespace strata::launcher
