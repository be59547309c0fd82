#include "tools/launcher/containers.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include <spdlog/spdlog.h>

#include "layerdb/base/number.h"
#include "layerdb/base/sys.h"
#include "tools/launcher/cgroup_limits.h"
#include "tools/launcher/mapped_child.h"
#include "tools/launcher/pidfd.h"

namespace strata::launcher {

namespace {

// What /proc/PID/stat says of a process: its state letter and its parent.
struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
};
std::optional<ProcStat> ReadProcStat(pid_t pid) {
  auto text = sys::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return std::nullopt;
  size_t paren = text->rfind(')');  // the command name may hold anything
  if (paren == std::string::npos) return std::nullopt;
  std::string_view rest = std::string_view(*text).substr(paren + 1);
  ProcStat st;  // " S PPID ..."
  if (rest.size() < 4) return std::nullopt;
  st.state = rest[1];
  rest.remove_prefix(3);
  st.ppid = ParseNumber<pid_t>(rest.substr(0, rest.find(' '))).value_or(0);
  return st;
}

// A live process: signalable and not a zombie (a killed `strata run`'s
// launcher is one until the host's init reaps it).
bool Alive(pid_t pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM)) return false;
  auto st = ReadProcStat(pid);
  return !st || (st->state != 'Z' && st->state != 'X');  // no procfs: kill's
}

Result<nlohmann::json> ReadJson(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(std::string text, sys::ReadFile(path));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Error(EIO, "read", path + ": not a JSON object");
  return j;
}

// Removes `dir` from inside a user namespace mapping the caller's
// subordinate ids, where files owned by those ids live (a rootless
// container's root may have chowned them).
Status RemoveAsMappedRoot(const std::string& dir) {
  Status s = RunAsMappedRoot([&] { return sys::RemoveTree(dir); });
  if (s) return Ok();
  return Error(s.error().code(), "rm",
               dir + ": some files belong to ids this user cannot remove (" +
                   s.error().ToString() + ")");
}

// The container's PID 1: stage A's one child (its clone), or invalid.
UniqueFd OpenInitOf(pid_t stage_a) {
  std::string pid = std::to_string(stage_a);
  auto children = sys::ReadFile("/proc/" + pid + "/task/" + pid + "/children");
  if (!children) return UniqueFd();
  std::string_view first(*children);
  first = first.substr(0, first.find(' '));
  auto init = ParseNumber<pid_t>(first);
  return init ? OpenPidfd(*init) : UniqueFd();
}

// The `strata run` that started stage A: its parent, when that is this
// program (not the init that reaped it after that command was killed).
UniqueFd OpenRunnerOf(pid_t stage_a) {
  auto st = ReadProcStat(stage_a);
  if (!st || st->ppid <= 1) return UniqueFd();
  auto comm = sys::ReadFile("/proc/" + std::to_string(st->ppid) + "/comm");
  auto own = sys::ReadFile("/proc/self/comm");
  return comm && own && *comm == *own ? OpenPidfd(st->ppid) : UniqueFd();
}

// Kills stage A (`strata rm -f`) and waits until nothing of the container
// runs, as docker's rm -f does:
//  - PID 1: stage A's death ends it (its parent-death signal, which the
//    container's own user may be unable to send: PID 1 may run as a
//    subordinate id), and the kernel makes PID 1's exit wait until the rest
//    of its PID namespace is gone, so PID 1's end is the container's;
//  - its `strata run`, which then records the exit status and removes the
//    cgroups: the removal must not race those writes.
// Through pidfds: none may be a process that got a pid since.
void KillContainer(pid_t stage_a) {
  UniqueFd a = OpenPidfd(stage_a);
  if (!a.valid()) return;  // ended already
  UniqueFd init = OpenInitOf(stage_a);
  UniqueFd runner = OpenRunnerOf(stage_a);
  SignalPidfd(a.get(), SIGKILL);
  for (const UniqueFd* p : {&a, &init, &runner})
    if (p->valid()) (void)HasExited(p->get(), 5000);
}

}  // namespace

nlohmann::json ToJson(const ContainerInfo& c) {
  nlohmann::json j = {{"id", c.id},
                      {"image", c.image},
                      {"command", c.command},
                      {"created", c.created},
                      {"running", c.running}};
  if (c.running) j["pid"] = c.pid;
  if (c.exit_status) j["exit_status"] = *c.exit_status;
  return j;
}

