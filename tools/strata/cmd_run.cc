// strata run: a command in a container made from an image (design §3, "The
// launcher"). The container's upper and work directories live in the store
// (containers/<id>/); --rm removes them afterwards.

#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tools/launcher/cgroup_limits.h"
#include "tools/launcher/containers.h"
#include "tools/launcher/image_command.h"
#include "tools/launcher/launcher.h"
#include "tools/strata/commands.h"

namespace strata::cli {

namespace {

struct RunArgs {
  std::string name, hostname, net = "host", entrypoint, workdir, user;
  std::string memory, pids;  // "" when not given
  std::vector<std::string> env, env_files, volumes, tmpfs, command;
  bool rm = false, read_only = false, has_entrypoint = false, init = false;
  bool tty = false, no_tty = false;
  std::string image;
};

std::string RandomId() {
  std::random_device rd;
  return fmt::format("{:08x}{:04x}", rd(), rd() & 0xffff);
}

bool IsValidName(const std::string& n) {
  if (n.empty() || n.size() > 64 || n[0] == '.' || n[0] == '-') return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' &&
        c != '-')
      return false;
  return true;
}

Result<launcher::Volume> ParseVolume(const std::string& v) {
  launcher::Volume vol;
  size_t a = v.find(':');
  if (a == std::string::npos)
    return Error(EINVAL, "run", "-v " + v + ": expected HOST:CTR[:ro]");
  vol.host = v.substr(0, a);
  std::string rest = v.substr(a + 1);
  if (rest.ends_with(":ro")) {
    vol.read_only = true;
    rest.resize(rest.size() - 3);
  } else if (rest.ends_with(":rw")) {
    rest.resize(rest.size() - 3);
  }
  vol.container = rest;
  if (vol.host.empty() || vol.container.empty() || vol.container[0] != '/')
    return Error(EINVAL, "run",
                 "-v " + v + ": expected HOST:/container/path[:ro]");
  char real[4096];
  if (::realpath(vol.host.c_str(), real) == nullptr)
    return Error::FromErrno("run", "volume " + vol.host);
  vol.host = real;
  return vol;
}

Result<int> RunContainer(const GlobalOptions& global, const RunArgs& a) {
  // First: its id map helpers run while the store opens and the container
  // is made.
  STRATA_ASSIGN_OR_RETURN(auto user_ns,
                          launcher::MappedUserNamespace::Create());
  launcher::LaunchSpec spec;
  {
    STRATA_ASSIGN_OR_RETURN(auto store,
                            OpenStore(global, layerdb::Store::Mode::kReadOnly));
    STRATA_ASSIGN_OR_RETURN(auto info, store->FindImage(a.image));
    if (!info) return Error(ENOENT, "run", "no image " + a.image);
    launcher::CommandOverrides o;
    o.args = a.command;
    if (a.has_entrypoint) o.entrypoint = a.entrypoint;
    for (const auto& f : a.env_files) {
      STRATA_ASSIGN_OR_RETURN(auto lines, launcher::ReadEnvFile(f));
      o.env.insert(o.env.end(), lines.begin(), lines.end());
    }
    o.env.insert(o.env.end(), a.env.begin(), a.env.end());
    o.workdir = a.workdir;
    o.user = a.user;
    STRATA_ASSIGN_OR_RETURN(auto cmd,
                            launcher::ResolveCommand(info->config, o));
    spec.argv = cmd.argv;
    spec.env = cmd.env;
    spec.cwd = cmd.cwd;
    spec.user = cmd.user;
    spec.image = info->name;
    spec.view = info->view;
  }  // the store closes before the fork: LMDB must not cross one
  char root[4096];
  if (::realpath(global.root.c_str(), root) == nullptr)
    return Error::FromErrno("run", "store " + global.root);
  spec.store_root = root;
  if (!a.name.empty() && !IsValidName(a.name))
    return Error(EINVAL, "run",
                 "container name " + a.name + ": use letters, digits, _ . -");
  spec.container_id = a.name.empty() ? RandomId() : a.name;
  spec.container_dir = spec.store_root + "/containers/" + spec.container_id;
  if (a.net != "host" && a.net != "none")
    return Error(EINVAL, "run", "--net " + a.net + ": host or none");
  STRATA_ASSIGN_OR_RETURN(auto limits, launcher::ParseLimits(a.memory, a.pids));
  spec.hostname =
      a.hostname.empty() ? spec.container_id.substr(0, 12) : a.hostname;
  for (const auto& v : a.volumes) {  // checked before anything is created
    STRATA_ASSIGN_OR_RETURN(auto vol, ParseVolume(v));
    spec.volumes.push_back(vol);
  }
  launcher::ForwardedSignalsHold hold;  // from here on, --rm must run
  STRATA_RETURN_IF_ERROR(launcher::CreateContainer(spec));
  spec.net_none = a.net == "none";
  spec.read_only = a.read_only;
  spec.tmpfs = a.tmpfs;
  spec.init = a.init;
  // As `podman run -t`, automatic when the caller sits at a terminal.
  spec.tty = !a.no_tty && (a.tty || (::isatty(0) && ::isatty(1)));
  // Made here, before the launcher forks, and removed once the container
  // has exited; the container's PID 1 joins it.
  std::string warning;
  auto cgroup =
      launcher::ContainerCgroup::Create(spec.container_id, limits, &warning);
  if (!cgroup) {
    (void)launcher::RemoveContainer(spec.store_root, spec.container_id, false);
    return cgroup.error();
  }
  if (!warning.empty()) fmt::print(stderr, "strata: warning: {}\n", warning);
  if (auto s = launcher::RecordCgroups(spec.container_dir, cgroup->leftovers());
      !s)
    fmt::print(stderr, "strata: warning: {}\n", s.error().ToString());
  spec.cgroup_procs = cgroup->procs_fds();
  spec.remove_when_ended = a.rm;
  bool ended = false;
  auto when_ended = [&] {  // while the FUSE daemon exits
    ended = true;
    if (auto removed = cgroup->Remove(); !removed)
      fmt::print(stderr, "strata: warning: {}\n", removed.error().ToString());
    if (!a.rm) return;
    auto removed =
        launcher::RemoveEndedContainer(spec.store_root, spec.container_id);
    if (!removed)
      fmt::print(stderr, "strata: {}\n", removed.error().ToString());
  };
  auto status = launcher::Launch(spec, user_ns, when_ended);
  if (!ended) when_ended();  // Launch failed before the container ran
  return status;
}

}  // namespace

