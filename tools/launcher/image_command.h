#pragma once

// The command, environment, working directory and user of a container: the
// OCI image config (Entrypoint, Cmd, Env, WorkingDir, User) with the
// overrides `docker run` applies (image-spec config.md; docker run
// reference):
//   - CMD ARGS given: they replace Cmd; the Entrypoint stays;
//   - --entrypoint P given: it replaces the Entrypoint and drops the
//     image's Cmd (ARGS, if any, follow P);
//   - -e K=V replace or add to Env; a default PATH is added when the image
//     has none; -w and -u replace WorkingDir and User.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerdb/base/error.h"

namespace strata::launcher {

struct CommandOverrides {
  std::vector<std::string> args;          // after IMAGE on the command line
  std::optional<std::string> entrypoint;  // --entrypoint
  std::vector<std::string> env;           // -e K=V and --env-file lines
  std::string workdir;                    // -w
  std::string user;                       // -u
};

struct ContainerCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  std::string user;
};

inline constexpr const char* kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Errors: EINVAL when neither the image nor the flags give a command, or an
// -e value has no "=" (with the value named).
Result<ContainerCommand> ResolveCommand(const nlohmann::json& image_config,
                                        const CommandOverrides& o);

// Reads an --env-file: K=V lines; blank lines and # comments skipped; a bare
// K takes K from `host_env` (as docker does). Errors: the file's errno,
// EINVAL for a malformed line (named by number).
Result<std::vector<std::string>> ReadEnvFile(const std::string& path);

}  // namespace strata::launcher
