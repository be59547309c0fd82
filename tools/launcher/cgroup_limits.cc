#include "tools/launcher/cgroup_limits.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <thread>
#include <utility>

#include "layerdb/base/number.h"
#include "layerdb/base/sys.h"

namespace strata::launcher {

namespace {

constexpr uint64_t kMinMemory = uint64_t{6} << 20;  // docker's minimum
constexpr uint64_t kMaxPids = 4194304;  // PID_MAX_LIMIT on 64-bit kernels

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  while (!s.empty()) {
    size_t i = s.find(sep);
    if (i != 0) out.emplace_back(s.substr(0, i));
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return out;
}

// `word` is one of the whitespace-separated words of `text` (a
// cgroup.controllers or cgroup.subtree_control file).
bool HasWord(std::string_view text, std::string_view word) {
  size_t i = 0;
  while ((i = text.find(word, i)) != std::string_view::npos) {
    size_t end = i + word.size();
    bool starts =
        i == 0 || std::isspace(static_cast<unsigned char>(text[i - 1]));
    bool ends = end == text.size() ||
                std::isspace(static_cast<unsigned char>(text[end]));
    if (starts && ends) return true;
    i = end;
  }
  return false;
}

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Decodes mountinfo's octal escapes (\040 for a space, \134 for '\').
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t j, char max) {
      return j < s.size() && s[j] >= '0' && s[j] <= max;
    };
    if (s[i] == '\\' && octal(i + 1, '3') && octal(i + 2, '7') &&
        octal(i + 3, '7')) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                               (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string JoinPath(const std::string& dir, std::string_view rel) {
  std::string out = dir;
  while (out.size() > 1 && out.back() == '/')
    out.pop_back();
  if (rel.empty() || rel == "/") return out;
  if (out == "/") out.clear();
  if (rel.front() != '/') out += '/';
  out += rel;
  return out;
}

// A container id as containers.cc accepts it: a single path component.
bool IsPlainName(const std::string& id) {
  return !id.empty() && id != "." && id != ".." &&
         id.find_first_of("/\n") == std::string::npos;
}

// Kernel answers that mean "bad value" rather than "not possible here".
bool IsBadInput(const Error& e) {
  return e.code() == EINVAL || e.code() == ERANGE;
}

// What would let a limit be set, for the warning.
std::string Hint(int code, bool v2) {
  switch (code) {
    case EACCES:
    case EPERM:
      return v2 ? "run as root, or in a delegated cgroup: systemd-run --user "
                  "--scope -p Delegate=yes strata run ..."
                : "run as root, or have root delegate a cgroup to this user: "
                  "chown the directory, its cgroup.procs and tasks";
    case EROFS:
      return "the cgroup file system is mounted read-only here";
    case ENOENT:
      return "the controller is not available to this cgroup";
    case EBUSY:  // v2's no-internal-process rule
      return v2 ? "run strata in a cgroup of its own: systemd-run --user "
                  "--scope -p Delegate=yes strata run ..."
                : "";
    default:
      return "";
  }
}

std::string Why(const Error& e, bool v2) {
  std::string hint = Hint(e.code(), v2);
  return hint.empty() ? e.ToString() : e.ToString() + " (" + hint + ")";
}

// mkdir `dir`; one of that name left by a killed `strata run` (no
// destructor ran) is empty and goes first. A cgroup in use cannot be
// removed (EBUSY): another store's container of the same name.
Status MakeFreshDir(CgroupFs* fs, const std::string& dir) {
  Status s = fs->MakeDir(dir);
  if (s || s.error().code() != EEXIST) return s;
  if (!fs->RemoveDir(dir))
    return Error(EEXIST, "mkdir",
                 dir +
                     ": in use (a container of this name in another "
                     "store?)");
  return fs->MakeDir(dir);
}

// rmdir `dir`, waiting up to a second for tasks that exited but that the
// kernel has not released from the cgroup yet (EBUSY). Gone already is fine.
Status RemoveDirRetrying(CgroupFs* fs, const std::string& dir) {
  for (int attempt = 0;; ++attempt) {
    Status s = fs->RemoveDir(dir);
    if (s || s.error().code() == ENOENT) return Ok();
    if (s.error().code() != EBUSY || attempt == 100) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status WriteLimits(CgroupFs* fs, const std::string& dir,
                   const ResourceLimits& limits, bool v2) {
  if (limits.memory_bytes) {
    std::string n = std::to_string(*limits.memory_bytes);
    STRATA_RETURN_IF_ERROR(
        fs->Write(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"), n));
    // Without a swap limit a container over its memory limit swaps instead
    // of being OOM-killed. v1 limits memory+swap (it must not be below the
    // memory limit, hence set second). The file is absent without swap
    // accounting: then swap is not charged and there is nothing to limit.
    Status swap = fs->Write(
        dir + (v2 ? "/memory.swap.max" : "/memory.memsw.limit_in_bytes"),
        v2 ? "0" : n);
    if (!swap && swap.error().code() != ENOENT) return swap;
  }
  if (limits.pids)
    STRATA_RETURN_IF_ERROR(
        fs->Write(dir + "/pids.max", std::to_string(*limits.pids)));
  return Ok();
}

// The controllers in `controllers` ("memory pids") prefixed for
// cgroup.subtree_control: "+memory +pids".
std::string ControlLine(const std::string& controllers, char sign) {
  std::string out;
  for (const auto& c : Split(controllers, ' '))
    out += (out.empty() ? "" : " ") + std::string(1, sign) + c;
  return out;
}

bool OnlyPid(std::string_view procs, pid_t self) {
  for (const auto& p : Split(procs, '\n'))
    if (p != std::to_string(self)) return false;
  return true;
}

class RealCgroupFs final : public CgroupFs {
 public:
  Result<std::string> Read(const std::string& path) override {
    return sys::ReadFile(path);
  }
  Status Write(const std::string& path, std::string_view value) override {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, sys::Open(path, O_WRONLY));
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) return Error::FromErrno("write", path);
    if (static_cast<size_t>(n) != value.size())
      return Error(EIO, "write", path + ": short write");
    return Ok();
  }
  Status MakeDir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0755) != 0)
      return Error::FromErrno("mkdir", path);
    return Ok();
  }
  Status RemoveDir(const std::string& path) override {
    if (::rmdir(path.c_str()) != 0) return Error::FromErrno("rmdir", path);
    return Ok();
  }
  Result<UniqueFd> OpenForWrite(const std::string& path) override {
    return sys::Open(path, O_WRONLY);
  }
};

// One limit to set: its controller, its flag, and the limit alone.
struct Wanted {
  const char* controller;
  const char* flag;
  ResourceLimits only;
};

std::vector<Wanted> WantedOf(const ResourceLimits& limits) {
  std::vector<Wanted> out;
  if (limits.memory_bytes)
    out.push_back({"memory", "--memory", {limits.memory_bytes, std::nullopt}});
  if (limits.pids)
    out.push_back({"pids", "--pids", {std::nullopt, limits.pids}});
  return out;
}

// A limit not applied: "--pids is not applied: <why>".
struct Problem {
  std::vector<const char*> flags;
  std::string why;
};

std::string Describe(const std::vector<Problem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    if (!out.empty()) out += "; ";
    for (size_t i = 0; i < p.flags.size(); ++i)
      out += std::string(i == 0 ? "" : " and ") + p.flags[i];
    out += p.flags.size() > 1 ? " are not applied: " : " is not applied: ";
    out += p.why;
  }
  return out;
}

}  // namespace