Status CreateContainer(const LaunchSpec& spec) {
  const std::string& dir = spec.container_dir;
  STRATA_RETURN_IF_ERROR(sys::MakeDirs(spec.store_root + "/containers", 0700));
  if (auto rootfs = MakeSharedRootfs(spec.store_root); !rootfs)
    return rootfs.error();
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno != EEXIST) return Error::FromErrno("mkdir", dir);
    return Error(EEXIST, "run",
                 "container " + spec.container_id +
                     " exists (remove it with strata rm " + spec.container_id +
                     ", or choose another --name)");
  }
  for (const char* d : {"/upper", "/work"})
    if (::mkdir((dir + d).c_str(), 0700) != 0)
      return Error::FromErrno("mkdir", dir + d);
  STRATA_RETURN_IF_ERROR(sys::WriteFileAtomic(
      dir + "/hostname", spec.hostname + "\n", sys::Durability::kVisible));
  nlohmann::json meta = {{"id", spec.container_id},
                         {"image", spec.image},
                         {"view", spec.view},
                         {"command", spec.argv},
                         {"created", static_cast<int64_t>(::time(nullptr))}};
  // Not fsynced (nor is state.json): a container's record matters to the
  // processes of this boot; after a crash `strata ps` lists what survived.
  return sys::WriteFileAtomic(dir + "/config.json", meta.dump(2) + "\n",
                              sys::Durability::kVisible);
}

Status RecordState(const std::string& container_dir, pid_t pid,
                   std::optional<int> exit_status) {
  nlohmann::json j = {{"pid", pid}};
  if (exit_status) j["exit_status"] = *exit_status;
  return sys::WriteFileAtomic(container_dir + "/state.json", j.dump() + "\n",
                              sys::Durability::kVisible);
}

Status RecordCgroups(const std::string& container_dir,
                     const std::vector<std::string>& dirs) {
  if (dirs.empty()) return Ok();
  std::string text;
  for (const auto& d : dirs)
    text += d + "\n";
  return sys::WriteFileAtomic(container_dir + "/cgroups", text,
                              sys::Durability::kVisible);
}

Result<std::vector<ContainerInfo>> ListContainers(
    const std::string& store_root) {
  std::vector<ContainerInfo> out;
  auto names = sys::ListDir(store_root + "/containers");
  if (!names) {
    if (names.error().code() == ENOENT) return out;
    return names.error();
  }
  for (const auto& id : *names) {
    std::string dir = store_root + "/containers/" + id;
    auto cfg = ReadJson(dir + "/config.json");
    if (!cfg) continue;  // being created or removed
    ContainerInfo c;
    c.id = id;
    c.image = cfg->value("image", "");
    c.view = cfg->value("view", uint64_t{0});
    c.created = cfg->value("created", int64_t{0});
    if (cfg->contains("command") && (*cfg)["command"].is_array())
      for (const auto& a : (*cfg)["command"])
        c.command.push_back(a.get<std::string>());
    if (auto st = ReadJson(dir + "/state.json")) {
      c.pid = st->value("pid", 0);
      if (st->contains("exit_status"))
        c.exit_status = (*st)["exit_status"].get<int>();
    }
    c.running = Alive(c.pid);
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created < b.created; });
  return out;
}

Status RemoveContainer(const std::string& store_root, const std::string& id,
                       bool force) {
  STRATA_ASSIGN_OR_RETURN(auto all, ListContainers(store_root));
  auto it = std::find_if(all.begin(), all.end(),
                         [&](const auto& c) { return c.id == id; });
  if (it == all.end()) return Error(ENOENT, "rm", "no container " + id);
  if (it->running) {
    if (!force)
      return Error(EBUSY, "rm",
                   "container " + id +
                       " is running (stop it, or strata rm -f " + id + ")");
    KillContainer(it->pid);
  }
  return RemoveEndedContainer(store_root, id);
}

Status RemoveEndedContainer(const std::string& store_root,
                            const std::string& id) {
  std::string dir = store_root + "/containers/" + id;
  // Best effort: a cgroup is not the container's data, and an error here
  // must not keep its files.
  if (auto text = sys::ReadFile(dir + "/cgroups")) {
    if (auto s = RemoveLeftoverCgroups(*text); !s)
      spdlog::warn("rm {}: {}", id, s.error().ToString());
  }
  auto removed = sys::RemoveTree(dir);
  if (removed || ::geteuid() == 0) return removed;
  return RemoveAsMappedRoot(dir);
}

std::string SharedRootfs(const std::string& store_root) {
  return store_root + "/rootfs";
}

Result<std::string> MakeSharedRootfs(const std::string& store_root) {
  std::string dir = SharedRootfs(store_root);
  STRATA_RETURN_IF_ERROR(sys::MakeDirs(dir, 0700));
  return dir;
}

}  // namespace strata::launcher
