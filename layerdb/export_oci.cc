// ExportOciLayout: an image as an OCI image layout (image-spec layout.md).
//
// Each layer is written once as a tar that goes to two libarchive writers at
// the same time: one gzip-compressed into the blob file (its bytes hashed
// for the blob digest), one uncompressed whose bytes are only hashed (the
// diff_id). Both receive the same headers and data with the same format
// options, so the hashed tar is exactly what gzip compressed, and each blob
// is read once.

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "layerdb/base/sys.h"
#include "layerdb/exporters.h"
#include "layerdb/hash.h"
#include "layerdb/tar_writer.h"

namespace strata::layerdb {

namespace {

using nlohmann::json;

constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kConfigType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kLayerType[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kRefName[] = "org.opencontainers.image.ref.name";
constexpr char kLayoutVersion[] = "1.0.0";

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>"
  uint64_t size = 0;

  json ToJson() const {
    return {{"mediaType", media_type}, {"digest", digest}, {"size", size}};
  }
};

std::string BlobPath(const std::string& dir, const std::string& digest) {
  return dir + "/blobs/sha256/" + digest.substr(digest.find(':') + 1);
}

// Never throws: strings that came from JSON are valid UTF-8 anyway.
std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Descriptor> WriteJsonBlob(const std::string& dir,
                                 const std::string& media_type,
                                 const json& value) {
  std::string bytes = Dump(value);
  Descriptor d{media_type, Sha256::Of(bytes), bytes.size()};
  std::string path = BlobPath(dir, d.digest);
  // Content-addressed: an existing blob of this size is this blob.
  auto st = sys::Lstat(path);
  if (st && S_ISREG(st->st_mode) &&
      static_cast<uint64_t>(st->st_size) == d.size)
    return d;
  STRATA_ASSIGN_OR_RETURN(OutputFile file, OutputFile::Create(path));
  STRATA_RETURN_IF_ERROR(file.Write(bytes));
  STRATA_RETURN_IF_ERROR(file.Commit());
  return d;
}

struct LayerBlob {
  Descriptor desc;
  std::string diff_id;
};

Result<LayerBlob> WriteLayerBlob(const Store& store, TreeId layer,
                                 const std::string& dir) {
  const std::string label = "layer " + std::to_string(layer);
  STRATA_ASSIGN_OR_RETURN(TreeNodePtr tree, store.LoadTree(layer));
  // Named once the digest is known.
  STRATA_ASSIGN_OR_RETURN(OutputFile file,
                          OutputFile::Create(dir + "/blobs/sha256/layer"));
  Sha256 blob_hash, diff_hash;
  uint64_t size = 0;
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<TarStream> gz,
                          TarStream::Open(
                              [&](std::string_view d) {
                                blob_hash.Update(d.data(), d.size());
                                size += d.size();
                                return file.Write(d);
                              },
                              TarCompression::kGzip, label));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<TarStream> plain,
                          TarStream::Open(
                              [&](std::string_view d) {
                                diff_hash.Update(d.data(), d.size());
                                return Ok();
                              },
                              TarCompression::kNone, label));
  TarStream* streams[] = {plain.get(), gz.get()};
  STRATA_RETURN_IF_ERROR(
      WriteTreeAsTar(*tree, TreeKind::kLayer, store.blobs(), streams));
  STRATA_RETURN_IF_ERROR(plain->Finish());
  STRATA_RETURN_IF_ERROR(gz->Finish());
  LayerBlob out{{kLayerType, blob_hash.FinishDigest(), size},
                diff_hash.FinishDigest()};
  STRATA_RETURN_IF_ERROR(file.CommitAs(BlobPath(dir, out.desc.digest)));
  return out;
}

