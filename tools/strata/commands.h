#pragma once

// The strata command line (design §3). main.cc parses the global options and
// dispatches; each cmd_*.cc adds one group of subcommands. A subcommand's
// callback only records what to run (Context::action); main runs it once
// logging is set up, and turns an Error into one line on stderr and exit 1.
// Commands stay thin: parse, call layerdb, print.

#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "layerdb/base/error.h"
#include "layerdb/store.h"

namespace strata::cli {

struct GlobalOptions {
  std::string root;  // --root, default layerdb::DefaultStoreRoot()
  bool verbose = false;
  std::string log_level;
};

// Runs the chosen command; the value is the exit status.
using Action = std::function<Result<int>()>;

struct Context {
  GlobalOptions global;
  Action action;
};

// Adds --root, -v and --log-level to `cmd`, so that every command accepts
// them after its name as well as before it.
void AddGlobalOptions(CLI::App& cmd, GlobalOptions& global);

// Adds a subcommand of `parent` that accepts the global options.
CLI::App* AddCommand(CLI::App& parent, const std::string& name,
                     const std::string& description, Context& ctx);

// Opens the store at --root. A read-only open of a store that does not exist
// yet fails with ENOENT, "no store at DIR (nothing imported yet)".
Result<std::unique_ptr<layerdb::Store>> OpenStore(const GlobalOptions& global,
                                                  layerdb::Store::Mode mode);

void AddImportCommands(CLI::App& app, Context& ctx);     // cmd_import.cc
void AddImageCommands(CLI::App& app, Context& ctx);      // cmd_images.cc
void AddExportCommands(CLI::App& app, Context& ctx);     // cmd_export.cc
void AddLifecycleCommands(CLI::App& app, Context& ctx);  // cmd_lifecycle.cc
void AddMountCommands(CLI::App& app, Context& ctx);      // cmd_mount.cc
void AddRunCommands(CLI::App& app, Context& ctx);        // cmd_run.cc
void AddContainerCommands(CLI::App& app, Context& ctx);  // cmd_containers.cc
void AddCommitCommands(CLI::App& app, Context& ctx);     // cmd_commit.cc
// In `strata` (not `strata-archive`): import and export exec strata-archive
// with `argv`.
void AddArchiveForwarders(
    CLI::App& app, Context& ctx,
    const std::vector<std::string>& argv);  // cmd_forward.cc

}  // namespace strata::cli