Result<uint64_t> ParseByteSize(std::string_view text) {
  auto bad = [&](const char* why) {
    return Error(EINVAL, "size", std::string(text) + ": " + why);
  };
  size_t digits = 0;
  while (digits < text.size() &&
         std::isdigit(static_cast<unsigned char>(text[digits])))
    ++digits;
  if (digits == 0)
    return bad(
        "expected a number of bytes with an optional unit k, m, g or t "
        "(e.g. 64m)");
  std::string unit;
  for (char c : text.substr(digits))
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int shift = 0;
  if (!unit.empty()) {
    size_t u = std::string_view("kmgt").find(unit[0]);
    if (u != std::string_view::npos) {
      shift = 10 * static_cast<int>(u + 1);
      unit.erase(0, 1);
      if (unit.starts_with("i")) unit.erase(0, 1);  // KiB, as docker takes
    }
  }
  if (!unit.empty() && unit != "b")
    return bad("unknown unit (use k, m, g or t, binary multiples: 64m)");
  auto n = ParseNumber<uint64_t>(text.substr(0, digits));
  if (!n || *n > (UINT64_MAX >> shift)) return bad("too large");
  return *n << shift;
}

Result<ResourceLimits> ParseLimits(const std::string& memory,
                                   const std::string& pids) {
  ResourceLimits limits;
  if (!memory.empty()) {
    auto n = ParseByteSize(memory);
    if (!n) return Error(EINVAL, "run", "--memory " + n.error().detail());
    if (*n < kMinMemory)
      return Error(EINVAL, "run",
                   "--memory " + memory + ": below the minimum of 6m");
    limits.memory_bytes = *n;
  }
  if (!pids.empty()) {
    auto n = ParseNumber<uint64_t>(pids);
    if (!n || *n < 1 || *n > kMaxPids)
      return Error(EINVAL, "run",
                   "--pids " + pids + ": expected a number from 1 to " +
                       std::to_string(kMaxPids));
    limits.pids = *n;
  }
  return limits;
}

