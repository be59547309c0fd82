// strata export: content out of the store, as an OCI layout, a flat tarball
// of an image's merged tree, or one layer's changeset.

#include <memory>
#include <string>

#include "layerdb/exporters.h"
#include "tools/strata/commands.h"

namespace strata::cli {

namespace {

using layerdb::Store;

struct ExportArgs {
  std::string image;
  std::string layer;  // --layer
  std::string out;    // -o
  std::string tag;    // --tag (OCI layout)
  bool flatten = false;
};

Error Usage(const std::string& what) {
  return {EINVAL, "export", what};
}

Status Validate(const ExportArgs& a) {
  if (a.image.empty() == a.layer.empty())
    return Usage("give either IMAGE or --layer LAYER");
  if (!a.layer.empty() && (a.flatten || !a.tag.empty()))
    return Usage("--flatten and --tag apply to images, not to --layer");
  if (a.flatten && !a.tag.empty())
    return Usage("--tag applies to an OCI layout, not to --flatten");
  return Ok();
}

Result<int> ExportLayer(const Store& store, const ExportArgs& a) {
  STRATA_ASSIGN_OR_RETURN(auto layer, store.FindLayer(a.layer));
  if (!layer)
    return Error(ENOENT, "export", "layer \"" + a.layer + "\" not found");
  STRATA_RETURN_IF_ERROR(layerdb::ExportLayerTar(store, layer->id, a.out));
  return 0;
}

Result<int> ExportImage(const Store& store, const ExportArgs& a) {
  STRATA_ASSIGN_OR_RETURN(auto img, store.FindImage(a.image));
  if (!img)
    return Error(ENOENT, "export", "image \"" + a.image + "\" not found");
  if (a.flatten) {
    STRATA_RETURN_IF_ERROR(layerdb::ExportFlatTar(store, *img, a.out));
    return 0;
  }
  // The layout's ref name defaults to the image's own tag.
  std::string tag =
      a.tag.empty() ? img->name.substr(img->name.rfind(':') + 1) : a.tag;
  STRATA_RETURN_IF_ERROR(layerdb::ExportOciLayout(store, *img, a.out, tag));
  return 0;
}

Result<int> Export(const GlobalOptions& global, const ExportArgs& a) {
  STRATA_RETURN_IF_ERROR(Validate(a));
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, Store::Mode::kReadOnly));
  // The exporters take the store's shared lock themselves (gc must not
  // remove blobs while they are read), and go on without it in a store the
  // caller may only read.
  if (!a.layer.empty()) return ExportLayer(*store, a);
  return ExportImage(*store, a);
}

}  // namespace

void AddExportCommands(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* cmd = AddCommand(
      app, "export",
      "write an image as an OCI layout (-o DIR), its merged tree as one "
      "tarball (--flatten -o FILE.tar), or one layer's changeset "
      "(--layer LAYER -o FILE.tar); - writes a tarball to stdout",
      ctx);
  cmd->add_option("IMAGE", a->image, "image name or id");
  cmd->add_option("--layer", a->layer, "layer id or diff_id (prefix)");
  cmd->add_option("-o,--output", a->out, "output directory or file")
      ->required();
  cmd->add_flag("--flatten", a->flatten, "the merged tree as one tarball");
  cmd->add_option("--tag", a->tag,
                  "ref name in the OCI layout (default: the image's tag)");
  cmd->callback(
      [&ctx, a] { ctx.action = [&ctx, a] { return Export(ctx.global, *a); }; });
}

}  // namespace strata::cli