Result<std::optional<json>> ReadJsonFile(const std::string& path) {
  auto text = sys::ReadFile(path);
  if (!text) {
    if (text.error().code() == ENOENT) return std::optional<json>();
    return text.error();
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Error(EIO, "parse", path + ": not a JSON object");
  return std::optional<json>(std::move(j));
}

// Creates the layout skeleton, or checks that `dir` already is a layout.
Status PrepareLayout(const std::string& dir) {
  STRATA_RETURN_IF_ERROR(sys::MakeDirs(dir + "/blobs/sha256"));
  const std::string path = dir + "/oci-layout";
  STRATA_ASSIGN_OR_RETURN(std::optional<json> layout, ReadJsonFile(path));
  if (!layout) {
    return sys::WriteFileAtomic(
        path, Dump(json{{"imageLayoutVersion", kLayoutVersion}}));
  }
  auto v = layout->find("imageLayoutVersion");
  if (v == layout->end() || *v != kLayoutVersion)
    return Error(EINVAL, "export", path + ": not an OCI layout version 1.0.0");
  return Ok();
}

// The image's config with rootfs.diff_ids describing the exported layers.
json ConfigFor(const ImageInfo& image, const std::vector<LayerBlob>& layers) {
  json config = image.config.is_object() ? image.config : json::object();
  json& rootfs = config["rootfs"];
  if (!rootfs.is_object()) rootfs = json::object();
  rootfs["type"] = "layers";
  json diff_ids = json::array();
  for (const LayerBlob& l : layers)
    diff_ids.push_back(l.diff_id);
  rootfs["diff_ids"] = std::move(diff_ids);
  return config;
}

json IndexEntry(const Descriptor& manifest, const json& config,
                const std::string& tag) {
  json entry = manifest.ToJson();
  entry["annotations"] = {{kRefName, tag}};
  auto arch = config.find("architecture");
  auto os = config.find("os");
  if (arch != config.end() && arch->is_string() && os != config.end() &&
      os->is_string()) {
    entry["platform"] = {{"architecture", *arch}, {"os", *os}};
    auto variant = config.find("variant");
    if (variant != config.end() && variant->is_string())
      entry["platform"]["variant"] = *variant;
  }
  return entry;
}

// Adds `entry` to index.json, replacing any entry with the same ref name.
Status UpdateIndex(const std::string& dir, json entry, const std::string& tag) {
  const std::string path = dir + "/index.json";
  STRATA_ASSIGN_OR_RETURN(std::optional<json> index, ReadJsonFile(path));
  if (!index) index = json{{"schemaVersion", 2}, {"mediaType", kIndexType}};
  json& old = (*index)["manifests"];
  json manifests = json::array();
  if (old.is_array()) {
    for (json& m : old) {
      const json* ann = m.contains("annotations") ? &m["annotations"] : nullptr;
      bool same = ann != nullptr && ann->is_object() &&
                  ann->value(kRefName, json()) == tag;
      if (!same) manifests.push_back(std::move(m));
    }
  }
  manifests.push_back(std::move(entry));
  old = std::move(manifests);
  return sys::WriteFileAtomic(path, Dump(*index));
}

Status ExportLayout(const Store& store, const ImageInfo& image,
                    const std::string& dir, const std::string& tag) {
  STRATA_RETURN_IF_ERROR(PrepareLayout(dir));
  std::vector<LayerBlob> layers;
  json layer_descs = json::array();
  for (TreeId id : image.layers) {
    STRATA_ASSIGN_OR_RETURN(LayerBlob l, WriteLayerBlob(store, id, dir));
    layer_descs.push_back(l.desc.ToJson());
    layers.push_back(std::move(l));
  }
  json config = ConfigFor(image, layers);
  STRATA_ASSIGN_OR_RETURN(Descriptor config_desc,
                          WriteJsonBlob(dir, kConfigType, config));
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kManifestType},
                   {"config", config_desc.ToJson()},
                   {"layers", std::move(layer_descs)}};
  STRATA_ASSIGN_OR_RETURN(Descriptor manifest_desc,
                          WriteJsonBlob(dir, kManifestType, manifest));
  // Last, so that the tag only appears once everything it names exists.
  return UpdateIndex(dir, IndexEntry(manifest_desc, config, tag), tag);
}

}  // namespace

Status ExportOciLayout(const Store& store, const ImageInfo& image,
                       const std::string& dir, const std::string& tag) {
  const std::string what = "image " + image.name;
  if (tag.empty()) return Error(EINVAL, "export", what + ": empty tag");
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, LockForExport(store));
  Status s = ExportLayout(store, image, dir, tag);
  if (!s) return s.error().WithContext(what);
  return Ok();
}

}  // namespace strata::layerdb