CgroupFs* CgroupFs::Real() {
  static RealCgroupFs fs;
  return &fs;
}

Result<std::vector<CgroupMembership>> ParseProcCgroup(std::string_view text) {
  std::vector<CgroupMembership> out;
  for (const auto& line : Split(text, '\n')) {
    std::string_view view = line;
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    auto id = ParseNumber<uint64_t>(view.substr(0, a));
    if (b == std::string::npos || !id || *id > uint64_t{INT32_MAX} ||
        line.size() == b + 1 || line[b + 1] != '/')
      return Error(EINVAL, "parse /proc/self/cgroup", line);
    CgroupMembership m;
    m.hierarchy_id = static_cast<int>(*id);
    m.controllers = Split(view.substr(a + 1, b - a - 1), ',');
    m.path = line.substr(b + 1);
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<CgroupMount> ParseCgroupMounts(std::string_view mountinfo) {
  std::vector<CgroupMount> out;
  for (const auto& line : Split(mountinfo, '\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE
    // SUPER_OPTIONS (proc(5))
    std::vector<std::string> f = Split(line, ' ');
    if (f.size() < 10) continue;
    auto dash = std::find(f.begin() + 6, f.end(), "-");
    if (f.end() - dash < 4) continue;
    const std::string& type = dash[1];
    if (type != "cgroup" && type != "cgroup2") continue;
    CgroupMount m;
    m.root = Unescape(f[3]);
    m.mount_point = Unescape(f[4]);
    m.v2 = type == "cgroup2";
    m.options = Split(dash[3], ',');
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<std::string> OwnCgroupDir(
    const std::vector<CgroupMembership>& memberships,
    const std::vector<CgroupMount>& mounts, std::string_view controller) {
  bool v2 = controller.empty();
  auto member = std::find_if(
      memberships.begin(), memberships.end(), [&](const CgroupMembership& m) {
        return v2 ? m.hierarchy_id == 0 && m.controllers.empty()
                  : Contains(m.controllers, controller);
      });
  if (member == memberships.end()) return std::nullopt;
  const std::string& path = member->path;
  // Outside this cgroup namespace's root ("/../.."): not reachable.
  if (Contains(Split(path, '/'), "..")) return std::nullopt;
  for (const auto& m : mounts) {
    if (m.v2 != v2 || (!v2 && !Contains(m.options, controller))) continue;
    // A mount of a subtree (a bind mount, or one made in a cgroup
    // namespace) shows the cgroups below its root only.
    if (m.root == "/") return JoinPath(m.mount_point, path);
    if (path == m.root) return m.mount_point;
    if (path.starts_with(m.root + "/"))
      return JoinPath(m.mount_point, path.substr(m.root.size()));
  }
  return std::nullopt;
}

ContainerCgroup::ContainerCgroup(ContainerCgroup&& o) noexcept {
  *this = std::move(o);
}

ContainerCgroup& ContainerCgroup::operator=(ContainerCgroup&& o) noexcept {
  if (this != &o) {
    (void)Remove();
    fs_ = o.fs_;
    groups_ = std::exchange(o.groups_, {});
    v2_base_ = std::exchange(o.v2_base_, {});
    v2_leaf_ = std::exchange(o.v2_leaf_, {});
    v2_enabled_ = std::exchange(o.v2_enabled_, {});
    self_ = o.self_;
  }
  return *this;
}

ContainerCgroup::~ContainerCgroup() {
  (void)Remove();
}

Result<ContainerCgroup> ContainerCgroup::Create(const std::string& container_id,
                                                const ResourceLimits& limits,
                                                std::string* warning) {
  CgroupHost host;
  host.fs = CgroupFs::Real();
  host.self = ::getpid();
  if (limits.any()) {
    // Unreadable: no cgroups here; Create then says which limit is missing.
    if (auto t = sys::ReadFile("/proc/self/cgroup"))
      host.proc_self_cgroup = std::move(*t);
    if (auto t = sys::ReadFile("/proc/self/mountinfo"))
      host.mountinfo = std::move(*t);
  }
  return Create(container_id, limits, host, warning);
}

Result<ContainerCgroup> ContainerCgroup::Create(const std::string& container_id,
                                                const ResourceLimits& limits,
                                                const CgroupHost& host,
                                                std::string* warning) {
  warning->clear();
  ContainerCgroup cg;
  if (!limits.any()) return cg;
  if (!IsPlainName(container_id))
    return Error(EINVAL, "cgroup", "container id " + container_id);
  if (limits.memory_bytes == uint64_t{0} || limits.pids == uint64_t{0})
    return Error(EINVAL, "cgroup", "a limit of 0");
  cg.fs_ = host.fs;
  cg.self_ = host.self;
  auto memberships = ParseProcCgroup(host.proc_self_cgroup);
  if (!memberships) {
    Problem p{{}, memberships.error().ToString()};
    for (const auto& w : WantedOf(limits))
      p.flags.push_back(w.flag);
    *warning = Describe({p});
    return cg;
  }
  STRATA_ASSIGN_OR_RETURN(*warning,
                          cg.SetUp(container_id, limits, *memberships,
                                   ParseCgroupMounts(host.mountinfo)));
  return cg;
}

Result<std::string> ContainerCgroup::SetUp(
    const std::string& id, const ResourceLimits& limits,
    const std::vector<CgroupMembership>& memberships,
    const std::vector<CgroupMount>& mounts) {
  // cgroup v2 where the caller's cgroup has the controller; v1 for the rest
  // (a controller is in one hierarchy at a time).
  auto v2_dir = OwnCgroupDir(memberships, mounts, "");
  std::string v2_controllers;
  if (v2_dir) {
    auto c = fs_->Read(*v2_dir + "/cgroup.controllers");
    if (c) v2_controllers = *c;
  }
  ResourceLimits in_v2;
  std::vector<Wanted> in_v1;
  Problem v2_problem;
  for (const auto& w : WantedOf(limits)) {
    if (!HasWord(v2_controllers, w.controller)) {
      in_v1.push_back(w);
      continue;
    }
    v2_problem.flags.push_back(w.flag);
    if (w.only.memory_bytes) in_v2.memory_bytes = w.only.memory_bytes;
    if (w.only.pids) in_v2.pids = w.only.pids;
  }
  std::vector<Problem> problems;
  if (in_v2.any()) {
    if (Status s = SetUpV2(*v2_dir, id, in_v2, self_); !s) {
      if (IsBadInput(s.error())) return s.error();
      v2_problem.why = Why(s.error(), true);
      problems.push_back(std::move(v2_problem));
    }
  }
  for (const auto& w : in_v1) {
    auto dir = OwnCgroupDir(memberships, mounts, w.controller);
    if (!dir) {
      problems.push_back(
          {{w.flag},
           std::string("no mounted cgroup hierarchy has the ") + w.controller +
               " controller (mount its cgroup v1 hierarchy, or enable it in "
               "cgroup v2)"});
      continue;
    }
    if (Status s = SetUpV1(*dir, id, w.only); !s) {
      if (IsBadInput(s.error())) return s.error();
      problems.push_back({{w.flag}, Why(s.error(), false)});
    }
  }
  return Describe(problems);
}

Status ContainerCgroup::SetUpV1(const std::string& parent,
                                const std::string& id,
                                const ResourceLimits& limits) {
  return MakeGroup(JoinPath(parent, "strata-" + id), limits, false);
}

Status ContainerCgroup::SetUpV2(const std::string& base, const std::string& id,
                                const ResourceLimits& limits, pid_t self) {
  std::string wanted = limits.memory_bytes ? "memory" : "";
  if (limits.pids) wanted += wanted.empty() ? "pids" : " pids";
  if (Status e = EnableV2Controllers(base, id, wanted, self); !e) {
    (void)MoveBack();  // if it had moved
    return e;
  }
  Status s = MakeGroup(JoinPath(base, "strata-" + id), limits, true);
  if (!s) (void)MoveBack();
  return s;
}

// The children of `base` get the controllers only where base's
// cgroup.subtree_control enables them, and a cgroup other than the root may
// enable them only while it has no processes of its own (cgroup-v2.rst, "No
// Internal Process Constraint": EBUSY). When the caller is alone in base
// (systemd-run --scope -p Delegate=yes), it moves to a leaf of its own,
// where the FUSE daemon it forks stays, unlimited.
Status ContainerCgroup::EnableV2Controllers(const std::string& base,
                                            const std::string& id,
                                            const std::string& wanted,
                                            pid_t self) {
  STRATA_ASSIGN_OR_RETURN(std::string enabled,
                          fs_->Read(base + "/cgroup.subtree_control"));
  std::string missing;
  for (const auto& c : Split(wanted, ' '))
    if (!HasWord(enabled, c)) missing += (missing.empty() ? "" : " ") + c;
  if (missing.empty()) return Ok();
  std::string control = base + "/cgroup.subtree_control";
  Status s = fs_->Write(control, ControlLine(missing, '+'));
  if (s || s.error().code() != EBUSY) return s;
  STRATA_ASSIGN_OR_RETURN(std::string procs, fs_->Read(base + "/cgroup.procs"));
  if (!OnlyPid(procs, self))
    return Error(EBUSY, "cgroup",
                 base +
                     " holds other processes, and cgroup v2 gives "
                     "controllers only to cgroups without processes");
  std::string leaf = JoinPath(base, "strata-" + id + ".launcher");
  STRATA_RETURN_IF_ERROR(MakeFreshDir(fs_, leaf));
  if (Status m = fs_->Write(leaf + "/cgroup.procs", std::to_string(self)); !m) {
    (void)fs_->RemoveDir(leaf);
    return m;
  }
  v2_base_ = base;
  v2_leaf_ = leaf;
  STRATA_RETURN_IF_ERROR(fs_->Write(control, ControlLine(missing, '+')));
  v2_enabled_ = missing;
  return Ok();
}

Status ContainerCgroup::MakeGroup(const std::string& dir,
                                  const ResourceLimits& limits, bool v2) {
  STRATA_RETURN_IF_ERROR(MakeFreshDir(fs_, dir));
  Status s = WriteLimits(fs_, dir, limits, v2);
  Result<UniqueFd> procs = s ? fs_->OpenForWrite(dir + "/cgroup.procs")
                             : Result<UniqueFd>(s.error());
  if (!procs) {
    (void)fs_->RemoveDir(dir);
    return procs.error();
  }
  groups_.push_back({dir, std::move(*procs)});
  return Ok();
}

// Undoes EnableV2Controllers' move: base takes its process back only once
// it hands out no controllers again.
Status ContainerCgroup::MoveBack() {
  if (v2_leaf_.empty()) return Ok();
  Status first = Ok();
  if (!v2_enabled_.empty())
    first = fs_->Write(v2_base_ + "/cgroup.subtree_control",
                       ControlLine(v2_enabled_, '-'));
  Status moved = fs_->Write(v2_base_ + "/cgroup.procs", std::to_string(self_));
  if (moved) moved = RemoveDirRetrying(fs_, v2_leaf_);
  if (first) first = moved;
  v2_base_.clear();
  v2_leaf_.clear();
  v2_enabled_.clear();
  return first;
}

std::vector<int> ContainerCgroup::procs_fds() const {
  std::vector<int> out;
  for (const auto& g : groups_)
    out.push_back(g.procs.get());
  return out;
}

std::vector<std::string> ContainerCgroup::dirs() const {
  std::vector<std::string> out;
  for (const auto& g : groups_)
    out.push_back(g.dir);
  return out;
}

std::vector<std::string> ContainerCgroup::leftovers() const {
  std::vector<std::string> out = dirs();
  if (!v2_leaf_.empty()) out.push_back(v2_leaf_);
  return out;
}

Status RemoveLeftoverCgroups(std::string_view recorded) {
  Status first = Ok();
  for (const auto& dir : Split(recorded, '\n')) {
    std::string_view name = std::string_view(dir).substr(dir.rfind('/') + 1);
    if (!dir.starts_with("/sys/fs/cgroup/") || !name.starts_with("strata-") ||
        dir.find("/../") != std::string::npos)
      continue;  // not one of ours
    Status s = RemoveDirRetrying(CgroupFs::Real(), dir);
    if (!s && first) first = s;
  }
  return first;
}

Status ContainerCgroup::Remove() {
  Status first = Ok();
  for (auto& g : groups_) {
    g.procs.Reset();
    Status s = RemoveDirRetrying(fs_, g.dir);
    if (!s && first) first = s;
  }
  groups_.clear();
  Status moved = MoveBack();
  if (first) first = moved;
  return first;
}

Status JoinCgroups(std::span<const int> procs_fds) {
  for (int fd : procs_fds) {
    // "0" is the writer itself (cgroup-v2.rst, cgroup.procs; the same in
    // v1): the whole process moves.
    ssize_t n = ::write(fd, "0", 1);
    if (n != 1)
      return Error(n < 0 ? errno : EIO, "write",
                   "cgroup.procs (joining the container's cgroup)");
  }
  return Ok();
}

}  // namespace strata::launcher