void AddRunCommands(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<RunArgs>();
  // Not AddCommand: -v is --volume here (as in docker run), so the global
  // options come without their -v short form.
  CLI::App* run =
      app.add_subcommand("run", "run a command in a container of an image");
  run->add_option("--root", ctx.global.root, "store directory");
  run->add_flag("--verbose", ctx.global.verbose, "log at debug level");
  run->add_option("--log-level", ctx.global.log_level, "log level");
  run->add_option("--name", a->name, "container name (default: a random id)");
  run->add_flag("--rm", a->rm, "remove the container when it ends");
  run->add_option("-e,--env", a->env, "set KEY=VALUE in the environment")
      ->allow_extra_args(false);
  run->add_option("--env-file", a->env_files,
                  "read KEY=VALUE lines from a file")
      ->allow_extra_args(false);
  run->add_option("-w,--workdir", a->workdir,
                  "working directory in the container");
  run->add_option("-u,--user", a->user, "USER[:GROUP], names or numbers");
  run->add_option("-v,--volume", a->volumes, "bind HOST:CTR[:ro]")
      ->allow_extra_args(false);
  run->add_option("--tmpfs", a->tmpfs, "a tmpfs at this container path")
      ->allow_extra_args(false);
  run->add_option("--net", a->net, "host (default) or none (loopback only)");
  run->add_option("--hostname", a->hostname, "host name in the container");
  run->add_option("--memory", a->memory,
                  "memory limit in bytes, or with k, m, g (e.g. 64m); "
                  "OOM-killed beyond it");
  run->add_option("--pids", a->pids,
                  "most processes (and threads) the container may have");
  run->add_flag("--init", a->init,
                "PID 1 is a tiny init that reaps orphaned processes and "
                "forwards signals (else the command is PID 1)");
  run->add_flag("-t,--tty", a->tty,
                "give the command a terminal (default when stdin and stdout "
                "are terminals)");
  run->add_flag("-T,--no-tty", a->no_tty,
                "no terminal, even when stdin and stdout are terminals");
  run->add_flag("--read-only", a->read_only,
                "mount the container's root read-only");
  run->add_option("--entrypoint", a->entrypoint,
                  "replace the image's entrypoint")
      ->each([a](const std::string&) { a->has_entrypoint = true; });
  // IMAGE [COMMAND [ARG...]]: everything from IMAGE on is the container's,
  // options included (-c of sh -c must not reach strata).
  run->prefix_command();
  run->footer(
      "IMAGE [COMMAND [ARG...]]: the image, and the command instead of its "
      "Cmd");
  run->callback([&ctx, a, run] {
    std::vector<std::string> rest = run->remaining();
    ctx.action = [&ctx, a, rest]() -> Result<int> {
      if (rest.empty())
        return Error(EINVAL, "run",
                     "no image given (strata run IMAGE [COMMAND...])");
      a->image = rest[0];
      a->command.assign(rest.begin() + 1, rest.end());
      return RunContainer(ctx.global, *a);
    };
  });
}

}  // namespace strata::cli
