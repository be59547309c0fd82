// The commands of `strata` that read or write archives (import, export)
// run in `strata-archive`, next to `strata`: libarchive and what it loads
// (libxml2, ICU: 1.5 ms of every start here, measured by bench/start_bench)
// stay out of the commands that must start fast, `strata run` first.

#include <unistd.h>

#include <string>
#include <vector>

#include "tools/strata/commands.h"

namespace strata::cli {

namespace {

Result<int> ExecArchiveTool(std::vector<std::string> argv) {
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return Error::FromErrno("readlink", "/proc/self/exe");
  std::string dir(self, static_cast<size_t>(n));
  std::string tool = dir.substr(0, dir.rfind('/') + 1) + "strata-archive";
  argv[0] = tool;
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(a.data());
  args.push_back(nullptr);
  ::execv(tool.c_str(), args.data());
  return Error::FromErrno("exec", tool + " (installed next to strata?)");
}

}  // namespace

void AddArchiveForwarders(CLI::App& app, Context& ctx,
                          const std::vector<std::string>& argv) {
  for (const char* name : {"import", "export"}) {
    CLI::App* cmd = app.add_subcommand(
        name, std::string(name) == "import"
                  ? "bring an image or layer in (see strata import --help)"
                  : "write an image or layer out (see strata export --help)");
    cmd->prefix_command();
    cmd->set_help_flag();  // --help goes to strata-archive
    cmd->callback([&ctx, argv] {
      ctx.action = [argv] { return ExecArchiveTool(argv); };
    });
  }
}

}  // namespace strata::cli
