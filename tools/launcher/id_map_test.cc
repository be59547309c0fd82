#include "tools/launcher/id_map.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "layerdb/base/unique_fd.h"

namespace strata::launcher {
namespace {

TEST(IdMapTest, FindsTheUsersRange) {
  std::string text = "alice:100000:65536\nbob:165536:65536\n1003:300000:10\n";
  auto r = FindSubRange(text, "bob", 1002);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->start, 165536u);
  EXPECT_EQ(r->count, 65536u);
  auto byid = FindSubRange(text, "carol", 1003);
  ASSERT_TRUE(byid);
  EXPECT_EQ(byid->start, 300000u);
  EXPECT_FALSE(FindSubRange(text, "dave", 1004));
}

// A child in a user namespace of its own, mapped to the caller's single id
// (what any user may write), until the end of the test.
class MappedChild {
 public:
  MappedChild() {
    int ready[2], go[2];
    if (::pipe(ready) != 0 || ::pipe(go) != 0) return;
    UniqueFd ready_r(ready[0]), ready_w(ready[1]), go_r(go[0]);
    go_w_.Reset(go[1]);
    pid_ = ::fork();
    if (pid_ == 0) {
      go_w_.Reset();
      char c = ::unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
      (void)!::write(ready_w.get(), &c, 1);
      (void)!::read(go_r.get(), &c, 1);  // EOF when the test ends
      _exit(0);
    }
    ready_w.Reset();
    char c = 0;
    if (::read(ready_r.get(), &c, 1) != 1 || c != 'y') return;
    std::string proc = "/proc/" + std::to_string(pid_) + "/";
    mapped_ =
        Write(proc + "setgroups", "deny") &&
        Write(proc + "uid_map", "0 " + std::to_string(::getuid()) + " 1") &&
        Write(proc + "gid_map", "0 " + std::to_string(::getgid()) + " 1");
  }
  ~MappedChild() {
    go_w_.Reset();
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  bool mapped() const { return mapped_; }

 private:
  static bool Write(const std::string& path, const std::string& text) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    return fd.valid() && ::write(fd.get(), text.data(), text.size()) ==
                             static_cast<ssize_t>(text.size());
  }
  pid_t pid_ = -1;
  bool mapped_ = false;
  UniqueFd go_w_;
};

TEST(IdMapTest, TellsWhetherANamespaceHasThePlannedMaps) {
  MappedChild child;
  if (!child.mapped())
    GTEST_SKIP() << "cannot make a user namespace here (are unprivileged "
                    "user namespaces enabled?)";
  IdMapPlan single;
  single.uid = ::getuid();
  single.gid = ::getgid();
  EXPECT_TRUE(HasPlannedMaps(child.pid(), single));
  IdMapPlan full = single;
  full.uids = full.gids = SubRange{100000, 65536};
  EXPECT_FALSE(HasPlannedMaps(child.pid(), full));
  IdMapPlan other = single;
  other.uid += 1;
  EXPECT_FALSE(HasPlannedMaps(child.pid(), other));
  EXPECT_FALSE(HasPlannedMaps(::getpid(), single));  // the initial namespace
}

}  // namespace
}  // namespace strata::launcher
