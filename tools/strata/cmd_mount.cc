// strata mount / strata umount: an image of the store as a directory, with
// an optional writable upper (design §2, "Mounting").

#include <unistd.h>

#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "fs/mount_options.h"
#include "fs/session.h"
#include "fs/stored_lower.h"
#include "fs/union_fs.h"
#include "layerdb/base/sys.h"
#include "layerdb/lifecycle.h"
#include "tools/strata/commands.h"

namespace strata::cli {

namespace {

struct MountArgs {
  std::string image, mountpoint, upper, work, options;
  bool foreground = false, debug = false, is_volatile = false;
  bool read_only = false;
};

// In the daemon: the union of `image` under uo.upper_dir, with the mount's
// source named after the image.
Result<std::unique_ptr<fs::UnionFs>> MakeUnion(const GlobalOptions& global,
                                               const std::string& image,
                                               const fs::UnionOptions& uo,
                                               fs::MountConfig& config) {
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, layerdb::Store::Mode::kReadOnly));
  STRATA_ASSIGN_OR_RETURN(auto info, store->FindImage(image));
  if (!info) return Error(ENOENT, "mount", "no image " + image);
  config.fsname = "strata:" + info->name;
  if (!uo.upper_dir.empty())
    STRATA_RETURN_IF_ERROR(sys::MakeDirs(uo.upper_dir, 0755));
  // The daemon pins the view it serves so that gc keeps it even if the
  // image is removed meanwhile (best effort: a store the user may not
  // write cannot be collected by that user either).
  auto pin =
      layerdb::PinTrees(*store, std::to_string(::getpid()), {info->view});
  if (!pin)
    spdlog::info("view {} not pinned: {}", info->view, pin.error().ToString());
  STRATA_ASSIGN_OR_RETURN(
      auto lower, fs::StoredLowerSource::Open(std::move(store), info->view));
  if (pin) lower->set_pin(std::move(*pin));
  return fs::UnionFs::Create(std::move(lower), uo);
}

Result<int> RunMountCommand(GlobalOptions global, MountArgs a) {
  fs::MountConfig mc;
  for (const std::string& o : fs::SplitEscaped(a.options, ',')) {
    size_t eq = o.find('=');
    std::string key = o.substr(0, eq);
    std::string val = eq == std::string::npos ? "" : o.substr(eq + 1);
    // upper=/work= let `mount -t fuse.strata IMAGE MNT -o upper=U,work=W`
    // (through mount.fuse3) say what --upper/--work say.
    if (key == "root") {
      global.root = val;  // the store, as --root
    } else if (key == "upper") {
      a.upper = val;
    } else if (key == "work") {
      a.work = val;
    } else if (key == "volatile") {
      a.is_volatile = true;
    } else if (key == "ro") {
      a.read_only = true;
    } else if (fs::ClassifyMountOption(key) ==
               fs::MountOptionKind::kKernelFlag) {
      if (key != "rw") mc.fuse_options.push_back(key);
    } else if (!key.empty() &&
               fs::ClassifyMountOption(key) == fs::MountOptionKind::kOther) {
      return Error(EINVAL, "mount", "unknown mount option " + key);
    }
  }
  mc.mountpoint = fs::AbsolutePath(a.mountpoint);
  mc.subtype = "strata";
  mc.foreground = a.foreground || a.debug;
  mc.debug = a.debug;
  mc.read_only = a.read_only || a.upper.empty();
  fs::UnionOptions uo;
  if (!mc.read_only) {
    uo.upper_dir = fs::AbsolutePath(a.upper);
    uo.work_dir =
        a.work.empty() ? uo.upper_dir + ".work" : fs::AbsolutePath(a.work);
  }
  uo.volatile_upper = a.is_volatile;
  uo.xattr_ns = ::geteuid() == 0 ? fs::XattrNs::kTrusted : fs::XattrNs::kUser;
  global.root = fs::AbsolutePath(global.root);  // the daemon runs in /
  // The store is opened once, in the daemon (LMDB must not cross a fork):
  // an unknown image or a missing store comes back to this process over
  // RunMount's readiness pipe as the same one-line error.
  return fs::RunMount(mc, [global, image = a.image, uo](fs::MountConfig& c) {
    return MakeUnion(global, image, uo, c);
  });
}

}  // namespace

void AddMountCommands(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<MountArgs>();
  CLI::App* mount =
      AddCommand(app, "mount", "mount an image as a directory", ctx);
  mount->add_option("IMAGE", a->image, "image name[:tag]")->required();
  mount->add_option("MOUNTPOINT", a->mountpoint, "an existing directory")
      ->required();
  mount->add_option("--upper", a->upper,
                    "writable upper directory (kernel overlayfs format); "
                    "without it the mount is read-only");
  mount->add_option(
      "--work", a->work,
      "work directory on the upper's filesystem (default: UPPER.work)");
  mount->add_option("-o", a->options,
                    "mount options (ro, volatile, allow_other, ...)");
  mount->add_flag("--volatile", a->is_volatile,
                  "skip fsync; a crash leaves the upper marked unusable");
  mount->add_flag("-f,--foreground", a->foreground, "stay in the foreground");
  mount->add_flag("-d,--debug", a->debug,
                  "log every FUSE request (implies -f)");
  mount->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return RunMountCommand(ctx.global, *a); };
  });

  auto u = std::make_shared<std::pair<std::string, bool>>();
  CLI::App* umount = AddCommand(app, "umount", "unmount a strata mount", ctx);
  umount->add_option("MOUNTPOINT", u->first, "where it is mounted")->required();
  umount->add_flag("-l,--lazy", u->second,
                   "detach now, clean up when no longer busy");
  umount->callback([&ctx, u] {
    ctx.action = [u]() -> Result<int> {
      STRATA_RETURN_IF_ERROR(
          fs::Unmount(fs::AbsolutePath(u->first), u->second));
      return 0;
    };
  });
}

}  // namespace strata::cli
