#include "tools/launcher/image_command.h"

#include <gtest/gtest.h>

#include "tools/launcher/container_user.h"

namespace strata::launcher {
namespace {

using Strings = std::vector<std::string>;

nlohmann::json Config(nlohmann::json inner) {
  return nlohmann::json{{"config", std::move(inner)}};
}

TEST(ResolveCommandTest, EntrypointThenCmd) {
  auto c = ResolveCommand(
      Config({{"Entrypoint", {"/bin/ep"}}, {"Cmd", {"a", "b"}}}), {});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->argv, (Strings{"/bin/ep", "a", "b"}));
}

TEST(ResolveCommandTest, ArgsReplaceCmdButKeepEntrypoint) {
  CommandOverrides o;
  o.args = {"x"};
  auto c =
      ResolveCommand(Config({{"Entrypoint", {"/bin/ep"}}, {"Cmd", {"a"}}}), o);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->argv, (Strings{"/bin/ep", "x"}));
}

TEST(ResolveCommandTest, EntrypointFlagDropsTheImagesCmd) {
  CommandOverrides o;
  o.entrypoint = "/bin/sh";
  auto c =
      ResolveCommand(Config({{"Entrypoint", {"/bin/ep"}}, {"Cmd", {"a"}}}), o);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->argv, (Strings{"/bin/sh"}));
}

TEST(ResolveCommandTest, NoCommandIsAnError) {
  auto c = ResolveCommand(Config({{"Env", {"A=1"}}}), {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), EINVAL);
}

TEST(ResolveCommandTest, EnvDefaultsAndOverrides) {
  CommandOverrides o;
  o.args = {"true"};
  o.env = {"A=2", "B=3"};
  auto c = ResolveCommand(
      Config({{"Env", {"A=1"}}, {"WorkingDir", "/srv"}, {"User", "nobody"}}),
      o);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->env, (Strings{kDefaultPath, "A=2", "B=3"}));
  EXPECT_EQ(c->cwd, "/srv");
  EXPECT_EQ(c->user, "nobody");
  o.env = {"novalue"};
  EXPECT_FALSE(ResolveCommand(Config({}), o));
}

TEST(ContainerUserTest, NamesComeFromTheImagesFiles) {
  std::string passwd =
      "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
  std::string group = "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\n";
  auto u = ResolveUser("app", passwd, group);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1001u);
  EXPECT_EQ(u->home, "/home/app");
  EXPECT_EQ(u->groups, (std::vector<gid_t>{10}));
  auto g = ResolveUser("app:wheel", passwd, group);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->gid, 10u);
  auto n = ResolveUser("4242:77", passwd, group);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->uid, 4242u);
  EXPECT_EQ(n->gid, 77u);
  EXPECT_FALSE(ResolveUser("ghost", passwd, group));
  EXPECT_FALSE(ResolveUser("app:ghosts", passwd, group));
}

}  // namespace
}  // namespace strata::launcher
