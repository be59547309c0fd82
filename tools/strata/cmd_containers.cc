// strata ps / strata rm: the containers of the store.

#include <ctime>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tools/launcher/containers.h"
#include "tools/strata/commands.h"
#include "tools/strata/output.h"

namespace strata::cli {

namespace {

std::string Status(const launcher::ContainerInfo& c) {
  if (c.running) return "running";
  if (c.exit_status) return fmt::format("exited ({})", *c.exit_status);
  return "created";
}

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v)
    s += (s.empty() ? "" : " ") + a;
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

Result<int> Ps(const GlobalOptions& global, bool json) {
  STRATA_ASSIGN_OR_RETURN(auto all, launcher::ListContainers(global.root));
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& c : all)
      arr.push_back(launcher::ToJson(c));
    fmt::print("{}\n", arr.dump(2));
    return 0;
  }
  fmt::print("{:<16} {:<20} {:<42} {}\n", "CONTAINER", "IMAGE", "COMMAND",
             "STATUS");
  for (const auto& c : all)
    fmt::print("{:<16} {:<20} {:<42} {}\n", c.id, c.image, Joined(c.command),
               Status(c));
  return 0;
}

}  // namespace

void AddContainerCommands(CLI::App& app, Context& ctx) {
  auto json = std::make_shared<bool>(false);
  CLI::App* ps = AddCommand(app, "ps", "list containers", ctx);
  ps->add_flag("--json", *json, "print JSON");
  ps->callback([&ctx, json] {
    ctx.action = [&ctx, json] { return Ps(ctx.global, *json); };
  });

  auto rm = std::make_shared<std::pair<std::vector<std::string>, bool>>();
  CLI::App* rmc =
      AddCommand(app, "rm", "remove containers (their changes are lost)", ctx);
  rmc->add_option("CONTAINER", rm->first, "container ids or names")->required();
  rmc->add_flag("-f,--force", rm->second, "kill a running container first");
  rmc->callback([&ctx, rm] {
    ctx.action = [&ctx, rm]() -> Result<int> {
      for (const auto& id : rm->first)
        STRATA_RETURN_IF_ERROR(
            launcher::RemoveContainer(ctx.global.root, id, rm->second));
      return 0;
    };
  });
}

}  // namespace strata::cli
