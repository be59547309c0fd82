#include "tools/launcher/cgroup_limits.h"

#include <fcntl.h>

#include <map>
#include <set>

#include <gtest/gtest.h>

#include "layerdb/base/sys.h"

namespace strata::launcher {
namespace {

using Strings = std::vector<std::string>;

TEST(ParseByteSizeTest, TakesDockersUnits) {
  struct {
    const char* text;
    uint64_t want;
  } cases[] = {
      {"1048576", 1048576},
      {"0", 0},
      {"100b", 100},
      {"64k", 64 << 10},
      {"64K", 64 << 10},
      {"64kb", 64 << 10},
      {"64KiB", 64 << 10},
      {"64m", 64 << 20},
      {"512MB", 512 << 20},
      {"1g", uint64_t{1} << 30},
      {"2Gi", uint64_t{2} << 30},
      {"3t", uint64_t{3} << 40},
  };
  for (const auto& c : cases) {
    auto n = ParseByteSize(c.text);
    ASSERT_TRUE(n) << c.text << ": " << n.error().ToString();
    EXPECT_EQ(*n, c.want) << c.text;
  }
}

TEST(ParseByteSizeTest, RefusesOtherTextNamingIt) {
  for (const char* text :
       {"", "m", "-1", "64q", "64mm", "1.5g", " 64m", "64 m", "64ib", "0x10",
        "18446744073709551616", "16777216t"}) {
    auto n = ParseByteSize(text);
    ASSERT_FALSE(n) << text << " gave " << *n;
    EXPECT_EQ(n.error().code(), EINVAL);
    EXPECT_EQ(n.error().detail().rfind(std::string(text) + ": ", 0), 0u)
        << n.error().ToString();
  }
}

TEST(ParseLimitsTest, EmptyIsNotGiven) {
  auto l = ParseLimits("", "");
  ASSERT_TRUE(l) << l.error().ToString();
  EXPECT_FALSE(l->any());
}

TEST(ParseLimitsTest, ParsesBoth) {
  auto l = ParseLimits("32m", "64");
  ASSERT_TRUE(l) << l.error().ToString();
  EXPECT_EQ(l->memory_bytes, uint64_t{32} << 20);
  EXPECT_EQ(l->pids, 64u);
}

TEST(ParseLimitsTest, ErrorsNameTheFlagAndValue) {
  struct {
    const char* memory;
    const char* pids;
    const char* want;
  } cases[] = {
      {"64q", "", "run: --memory 64q: unknown unit"},
      {"1m", "", "run: --memory 1m: below the minimum of 6m"},
      {"", "0", "run: --pids 0: expected a number from 1 to 4194304"},
      {"", "4194305", "run: --pids 4194305: expected"},
      {"", "12x", "run: --pids 12x: expected"},
  };
  for (const auto& c : cases) {
    auto l = ParseLimits(c.memory, c.pids);
    ASSERT_FALSE(l) << c.memory << " " << c.pids;
    EXPECT_EQ(l.error().code(), EINVAL);
    std::string line = l.error().ToString();
    EXPECT_EQ(line.rfind(c.want, 0), 0u) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  }
}

// This machine's layout: a v1/v2 hybrid whose v2 has only hugetlb.
constexpr char kHybridCgroup[] =
    "9:name=systemd:/\n"
    "8:pids:/\n"
    "4:memory:/process_api/abc\n"
    "1:cpu,cpuacct:/\n"
    "0::/\n";
constexpr char kHybridMountinfo[] =
    "22 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:7 - cgroup cgroup "
    "rw,pids\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup "
    "rw,cpu,cpuacct\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 "
    "rw,nsdelegate\n";

// A systemd v2 host, in a delegated scope.
constexpr char kScope[] = "/user.slice/user-1000.slice/run-1.scope";
constexpr char kV2Cgroup[] = "0::/user.slice/user-1000.slice/run-1.scope\n";
constexpr char kV2Mountinfo[] =
    "30 23 0:27 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

TEST(ParseProcCgroupTest, ReadsV1AndV2Lines) {
  auto m = ParseProcCgroup(kHybridCgroup);
  ASSERT_TRUE(m) << m.error().ToString();
  ASSERT_EQ(m->size(), 5u);
  EXPECT_EQ((*m)[0].controllers, Strings{"name=systemd"});
  EXPECT_EQ((*m)[2].hierarchy_id, 4);
  EXPECT_EQ((*m)[2].controllers, Strings{"memory"});
  EXPECT_EQ((*m)[2].path, "/process_api/abc");
  EXPECT_EQ((*m)[3].controllers, (Strings{"cpu", "cpuacct"}));
  EXPECT_EQ((*m)[4].hierarchy_id, 0);
  EXPECT_TRUE((*m)[4].controllers.empty());
  EXPECT_EQ((*m)[4].path, "/");
}

TEST(ParseProcCgroupTest, PathMayHoldColons) {
  auto m = ParseProcCgroup("0::/a:b/c\n");
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ((*m)[0].path, "/a:b/c");
}

TEST(ParseProcCgroupTest, RefusesMalformedLines) {
  for (const char* text : {"memory:/\n", "x:memory:/\n", "4:memory\n",
                           "4:memory:\n", "4:memory:rel\n"}) {
    auto m = ParseProcCgroup(text);
    ASSERT_FALSE(m) << text;
    EXPECT_EQ(m.error().code(), EINVAL);
  }
}

TEST(ParseCgroupMountsTest, KeepsCgroupMountsOnly) {
  auto mounts = ParseCgroupMounts(kHybridMountinfo);
  ASSERT_EQ(mounts.size(), 4u);
  EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup/memory");
  EXPECT_EQ(mounts[0].root, "/");
  EXPECT_FALSE(mounts[0].v2);
  EXPECT_EQ(mounts[0].options, (Strings{"rw", "memory"}));
  EXPECT_EQ(mounts[1].mount_point, "/sys/fs/cgroup/pids");  // shared:7 skipped
  EXPECT_EQ(mounts[2].options, (Strings{"rw", "cpu", "cpuacct"}));
  EXPECT_TRUE(mounts[3].v2);
  EXPECT_EQ(mounts[3].mount_point, "/sys/fs/cgroup/unified");
}

TEST(ParseCgroupMountsTest, DecodesEscapesAndSkipsTruncatedLines) {
  auto mounts = ParseCgroupMounts(
      "50 1 0:40 /sub\\040dir /mnt/my\\040cg\\134x rw - cgroup2 none rw\n"
      "51 1 0:41 / /short rw - cgroup\n"
      "52 1 0:42 / /x rw\n");
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].root, "/sub dir");
  EXPECT_EQ(mounts[0].mount_point, "/mnt/my cg\\x");
}

