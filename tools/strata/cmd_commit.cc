// strata commit: a container's changes (or any upper directory's) as a new
// layer on top of its image (design §3).

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "fs/mount_options.h"
#include "layerdb/importers.h"
#include "tools/launcher/commit.h"
#include "tools/launcher/containers.h"
#include "tools/strata/commands.h"

namespace strata::cli {

namespace {

struct CommitArgs {
  std::string target, name, image, work;
};

// The image a container was made from: by name while it still has the
// container's view, else any image with that view, else the view's layers
// with a minimal config (the image was removed or replaced).
Status SetBase(const layerdb::Store& store, const std::string& image,
               layerdb::TreeId view, launcher::CommitSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(auto named, store.FindImage(image));
  if (named && (view == 0 || named->view == view)) {
    spec.view = named->view;
    spec.base_layers = named->layers;
    spec.base_config = named->config;
    return Ok();
  }
  if (view == 0) return Error(ENOENT, "commit", "no image " + image);
  STRATA_ASSIGN_OR_RETURN(auto all, store.ListImages());
  for (const auto& i : all) {
    if (i.view != view) continue;
    spec.view = view;
    spec.base_layers = i.layers;
    spec.base_config = i.config;
    return Ok();
  }
  STRATA_ASSIGN_OR_RETURN(auto v, store.GetView(view));
  if (!v)
    return Error(
        ENOENT, "commit",
        "the image of this container (" + image + ") is gone from the store");
  spec.view = view;
  spec.base_layers = v->layers;
  std::vector<layerdb::LayerInfo> layers;
  for (auto id : v->layers) {
    STRATA_ASSIGN_OR_RETURN(auto l, store.GetLayer(id));
    if (l) layers.push_back(*l);
  }
  spec.base_config = layerdb::MakeImageConfig(layers);
  return Ok();
}

// An empty directory for the merged tree of a bare upper; removed after.
class TempMountpoint {
 public:
  Status Create() {
    std::string t = "/tmp/strata-commit-XXXXXX";
    if (::mkdtemp(t.data()) == nullptr)
      return Error::FromErrno("mkdtemp", "/tmp");
    path_ = t;
    return Ok();
  }
  ~TempMountpoint() {
    if (!path_.empty()) ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Result<int> Commit(const GlobalOptions& global, const CommitArgs& a) {
  launcher::CommitSpec spec;
  char root[4096];
  if (::realpath(global.root.c_str(), root) == nullptr)
    return Error::FromErrno("commit", "store " + global.root);
  spec.store_root = root;
  STRATA_ASSIGN_OR_RETURN(spec.name, layerdb::NormalizeImageName(a.name));
  STRATA_ASSIGN_OR_RETURN(auto containers,
                          launcher::ListContainers(spec.store_root));
  auto it = std::find_if(containers.begin(), containers.end(),
                         [&](const auto& c) { return c.id == a.target; });
  TempMountpoint tmp;
  std::string base_image = a.image;
  layerdb::TreeId view = 0;
  if (it != containers.end() && a.image.empty()) {
    if (it->running)
      return Error(EBUSY, "commit",
                   "container " + a.target +
                       " is running (commit it after "
                       "it ends)");
    std::string dir = spec.store_root + "/containers/" + a.target;
    spec.upper_dir = dir + "/upper";
    spec.work_dir = dir + "/work";
    STRATA_ASSIGN_OR_RETURN(spec.mountpoint,
                            launcher::MakeSharedRootfs(spec.store_root));
    spec.source = "commit:" + a.target;
    // Bind-mount targets the launcher creates when the image has none (as
    // docker commit, they are not part of the image).
    spec.exclude = {"etc/hostname", "etc/hosts", "etc/resolv.conf"};
    base_image = it->image;
    view = it->view;
  } else {
    if (a.image.empty())
      return Error(ENOENT, "commit",
                   a.target +
                       ": no such container (for an upper directory, "
                       "name its image with --image)");
    spec.upper_dir = fs::AbsolutePath(a.target);
    spec.work_dir =
        fs::AbsolutePath(a.work.empty() ? spec.upper_dir + ".work" : a.work);
    if (::access(spec.upper_dir.c_str(), F_OK) != 0)
      return Error::FromErrno("commit", "upper directory " + spec.upper_dir);
    STRATA_RETURN_IF_ERROR(tmp.Create());
    spec.mountpoint = tmp.path();
    spec.source = "commit:" + spec.upper_dir;
  }
  {
    STRATA_ASSIGN_OR_RETURN(auto store,
                            OpenStore(global, layerdb::Store::Mode::kReadOnly));
    STRATA_RETURN_IF_ERROR(SetBase(*store, base_image, view, spec));
  }  // closed before the fork: LMDB must not cross one
  STRATA_ASSIGN_OR_RETURN(auto image, launcher::CommitUpper(spec));
  fmt::print("{}\n", image.id);
  return 0;
}

}  // namespace

void AddCommitCommands(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<CommitArgs>();
  CLI::App* c = AddCommand(
      app, "commit",
      "a container's changes (or an upper directory's) as a new image", ctx);
  c->add_option("CONTAINER", a->target,
                "container id or name, or an upper "
                "directory")
      ->required();
  c->add_option("--name", a->name, "name of the new image (N[:T])")->required();
  c->add_option("--image", a->image,
                "for an upper directory: the image it was made over");
  c->add_option("--work", a->work,
                "for an upper directory: its work directory (default "
                "UPPER.work)");
  c->callback(
      [&ctx, a] { ctx.action = [&ctx, a] { return Commit(ctx.global, *a); }; });
}

}  // namespace strata::cli
