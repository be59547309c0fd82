// strata-overlay: fuse-overlayfs's command line over strata's union, with
// plain host directories as lower layers (design §2; issue "drop-in for
// fuse-overlayfs"). Also reachable as `mount -t fuse.strata-overlay` through
// mount.fuse3, which calls `strata-overlay SOURCE MOUNTPOINT -o OPTS`.
//
//   strata-overlay -o lowerdir=A:B,upperdir=U,workdir=W [-f] [-d] [SOURCE] MNT

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "fs/dir_lower.h"
#include "fs/mount_options.h"
#include "fs/session.h"
#include "fs/union_fs.h"

namespace strata::fs {
namespace {

constexpr const char* kUsage =
    "usage: strata-overlay -o lowerdir=LOWER[:LOWER...][,upperdir=UPPER,"
    "workdir=WORK][,OPTION...] [-f] [-d] [SOURCE] MOUNTPOINT\n"
    "Mounts the union of LOWER directories (the first is the topmost) under\n"
    "the writable UPPER, like fuse-overlayfs and kernel overlayfs.\n"
    "Options: ro, volatile (or fsync=0: no fsync, crash marker), debug,\n"
    "allow_other, allow_root; generic mount options are accepted and "
    "ignored.\n";

struct OverlayArgs {
  std::vector<std::string> lowers;
  std::string upper, work;
  MountConfig mount;
  UnionOptions opts;
};

// Returns an error line, or "" when the option was taken.
std::string TakeOption(const std::string& opt, OverlayArgs& a) {
  size_t eq = opt.find('=');
  std::string key = opt.substr(0, eq);
  std::string val = eq == std::string::npos ? "" : opt.substr(eq + 1);
  if (key == "lowerdir") {
    a.lowers.clear();
    for (auto& l : SplitEscaped(val, ':'))
      if (!l.empty()) a.lowers.push_back(AbsolutePath(l));
  } else if (key == "upperdir") {
    a.upper = AbsolutePath(val);
  } else if (key == "workdir") {
    a.work = AbsolutePath(val);
  } else if (key == "volatile" || (key == "fsync" && val == "0")) {
    a.opts.volatile_upper = true;
  } else if (key == "fsync") {
  } else if (key == "debug") {
    a.mount.debug = true;
  } else if (key == "uidmapping" || key == "gidmapping" ||
             key == "squash_to_root" || key == "squash_to_uid" ||
             key == "squash_to_gid") {
    return "option " + key +
           " is not supported (run in a user namespace instead)";
  } else if (ClassifyMountOption(key) == MountOptionKind::kKernelFlag) {
    // Mount flags: given to the kernel (after the root defaults, so that
    // nosuid/nodev win over them).
    if (key == "ro") a.mount.read_only = true;
    if (key != "ro" && key != "rw") a.mount.fuse_options.push_back(key);
  } else if (ClassifyMountOption(key) == MountOptionKind::kOther) {
    spdlog::warn("unknown option {} ignored", key);
  }
  return "";
}

int Main(int argc, char** argv) {
  OverlayArgs a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string opts;
    if (arg == "-o" && i + 1 < argc) {
      opts = argv[++i];
    } else if (arg.starts_with("-o")) {
      opts = std::string(arg.substr(2));
    } else if (arg == "-f") {
      a.mount.foreground = true;
      continue;
    } else if (arg == "-d" || arg == "--debug") {
      a.mount.debug = true;
      a.mount.foreground = true;
      continue;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "-V" || arg == "--version") {
      std::puts("strata-overlay 0.1.0");
      return 0;
    } else if (arg.starts_with("-")) {
      std::fprintf(stderr, "strata-overlay: unknown flag %s\n%s", argv[i],
                   kUsage);
      return 2;
    } else {
      positional.emplace_back(arg);
      continue;
    }
    for (const auto& o : SplitEscaped(opts, ',')) {
      if (o.empty()) continue;
      std::string err = TakeOption(o, a);
      if (!err.empty()) {
        std::fprintf(stderr, "strata-overlay: %s\n", err.c_str());
        return 2;
      }
    }
  }
  if (positional.empty() || positional.size() > 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (a.lowers.empty()) {
    std::fputs("strata-overlay: no lowerdir given (-o lowerdir=DIR)\n", stderr);
    return 2;
  }
  if (!a.upper.empty() && a.work.empty()) {
    std::fputs("strata-overlay: upperdir needs workdir\n", stderr);
    return 2;
  }
  a.mount.mountpoint = AbsolutePath(positional.back());
  a.mount.fsname = positional.size() == 2 ? positional[0] : "strata-overlay";
  a.mount.subtype = "strata-overlay";
  a.mount.program = "strata-overlay";
  if (a.upper.empty()) a.mount.read_only = true;
  a.opts.upper_dir = a.mount.read_only ? "" : a.upper;
  a.opts.work_dir = a.mount.read_only ? "" : a.work;
  a.opts.xattr_ns = ::geteuid() == 0 ? XattrNs::kTrusted : XattrNs::kUser;
  auto lowers = a.lowers;
  auto opts = a.opts;
  return RunMount(a.mount,
                  [lowers, opts]() -> Result<std::unique_ptr<UnionFs>> {
                    auto src = DirLowerSource::Open(lowers);
                    if (!src) return src.error();
                    return UnionFs::Create(std::move(*src), opts);
                  });
}

}  // namespace
}  // namespace strata::fs

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("strata-overlay"));
  spdlog::set_pattern("strata-overlay: %^%l%$: %v");
  spdlog::set_level(spdlog::level::warn);
  return strata::fs::Main(argc, argv);
}