TEST(OwnCgroupDirTest, FindsEachHierarchy) {
  auto m = ParseProcCgroup(kHybridCgroup);
  ASSERT_TRUE(m);
  auto mounts = ParseCgroupMounts(kHybridMountinfo);
  EXPECT_EQ(OwnCgroupDir(*m, mounts, "memory"),
            "/sys/fs/cgroup/memory/process_api/abc");
  EXPECT_EQ(OwnCgroupDir(*m, mounts, "pids"), "/sys/fs/cgroup/pids");
  EXPECT_EQ(OwnCgroupDir(*m, mounts, "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(OwnCgroupDir(*m, mounts, ""), "/sys/fs/cgroup/unified");
  EXPECT_EQ(OwnCgroupDir(*m, mounts, "blkio"), std::nullopt);  // not mounted
  EXPECT_EQ(OwnCgroupDir(*m, {}, "memory"), std::nullopt);
}

TEST(OwnCgroupDirTest, MountOfASubtree) {
  auto m = ParseProcCgroup("5:memory:/a/b/c\n0::/x/y\n");
  ASSERT_TRUE(m);
  auto mounts = ParseCgroupMounts(
      "1 0 0:1 /a/b /cg/memory rw - cgroup cgroup rw,memory\n"
      "2 0 0:2 /x/y /cg/unified rw - cgroup2 cgroup2 rw\n");
  EXPECT_EQ(OwnCgroupDir(*m, mounts, "memory"), "/cg/memory/c");
  EXPECT_EQ(OwnCgroupDir(*m, mounts, ""), "/cg/unified");
  auto elsewhere = ParseCgroupMounts(
      "1 0 0:1 /a/bb /cg/memory rw - cgroup cgroup rw,memory\n");
  EXPECT_EQ(OwnCgroupDir(*m, elsewhere, "memory"), std::nullopt);
  auto outside = ParseProcCgroup("0::/../../z\n");
  ASSERT_TRUE(outside);
  EXPECT_EQ(OwnCgroupDir(*outside, ParseCgroupMounts(kV2Mountinfo), ""),
            std::nullopt);
}

// A cgroup tree in memory with the kernel rules ContainerCgroup meets:
// mkdir/rmdir errnos, a cgroup with processes or children cannot be
// removed, writing a pid to cgroup.procs moves it, and a non-root cgroup
// with processes cannot enable controllers (EBUSY).
class FakeCgroupFs : public CgroupFs {
 public:
  std::set<std::string> dirs;
  std::map<std::string, std::string> files;
  std::map<std::string, int> fail;  // path → errno of a change to it
  std::set<std::string> absent;     // file names that do not exist
  std::set<std::string> roots;      // root cgroups (no EBUSY rule)
  Strings log;

  void AddCgroup(const std::string& dir, const std::string& controllers,
                 const std::string& procs = "") {
    dirs.insert(dir);
    files[dir + "/cgroup.controllers"] = controllers;
    files[dir + "/cgroup.subtree_control"] = "";
    files[dir + "/cgroup.procs"] = procs;
  }

  Result<std::string> Read(const std::string& path) override {
    auto f = files.find(path);
    if (f == files.end()) return Error(ENOENT, "open", path);
    return f->second;
  }

  Status Write(const std::string& path, std::string_view value) override {
    log.push_back("write " + path + " " + std::string(value));
    if (auto e = Failure("write", path)) return *e;
    std::string dir = path.substr(0, path.rfind('/'));
    std::string name = path.substr(path.rfind('/') + 1);
    if (!dirs.count(dir) || absent.count(name))
      return Error(ENOENT, "open", path);
    if (name == "cgroup.procs") {
      for (auto& [p, text] : files)
        if (p.ends_with("/cgroup.procs")) text = Without(text, value);
      files[path] += std::string(value) + "\n";
    } else if (name == "cgroup.subtree_control") {
      if (value.find('+') != std::string::npos &&
          !files[dir + "/cgroup.procs"].empty() && !roots.count(dir))
        return Error(EBUSY, "write", path);
      files[path] = Apply(files[path], value);
    } else {
      files[path] = value;
    }
    return Ok();
  }

  Status MakeDir(const std::string& path) override {
    log.push_back("mkdir " + path);
    if (auto e = Failure("mkdir", path)) return *e;
    if (!dirs.count(path.substr(0, path.rfind('/'))))
      return Error(ENOENT, "mkdir", path);
    if (dirs.count(path)) return Error(EEXIST, "mkdir", path);
    AddCgroup(path, "");
    return Ok();
  }

  Status RemoveDir(const std::string& path) override {
    log.push_back("rmdir " + path);
    if (auto e = Failure("rmdir", path)) return *e;
    if (!dirs.count(path)) return Error(ENOENT, "rmdir", path);
    auto child = dirs.lower_bound(path + "/");
    if (!files[path + "/cgroup.procs"].empty() ||
        (child != dirs.end() && child->starts_with(path + "/")))
      return Error(EBUSY, "rmdir", path);
    dirs.erase(path);
    std::erase_if(
        files, [&](const auto& f) { return f.first.starts_with(path + "/"); });
    return Ok();
  }

  Result<UniqueFd> OpenForWrite(const std::string& path) override {
    if (auto e = Failure("open", path)) return *e;
    if (!files.count(path)) return Error(ENOENT, "open", path);
    return sys::Open("/dev/null", O_WRONLY);
  }

 private:
  std::optional<Error> Failure(const char* op, const std::string& path) {
    auto f = fail.find(path);
    if (f == fail.end()) return std::nullopt;
    return Error(f->second, op, path);
  }
  static std::string Without(const std::string& procs, std::string_view pid) {
    std::string out;
    for (const auto& line : Split(procs))
      if (line != pid) out += line + "\n";
    return out;
  }
  static Strings Split(const std::string& text) {
    Strings out;
    size_t start = 0, end;
    while ((end = text.find_first_of(" \n", start)) != std::string::npos) {
      if (end > start) out.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    if (start < text.size()) out.push_back(text.substr(start));
    return out;
  }
  static std::string Apply(const std::string& enabled, std::string_view ops) {
    std::set<std::string> on;
    for (const auto& c : Split(enabled))
      on.insert(c);
    for (const auto& op : Split(std::string(ops))) {
      if (op[0] == '+') on.insert(op.substr(1));
      if (op[0] == '-') on.erase(op.substr(1));
    }
    std::string out;
    for (const auto& c : on)
      out += (out.empty() ? "" : " ") + c;
    return out;
  }
};

constexpr pid_t kSelf = 4242;
constexpr char kMemV1[] = "/sys/fs/cgroup/memory/process_api/abc";
constexpr char kPidsV1[] = "/sys/fs/cgroup/pids";

class ContainerCgroupTest : public ::testing::Test {
 protected:
  ContainerCgroupTest() {
    hybrid_.fs = &fs_;
    hybrid_.proc_self_cgroup = kHybridCgroup;
    hybrid_.mountinfo = kHybridMountinfo;
    hybrid_.self = kSelf;
    v2_ = hybrid_;
    v2_.proc_self_cgroup = kV2Cgroup;
    v2_.mountinfo = kV2Mountinfo;
  }

  // This machine: v1 memory and pids, v2 with hugetlb only.
  void SetUpHybrid() {
    fs_.AddCgroup(kMemV1, "", "1\n");
    fs_.AddCgroup(kPidsV1, "", "1\n");
    fs_.AddCgroup("/sys/fs/cgroup/unified", "hugetlb", "1\n");
    fs_.roots.insert("/sys/fs/cgroup/unified");
  }

  // A delegated v2 scope holding `procs`.
  std::string SetUpScope(const std::string& procs) {
    std::string scope = std::string("/sys/fs/cgroup") + kScope;
    fs_.AddCgroup(scope, "cpu memory pids", procs);
    return scope;
  }

  static ResourceLimits Limits(std::optional<uint64_t> memory,
                               std::optional<uint64_t> pids) {
    ResourceLimits l;
    l.memory_bytes = memory;
    l.pids = pids;
    return l;
  }

  FakeCgroupFs fs_;
  CgroupHost hybrid_, v2_;
  std::string warning_ = "stale";
};

TEST_F(ContainerCgroupTest, NoLimitsDoNothing) {
  auto cg = ContainerCgroup::Create("c1", {}, hybrid_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(warning_, "");
  EXPECT_TRUE(cg->procs_fds().empty());
  EXPECT_TRUE(fs_.log.empty());
}

TEST_F(ContainerCgroupTest, RefusesBadInput) {
  SetUpHybrid();
  for (const char* id : {"", "a/b", "..", "."}) {
    auto cg = ContainerCgroup::Create(id, Limits(64 << 20, std::nullopt),
                                      hybrid_, &warning_);
    ASSERT_FALSE(cg) << id;
    EXPECT_EQ(cg.error().code(), EINVAL);
  }
  auto zero = ContainerCgroup::Create("c1", Limits(std::nullopt, 0), hybrid_,
                                      &warning_);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), EINVAL);
  EXPECT_TRUE(fs_.log.empty());
}

TEST_F(ContainerCgroupTest, V1AsRootSetsBothLimitsAndRemovesThem) {
  SetUpHybrid();
  std::string mem = std::string(kMemV1) + "/strata-c1";
  std::string pids = std::string(kPidsV1) + "/strata-c1";
  {
    auto cg =
        ContainerCgroup::Create("c1", Limits(32 << 20, 64), hybrid_, &warning_);
    ASSERT_TRUE(cg) << cg.error().ToString();
    EXPECT_EQ(warning_, "");
    EXPECT_EQ(cg->dirs(), (Strings{mem, pids}));
    EXPECT_EQ(cg->procs_fds().size(), 2u);
    EXPECT_EQ(fs_.files[mem + "/memory.limit_in_bytes"], "33554432");
    EXPECT_EQ(fs_.files[mem + "/memory.memsw.limit_in_bytes"], "33554432");
    EXPECT_EQ(fs_.files[pids + "/pids.max"], "64");
    EXPECT_FALSE(fs_.files.count(mem + "/pids.max"));
    EXPECT_EQ(fs_.files["/sys/fs/cgroup/unified/cgroup.subtree_control"], "");
  }  // the destructor removes them
  EXPECT_FALSE(fs_.dirs.count(mem));
  EXPECT_FALSE(fs_.dirs.count(pids));
}

TEST_F(ContainerCgroupTest, V1WithoutSwapAccounting) {
  SetUpHybrid();
  fs_.absent.insert("memory.memsw.limit_in_bytes");
  auto cg = ContainerCgroup::Create("c1", Limits(32 << 20, std::nullopt),
                                    hybrid_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(warning_, "");
  EXPECT_EQ(cg->dirs(), Strings{std::string(kMemV1) + "/strata-c1"});
}

TEST_F(ContainerCgroupTest, V1NotDelegatedWarnsInOneLine) {
  SetUpHybrid();
  fs_.fail[std::string(kPidsV1) + "/strata-c1"] = EACCES;
  auto cg =
      ContainerCgroup::Create("c1", Limits(32 << 20, 64), hybrid_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(warning_,
            "--pids is not applied: mkdir: /sys/fs/cgroup/pids/strata-c1: "
            "Permission denied (run as root, or have root delegate a cgroup "
            "to this user: chown the directory, its cgroup.procs and tasks)");
  EXPECT_EQ(cg->dirs(), Strings{std::string(kMemV1) + "/strata-c1"});
}

TEST_F(ContainerCgroupTest, BothRefusedMakeOneLine) {
  SetUpHybrid();
  fs_.fail[std::string(kMemV1) + "/strata-c1"] = EACCES;
  fs_.fail[std::string(kPidsV1) + "/strata-c1"] = EROFS;
  auto cg =
      ContainerCgroup::Create("c1", Limits(32 << 20, 64), hybrid_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_TRUE(warning_.starts_with("--memory is not applied: mkdir: "))
      << warning_;
  EXPECT_NE(warning_.find("; --pids is not applied: mkdir: "),
            std::string::npos)
      << warning_;
  EXPECT_NE(warning_.find("Read-only file system"), std::string::npos);
  EXPECT_EQ(warning_.find('\n'), std::string::npos);
  EXPECT_TRUE(cg->dirs().empty());
}

TEST_F(ContainerCgroupTest, MissingControllerWarns) {
  SetUpHybrid();
  hybrid_.mountinfo =
      "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup c rw,memory\n";
  auto cg = ContainerCgroup::Create("c1", Limits(std::nullopt, 64), hybrid_,
                                    &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(warning_,
            "--pids is not applied: no mounted cgroup hierarchy has the pids "
            "controller (mount its cgroup v1 hierarchy, or enable it in "
            "cgroup v2)");
}

TEST_F(ContainerCgroupTest, UnreadableProcSelfCgroupWarns) {
  SetUpHybrid();
  hybrid_.proc_self_cgroup = "garbage\n";
  auto cg =
      ContainerCgroup::Create("c1", Limits(32 << 20, 64), hybrid_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(warning_,
            "--memory and --pids are not applied: parse /proc/self/cgroup: "
            "garbage: Invalid argument");
  EXPECT_TRUE(fs_.log.empty());
}

TEST_F(ContainerCgroupTest, LimitRefusedByTheKernelFailsAndLeavesNothing) {
  SetUpHybrid();
  fs_.fail[std::string(kPidsV1) + "/strata-c1/pids.max"] = EINVAL;
  auto cg =
      ContainerCgroup::Create("c1", Limits(32 << 20, 64), hybrid_, &warning_);
  ASSERT_FALSE(cg);
  EXPECT_EQ(cg.error().code(), EINVAL);
  EXPECT_FALSE(fs_.dirs.count(std::string(kMemV1) + "/strata-c1"));
  EXPECT_FALSE(fs_.dirs.count(std::string(kPidsV1) + "/strata-c1"));
}

TEST_F(ContainerCgroupTest, StaleDirectoryIsReplacedOneInUseIsNot) {
  SetUpHybrid();
  fs_.AddCgroup(std::string(kMemV1) + "/strata-c1", "");           // stale
  fs_.AddCgroup(std::string(kPidsV1) + "/strata-c1", "", "77\n");  // in use
  auto cg =
      ContainerCgroup::Create("c1", Limits(32 << 20, 64), hybrid_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(cg->dirs(), Strings{std::string(kMemV1) + "/strata-c1"});
  EXPECT_TRUE(
      warning_.starts_with("--pids is not applied: mkdir: "
                           "/sys/fs/cgroup/pids/strata-c1: in use"))
      << warning_;
  ASSERT_TRUE(cg->Remove());
  EXPECT_TRUE(fs_.dirs.count(std::string(kPidsV1) + "/strata-c1"));  // kept
}

TEST_F(ContainerCgroupTest, RemoveWaitsForExitingTasks) {
  SetUpHybrid();
  auto cg = ContainerCgroup::Create("c1", Limits(std::nullopt, 64), hybrid_,
                                    &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  std::string dir = std::string(kPidsV1) + "/strata-c1";
  fs_.files[dir + "/cgroup.procs"] = "99\n";
  Status busy = cg->Remove();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), EBUSY);
  EXPECT_GT(std::count(fs_.log.begin(), fs_.log.end(), "rmdir " + dir), 50);
  EXPECT_TRUE(cg->Remove());  // the second call does nothing
}

TEST_F(ContainerCgroupTest, V2WithControllersEnabledAlready) {
  std::string scope = SetUpScope("");
  fs_.files[scope + "/cgroup.subtree_control"] = "memory pids";
  auto cg = ContainerCgroup::Create("c1", Limits(32 << 20, 64), v2_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(warning_, "");
  EXPECT_EQ(cg->dirs(), Strings{scope + "/strata-c1"});
  EXPECT_EQ(fs_.files[scope + "/strata-c1/memory.max"], "33554432");
  EXPECT_EQ(fs_.files[scope + "/strata-c1/memory.swap.max"], "0");
  EXPECT_EQ(fs_.files[scope + "/strata-c1/pids.max"], "64");
}

TEST_F(ContainerCgroupTest, V2MovesTheCallerOutOfItsOwnCgroupAndBack) {
  std::string scope = SetUpScope("4242\n");
  std::string leaf = scope + "/strata-c1.launcher";
  {
    auto cg =
        ContainerCgroup::Create("c1", Limits(32 << 20, 64), v2_, &warning_);
    ASSERT_TRUE(cg) << cg.error().ToString();
    EXPECT_EQ(warning_, "");
    EXPECT_EQ(cg->dirs(), Strings{scope + "/strata-c1"});
    EXPECT_EQ(fs_.files[leaf + "/cgroup.procs"], "4242\n");
    EXPECT_EQ(fs_.files[scope + "/cgroup.procs"], "");
    EXPECT_EQ(fs_.files[scope + "/cgroup.subtree_control"], "memory pids");
  }
  EXPECT_EQ(fs_.files[scope + "/cgroup.procs"], "4242\n");
  EXPECT_EQ(fs_.files[scope + "/cgroup.subtree_control"], "");
  EXPECT_EQ(fs_.dirs, std::set<std::string>{scope});
}

TEST_F(ContainerCgroupTest, V2WithOtherProcessesWarns) {
  std::string scope = SetUpScope("4242\n17\n");
  auto cg = ContainerCgroup::Create("c1", Limits(32 << 20, 64), v2_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_EQ(warning_,
            "--memory and --pids are not applied: cgroup: " + scope +
                " holds other processes, and cgroup v2 gives controllers only "
                "to cgroups without processes: Device or resource busy (run "
                "strata in a cgroup of its own: systemd-run --user --scope -p "
                "Delegate=yes strata run ...)");
  EXPECT_EQ(fs_.dirs, std::set<std::string>{scope});
}

TEST_F(ContainerCgroupTest, V2NotDelegatedWarns) {
  std::string scope = SetUpScope("4242\n");
  fs_.fail[scope + "/cgroup.subtree_control"] = EACCES;
  auto cg =
      ContainerCgroup::Create("c1", Limits(std::nullopt, 64), v2_, &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  EXPECT_TRUE(warning_.starts_with("--pids is not applied: write: "))
      << warning_;
  EXPECT_NE(warning_.find("systemd-run --user --scope -p Delegate=yes"),
            std::string::npos);
}

TEST_F(ContainerCgroupTest, V2LeafMoveUndoneWhenTheLimitFails) {
  std::string scope = SetUpScope("4242\n");
  fs_.fail[scope + "/strata-c1/memory.max"] = EINVAL;
  auto cg = ContainerCgroup::Create("c1", Limits(32 << 20, std::nullopt), v2_,
                                    &warning_);
  ASSERT_FALSE(cg);
  EXPECT_EQ(cg.error().code(), EINVAL);
  EXPECT_EQ(fs_.files[scope + "/cgroup.procs"], "4242\n");
  EXPECT_EQ(fs_.files[scope + "/cgroup.subtree_control"], "");
  EXPECT_EQ(fs_.dirs, std::set<std::string>{scope});
}

TEST_F(ContainerCgroupTest, MovedObjectOwnsTheCgroups) {
  SetUpHybrid();
  auto cg = ContainerCgroup::Create("c1", Limits(std::nullopt, 64), hybrid_,
                                    &warning_);
  ASSERT_TRUE(cg) << cg.error().ToString();
  ContainerCgroup moved = std::move(*cg);
  ContainerCgroup other;
  other = std::move(moved);
  EXPECT_EQ(other.procs_fds().size(), 1u);
  EXPECT_TRUE(moved.procs_fds().empty());  // NOLINT(bugprone-use-after-move)
  std::string dir = std::string(kPidsV1) + "/strata-c1";
  EXPECT_TRUE(fs_.dirs.count(dir));
  ASSERT_TRUE(other.Remove());
  EXPECT_FALSE(fs_.dirs.count(dir));
}

TEST(JoinCgroupsTest, WritesZeroToEachFile) {
  char path[] = "/tmp/strata-join-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  UniqueFd owned(fd);
  ::unlink(path);
  int fds[] = {fd, fd};
  ASSERT_TRUE(JoinCgroups(fds));
  char buf[8] = {};
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 0), 2);
  EXPECT_EQ(std::string(buf), "00");
  int closed[] = {-1};
  Status s = JoinCgroups(closed);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), EBADF);
}

}  // namespace
}  // namespace strata::launcher
