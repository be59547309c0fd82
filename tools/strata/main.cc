// strata: the command line of the store (design §3). This file holds the
// global options, logging and dispatch; the commands live in cmd_*.cc.

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "layerdb/store.h"
#include "tools/launcher/userns_keeper.h"
#include "tools/strata/commands.h"

namespace strata::cli {

void AddGlobalOptions(CLI::App& cmd, GlobalOptions& global) {
  cmd.add_option("--root", global.root,
                 "store directory (default: $STRATA_ROOT, else "
                 "/var/lib/strata for root, ~/.local/share/strata otherwise)");
  cmd.add_flag("-v,--verbose", global.verbose, "log at debug level");
  cmd.add_option("--log-level", global.log_level, "log level")
      ->check(CLI::IsMember(
          {"trace", "debug", "info", "warn", "error", "critical", "off"}));
}

CLI::App* AddCommand(CLI::App& parent, const std::string& name,
                     const std::string& description, Context& ctx) {
  CLI::App* cmd = parent.add_subcommand(name, description);
  AddGlobalOptions(*cmd, ctx.global);
  return cmd;
}

Result<std::unique_ptr<layerdb::Store>> OpenStore(const GlobalOptions& global,
                                                  layerdb::Store::Mode mode) {
  auto store = layerdb::Store::Open(global.root, mode);
  if (store || mode != layerdb::Store::Mode::kReadOnly ||
      store.error().code() != ENOENT)
    return store;
  spdlog::debug("open store: {}", store.error().ToString());
  return Error(ENOENT, "open store",
               "no store at " + global.root + " (nothing imported yet)");
}

namespace {

// Loggers: "strata" (the default) and "layerdb", on stderr. Levels: warn,
// then $SPDLOG_LEVEL (e.g. "info,layerdb=debug"), then -v / --log-level.
void SetUpLogging() {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto strata = std::make_shared<spdlog::logger>("strata", sink);
  auto layerdb = std::make_shared<spdlog::logger>("layerdb", sink);
  spdlog::set_default_logger(strata);
  spdlog::register_logger(layerdb);
  spdlog::set_pattern("%n: %^%l%$: %v");
  spdlog::set_level(spdlog::level::warn);
  spdlog::flush_on(spdlog::level::warn);
  spdlog::cfg::load_env_levels();
}

void ApplyLogLevel(const GlobalOptions& global) {
  if (!global.log_level.empty()) {
    spdlog::set_level(spdlog::level::from_str(global.log_level));
  } else if (global.verbose) {
    spdlog::set_level(spdlog::level::debug);
  }
}

int Run(int argc, char** argv) {
  Context ctx;
  ctx.global.root = layerdb::DefaultStoreRoot();
  CLI::App app("strata: container images as directories, without overlayfs",
               "strata");
  app.require_subcommand(1);
  AddGlobalOptions(app, ctx.global);
  std::vector<std::string> args(argv, argv + argc);
#ifdef STRATA_ARCHIVE_TOOL
  AddImportCommands(app, ctx);
  AddExportCommands(app, ctx);
#else
  AddArchiveForwarders(app, ctx, args);
#endif
  AddImageCommands(app, ctx);
  AddLifecycleCommands(app, ctx);
  AddMountCommands(app, ctx);
  AddRunCommands(app, ctx);
  AddContainerCommands(app, ctx);
  AddCommitCommands(app, ctx);
  // `mount -t fuse.strata IMAGE MNT -o upper=U,work=W` makes mount.fuse3 run
  // "strata IMAGE MNT -o OPTIONS": that is `strata mount`.
  auto is_command = [&](const std::string& name) {
    for (const CLI::App* sub : app.get_subcommands({}))
      if (sub->check_name(name)) return true;
    return false;
  };
  if (args.size() >= 3 && !args[1].starts_with("-") && !is_command(args[1])) {
    args.insert(args.begin() + 1, "mount");
  }
  std::vector<char*> argp;
  for (auto& a : args)
    argp.push_back(a.data());
  try {
    app.parse(static_cast<int>(argp.size()), argp.data());
  } catch (const CLI::ParseError& e) {
    // --help exits 0 through CLI11; a usage error is one line and exit 2,
    // which scripts can tell apart from a failed operation (exit 1).
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success))
      return app.exit(e);
    fmt::print(stderr, "strata: {} (see --help)\n", e.what());
    return 2;
  }
  ApplyLogLevel(ctx.global);
  if (!ctx.action) return 0;
  Result<int> status = ctx.action();
  if (!status) {
    fmt::print(stderr, "strata: {}\n", status.error().ToString());
    return 1;
  }
  return *status;
}

}  // namespace
}  // namespace strata::cli

int main(int argc, char** argv) {
  // The user namespace keeper is strata exec'd under another name
  // (userns_keeper.h): no command line, no logging.
  if (argc > 0 && std::string_view(argv[0]) == strata::launcher::kKeeperName)
    return strata::launcher::RunKeeper(argc, argv);
  strata::cli::SetUpLogging();
  try {
    return strata::cli::Run(argc, argv);
  } catch (const std::exception& e) {
    spdlog::critical("unexpected exception: {}", e.what());
  } catch (...) {
    spdlog::critical("unexpected exception");
  }
  return 1;
}
