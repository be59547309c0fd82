// strata images, layers, inspect, tag, rmi: list and manage what the store
// holds.

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "layerdb/store.h"
#include "tools/strata/commands.h"
#include "tools/strata/output.h"

namespace strata::cli {

namespace {

using layerdb::ImageInfo;
using layerdb::LayerInfo;
using layerdb::Store;
using layerdb::ViewInfo;
using nlohmann::json;

// A listing of a store that does not exist yet is an empty listing.
Result<std::unique_ptr<Store>> OpenForListing(const GlobalOptions& global) {
  auto store = OpenStore(global, Store::Mode::kReadOnly);
  if (!store && store.error().code() == ENOENT) return std::unique_ptr<Store>();
  return store;
}

Result<std::map<layerdb::TreeId, ViewInfo>> ViewsById(const Store& store) {
  STRATA_ASSIGN_OR_RETURN(std::vector<ViewInfo> views, store.ListViews());
  std::map<layerdb::TreeId, ViewInfo> by_id;
  for (ViewInfo& v : views)
    by_id.emplace(v.id, std::move(v));
  return by_id;
}

Result<int> ListImages(const GlobalOptions& global, bool as_json) {
  STRATA_ASSIGN_OR_RETURN(auto store, OpenForListing(global));
  std::vector<ImageInfo> images;
  std::map<layerdb::TreeId, ViewInfo> views;
  if (store) {
    STRATA_ASSIGN_OR_RETURN(images, store->ListImages());
    STRATA_ASSIGN_OR_RETURN(views, ViewsById(*store));
  }
  json out = json::array();
  Table table({"NAME", "ID", "LAYERS", "SIZE", "CREATED"});
  for (const ImageInfo& img : images) {
    auto v = views.find(img.view);
    uint64_t size = v == views.end() ? 0 : v->second.size;
    out.push_back({{"name", img.name},
                   {"id", img.id},
                   {"layers", img.layers},
                   {"view", img.view},
                   {"size", size},
                   {"created", img.created}});
    table.AddRow({img.name, ShortDigest(img.id),
                  std::to_string(img.layers.size()), HumanSize(size),
                  HumanAge(img.created)});
  }
  if (as_json) {
    PrintJson(out);
  } else {
    table.Print();
  }
  return 0;
}

Result<int> ListLayers(const GlobalOptions& global, bool as_json) {
  STRATA_ASSIGN_OR_RETURN(auto store, OpenForListing(global));
  std::vector<LayerInfo> layers;
  if (store) {
    STRATA_ASSIGN_OR_RETURN(layers, store->ListLayers());
  }
  json out = json::array();
  Table table({"ID", "DIFF ID", "SIZE", "FILES", "SOURCE"});
  for (const LayerInfo& l : layers) {
    out.push_back(layerdb::ToJson(l));
    table.AddRow({std::to_string(l.id),
                  l.diff_id.empty() ? "-" : ShortDigest(l.diff_id),
                  HumanSize(l.size), std::to_string(l.entries), l.source});
  }
  if (as_json) {
    PrintJson(out);
  } else {
    table.Print();
  }
  return 0;
}

Result<ImageInfo> FindImage(const Store& store, const std::string& name,
                            const char* op) {
  STRATA_ASSIGN_OR_RETURN(auto img, store.FindImage(name));
  if (!img) return Error(ENOENT, op, "image \"" + name + "\" not found");
  return *img;
}

Result<int> Inspect(const GlobalOptions& global, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, Store::Mode::kReadOnly));
  STRATA_ASSIGN_OR_RETURN(ImageInfo img, FindImage(*store, name, "inspect"));
  json layers = json::array();
  for (layerdb::TreeId id : img.layers) {
    STRATA_ASSIGN_OR_RETURN(auto layer, store->GetLayer(id));
    layers.push_back(layer ? layerdb::ToJson(*layer) : json{{"id", id}});
  }
  STRATA_ASSIGN_OR_RETURN(auto v, store->GetView(img.view));
  json view = v ? layerdb::ToJson(*v) : json{{"id", img.view}};
  PrintJson({{"name", img.name},
             {"id", img.id},
             {"created", img.created},
             {"manifest_digest", img.manifest_digest},
             {"layers", std::move(layers)},
             {"view", std::move(view)},
             {"config", img.config}});
  return 0;
}

Result<int> Tag(const GlobalOptions& global, const std::string& src,
                const std::string& dst) {
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, Store::Mode::kReadWrite));
  // Shared: gc must not collect the view between the lookup and the write.
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store->LockShared());
  STRATA_ASSIGN_OR_RETURN(ImageInfo img, store->Tag(src, dst));
  (void)img;
  return 0;
}

// Checks every name first, so that a typo removes nothing.
Result<int> RemoveImages(const GlobalOptions& global,
                         const std::vector<std::string>& names) {
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, Store::Mode::kReadWrite));
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store->LockShared());
  std::vector<std::string> full;
  for (const std::string& n : names) {
    STRATA_ASSIGN_OR_RETURN(ImageInfo img, FindImage(*store, n, "rmi"));
    full.push_back(img.name);
  }
  for (const std::string& n : full) {
    STRATA_RETURN_IF_ERROR(store->RemoveImage(n));
    fmt::print("untagged: {}\n", n);
  }
  return 0;
}

struct ImageArgs {
  bool json = false;
  std::string name;
  std::string dst;
  std::vector<std::string> names;
};

}  // namespace

void AddImageCommands(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<ImageArgs>();
  CLI::App* images = AddCommand(app, "images", "list images", ctx);
  images->add_flag("--json", a->json, "print JSON");
  images->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return ListImages(ctx.global, a->json); };
  });

  CLI::App* layers = AddCommand(app, "layers", "list layers", ctx);
  layers->add_flag("--json", a->json, "print JSON");
  layers->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return ListLayers(ctx.global, a->json); };
  });

  CLI::App* inspect =
      AddCommand(app, "inspect", "show an image's layers, view, config", ctx);
  inspect->add_option("NAME", a->name, "image name or id")->required();
  inspect->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return Inspect(ctx.global, a->name); };
  });

  CLI::App* tag = AddCommand(app, "tag", "add another name to an image", ctx);
  tag->add_option("SRC", a->name, "existing image")->required();
  tag->add_option("DST", a->dst, "new name N[:T]")->required();
  tag->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return Tag(ctx.global, a->name, a->dst); };
  });

  CLI::App* rmi = AddCommand(
      app, "rmi", "remove image names (strata gc frees the space)", ctx);
  rmi->add_option("NAME", a->names, "image names")->required();
  rmi->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return RemoveImages(ctx.global, a->names); };
  });
}

}  // namespace strata::cli
