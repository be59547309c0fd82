// ExportFlatTar and ExportLayerTar: one tree as one plain tar file.

#include "layerdb/exporters.h"
#include "layerdb/tar_writer.h"

namespace strata::layerdb {

namespace {

// Writes `root` as one uncompressed tar to `out` (a path or "-").
Status WriteTarFile(const TreeNode& root, TreeKind kind, const Store& store,
                    const std::string& out) {
  STRATA_ASSIGN_OR_RETURN(OutputFile file, OutputFile::Create(out));
  STRATA_ASSIGN_OR_RETURN(
      std::unique_ptr<TarStream> tar,
      TarStream::Open([&file](std::string_view d) { return file.Write(d); },
                      TarCompression::kNone, out == "-" ? "stdout" : out));
  TarStream* streams[] = {tar.get()};
  STRATA_RETURN_IF_ERROR(WriteTreeAsTar(root, kind, store.blobs(), streams));
  STRATA_RETURN_IF_ERROR(tar->Finish());
  return file.Commit();
}

}  // namespace

Status ExportFlatTar(const Store& store, const ImageInfo& image,
                     const std::string& out) {
  const std::string what = "image " + image.name;
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, LockForExport(store));
  auto tree = store.LoadTree(image.view);
  if (!tree) return tree.error().WithContext(what);
  Status s = WriteTarFile(**tree, TreeKind::kView, store, out);
  if (!s) return s.error().WithContext(what);
  return Ok();
}

Status ExportLayerTar(const Store& store, TreeId layer,
                      const std::string& out) {
  const std::string what = "layer " + std::to_string(layer);
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, LockForExport(store));
  STRATA_ASSIGN_OR_RETURN(auto info, store.GetLayer(layer));
  if (!info) return Error(ENOENT, "export", what + " does not exist");
  auto tree = store.LoadTree(layer);
  if (!tree) return tree.error().WithContext(what);
  Status s = WriteTarFile(**tree, TreeKind::kLayer, store, out);
  if (!s) return s.error().WithContext(what);
  return Ok();
}

}  // namespace strata::layerdb
