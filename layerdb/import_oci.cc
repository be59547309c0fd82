// ImportOciLayout, and the step shared with the docker-archive importer:
// turning an ImagePlan (manifest, config and layer list, already verified)
// into layers and a named image.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include <archive.h>

#include "layerdb/base/sys.h"
#include "layerdb/hash.h"
#include "layerdb/hashing_input.h"
#include "layerdb/importers.h"
#include "layerdb/oci_manifest.h"
#include "layerdb/tar_import.h"

namespace strata::layerdb {

namespace {

using oci::Descriptor;
using oci::ImagePlan;
using oci::LayerPlan;
using oci::Quote;

constexpr size_t kReadChunk = 1 << 20;

// Progress over several files: each one's bytes are offset by what came
// before, against one total for the whole image.
ImportOptions OffsetProgress(const ImportOptions& opts, uint64_t base,
                             uint64_t total) {
  ImportOptions out;
  if (opts.progress)
    out.progress = [&opts, base, total](uint64_t done, uint64_t) {
      opts.progress(base + done, total);
    };
  return out;
}

struct LayerFile {
  UniqueFd fd;
  uint64_t size = 0;
};

// Opens a layer file and checks what can be checked without reading it.
Result<LayerFile> OpenLayer(const oci::OpenFn& open, const LayerPlan& layer) {
  auto fd = open(layer.path);
  if (!fd && fd.error().code() == ENOENT)
    return Error(ENOENT, "open layer",
                 layer.referrer + " references missing layer " +
                     (layer.digest.empty() ? Quote(layer.path) : layer.digest));
  if (!fd) return fd.error().WithContext(layer.Label());
  STRATA_ASSIGN_OR_RETURN(struct stat st, sys::Fstat(fd->get()));
  if (!S_ISREG(st.st_mode))
    return Error(EINVAL, "open layer", layer.Label() + ": not a regular file");
  if (layer.size >= 0 && st.st_size != layer.size)
    return Error(EIO, "verify layer",
                 layer.Label() + ": blob is " + std::to_string(st.st_size) +
                     " bytes, but " + layer.referrer + " says " +
                     std::to_string(layer.size));
  return LayerFile{std::move(*fd), static_cast<uint64_t>(st.st_size)};
}

Error VerifyReadError(archive* a, const HashingInput& in,
                      const std::string& label) {
  if (in.error != 0) return Error(in.error, "read", label);
  const char* msg = archive_error_string(a);
  return Error(EIO, "verify layer",
               label + ": " + (msg != nullptr ? msg : "unreadable"));
}

Status CheckDigest(const LayerPlan& layer, const std::string& got) {
  if (layer.digest.empty() || got == layer.digest) return Ok();
  return Error(EIO, "verify layer",
               layer.Label() + ": content has digest " + got + ", expected " +
                   layer.digest + " (" + layer.referrer + ")");
}

Status CheckDiffId(const LayerPlan& layer, const std::string& got) {
  if (got == layer.diff_id) return Ok();
  return Error(EIO, "verify layer",
               layer.Label() + ": uncompressed content has digest " + got +
                   ", but the config lists diff_id " + layer.diff_id);
}

// Hashes the bytes left in `fd` into `digest`.
Status HashRest(int fd, Sha256& digest, std::vector<char>& chunk,
                const std::string& label) {
  for (;;) {
    auto n = sys::ReadFull(fd, std::as_writable_bytes(std::span(chunk)));
    if (!n) return n.error().WithContext(label);
    if (*n == 0) return Ok();
    digest.Update(chunk.data(), *n);
  }
}

// Checks the blob digest only: one read, no decompression.
Status VerifyLayerDigest(int fd, const LayerPlan& layer, uint64_t size,
                         const ImportOptions& opts) {
  Sha256 digest;
  std::vector<char> chunk(kReadChunk);
  STRATA_RETURN_IF_ERROR(HashRest(fd, digest, chunk, layer.Label()));
  if (opts.progress) opts.progress(size, 0);
  return CheckDigest(layer, digest.FinishDigest());
}

// Computes both digests of one layer file (the file as given, and its
// decompressed stream, compression detected as ImportTarSource does) and
// compares them with the plan, without parsing or storing anything.
Status VerifyLayer(int fd, const LayerPlan& layer, const ImportOptions& opts) {
  HashingInput in(fd, &opts, 0);
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(),
                                                           &archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  std::string label = layer.Label();
  if (archive_read_open(a.get(), &in, nullptr, HashingRead, nullptr) !=
      ARCHIVE_OK)
    return VerifyReadError(a.get(), in, label);
  Sha256 uncompressed;
  archive_entry* e;
  int rc = archive_read_next_header(a.get(), &e);
  if (rc != ARCHIVE_OK && rc != ARCHIVE_EOF)
    return VerifyReadError(a.get(), in, label);
  std::vector<char> chunk(kReadChunk);
  for (la_ssize_t n = 1; rc == ARCHIVE_OK && n > 0;) {
    n = archive_read_data(a.get(), chunk.data(), chunk.size());
    if (n < 0) return VerifyReadError(a.get(), in, label);
    uncompressed.Update(chunk.data(), static_cast<size_t>(n));
  }
  // Bytes after the end of a compressed stream count in the blob digest.
  STRATA_RETURN_IF_ERROR(HashRest(fd, in.digest, chunk, label));
  STRATA_RETURN_IF_ERROR(CheckDigest(layer, in.digest.FinishDigest()));
  return CheckDiffId(layer, uncompressed.FinishDigest());
}

// The sizes of the layer files. Cheap checks first, for every layer: a
// missing, special or truncated file fails before anything is committed.
Result<std::vector<uint64_t>> CheckLayerFiles(const oci::OpenFn& open,
                                              const ImagePlan& plan) {
  std::vector<uint64_t> sizes;
  for (const LayerPlan& layer : plan.layers) {
    STRATA_ASSIGN_OR_RETURN(LayerFile f, OpenLayer(open, layer));
    sizes.push_back(f.size);
  }
  return sizes;
}

// ImportTarSource verifies a layer before committing it, but layers commit
// one at a time: without a first pass a bad layer 3 would leave layers 1
// and 2 behind. Above the first layer both digests are checked first. The
// first layer only needs its blob digest checked early (a cheap read that
// turns a corrupt blob into "digest mismatch" rather than whatever its bytes
// make the tar reader say); ImportTarSource checks its diff_id before
// committing it.
bool NeedsPreVerify(const ImagePlan& plan, size_t i) {
  return i > 0 || !plan.layers[i].digest.empty();
}

Status VerifyLayers(const oci::OpenFn& open, const ImagePlan& plan,
                    const std::vector<uint64_t>& sizes,
                    const ImportOptions& opts, uint64_t& base, uint64_t total) {
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    if (!NeedsPreVerify(plan, i)) continue;
    const LayerPlan& layer = plan.layers[i];
    STRATA_ASSIGN_OR_RETURN(LayerFile f, OpenLayer(open, layer));
    ImportOptions progress = OffsetProgress(opts, base, total);
    STRATA_RETURN_IF_ERROR(
        i == 0 ? VerifyLayerDigest(f.fd.get(), layer, f.size, progress)
               : VerifyLayer(f.fd.get(), layer, progress));
    base += sizes[i];
  }
  return Ok();
}

Result<LayerInfo> ImportLayer(Store& store, const oci::OpenFn& open,
                              const LayerPlan& layer, bool above_first,
                              const ImportOptions& opts) {
  STRATA_ASSIGN_OR_RETURN(LayerFile file, OpenLayer(open, layer));
  TarSource src;
  src.fd = file.fd.get();
  src.label = layer.Label();
  src.total_bytes = file.size;
  src.expect_compressed_digest = layer.digest;
  src.expect_diff_id = layer.diff_id;
  src.media_type = layer.media_type;
  src.allow_external_links = above_first;
  return ImportTarSource(store, src, opts);
}

std::string AvailableRefs(const std::vector<Descriptor>& entries) {
  std::string refs;
  size_t unnamed = 0;
  for (const Descriptor& d : entries) {
    std::string r = d.RefName();
    if (r.empty()) {
      ++unnamed;
      continue;
    }
    if (refs.find(Quote(r)) != std::string::npos) continue;
    refs += (refs.empty() ? "" : ", ") + Quote(r);
  }
  if (unnamed > 0)
    refs += (refs.empty() ? "" : ", ") + std::to_string(unnamed) + " unnamed";
  return refs.empty() ? "none" : refs;
}

// The index.json entry that `ref` names: by ref.name annotation or digest;
// with no ref, the only entry or else the one named "latest". Several
// entries with one name are one image for several platforms.
Result<Descriptor> SelectEntry(const std::vector<Descriptor>& entries,
                               std::string_view ref, const std::string& where) {
  if (entries.empty())
    return Error(ENOENT, "select manifest",
                 where + ": index.json lists no images");
  if (ref.empty() && entries.size() == 1) return entries[0];
  std::string want = ref.empty() ? "latest" : std::string(ref);
  std::vector<Descriptor> matches;
  for (const Descriptor& d : entries)
    if (d.RefName() == want || d.digest == want) matches.push_back(d);
  if (matches.empty() && ref.empty())
    return Error(EINVAL, "select manifest",
                 where + " holds " + std::to_string(entries.size()) +
                     " images and none is named \"latest\"; available refs: " +
                     AvailableRefs(entries));
  if (matches.empty())
    return Error(ENOENT, "select manifest",
                 where + ": no image named " + Quote(ref) +
                     "; available refs: " + AvailableRefs(entries));
  bool same = true;
  for (const Descriptor& d : matches)
    same = same && d.digest == matches[0].digest;
  if (same) return matches[0];
  return oci::PickPlatform(matches, where + " ref " + Quote(want));
}

// `name`, else the entry's ref.name: a full reference as is (in Docker's
// familiar form), a bare tag (or none: "latest") under the layout's
// directory name.
Result<std::string> OciImageName(std::string_view name, const Descriptor& top,
                                 const std::string& layout) {
  if (!name.empty()) return NormalizeImageName(name);
  std::string ref = top.RefName();
  if (ref.empty()) ref = "latest";
  if (oci::IsBareTag(ref))
    return NormalizeImageName(oci::RepoFromPath(layout) + ":" + ref);
  return NormalizeImageName(oci::FamiliarName(ref));
}

}  // namespace

namespace oci {

Result<ImportedImage> ImportPlannedImage(Store& store, const OpenFn& open,
                                         const ImagePlan& plan,
                                         const ImportOptions& opts) {
  if (plan.names.empty())
    return Error(EINVAL, "import image", plan.what + ": no name given");
  STRATA_ASSIGN_OR_RETURN(std::vector<uint64_t> sizes,
                          CheckLayerFiles(open, plan));
  uint64_t base = 0, total = 0;
  for (size_t i = 0; i < sizes.size(); ++i)
    total += sizes[i] * (NeedsPreVerify(plan, i) ? 2 : 1);
  STRATA_RETURN_IF_ERROR(VerifyLayers(open, plan, sizes, opts, base, total));
  ImportedImage out;
  std::vector<TreeId> ids, created;
  // Layers commit one by one; if a later one fails, the new ones committed
  // so far are deleted again so that the store is left as it was.
  auto undo = [&](const Error& e) -> Error {
    if (Status s = store.DropUnusedLayers(created); !s)
      return e.WithContext("(cleanup failed: " + s.error().ToString() + ")");
    return e;
  };
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    auto layer = ImportLayer(store, open, plan.layers[i], i > 0,
                             OffsetProgress(opts, base, total));
    if (!layer) return undo(layer.error());
    base += sizes[i];
    ids.push_back(layer->id);
    if (!layer->reused) created.push_back(layer->id);
    out.layers.push_back(std::move(*layer));
  }
  auto image = store.CreateImage(plan.names[0], ids, plan.config,
                                 plan.manifest_digest, plan.config_digest);
  if (!image) return undo(image.error());
  out.image = std::move(*image);
  for (size_t i = 1; i < plan.names.size(); ++i)
    STRATA_RETURN_IF_ERROR(store.Tag(out.image.name, plan.names[i]));
  return out;
}

}  // namespace oci

Result<ImportedImage> ImportOciLayout(Store& store, const std::string& layout,
                                      std::string_view ref,
                                      std::string_view name,
                                      const ImportOptions& opts) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store.LockShared());
  STRATA_ASSIGN_OR_RETURN(UniqueFd dir,
                          sys::Open(layout, O_RDONLY | O_DIRECTORY));
  // O_NONBLOCK: a FIFO planted as a blob must not hang the import (it is
  // then refused as not a regular file); regular files ignore the flag.
  oci::OpenFn open = [fd = dir.get()](const std::string& rel) {
    return sys::OpenAt(fd, rel, O_RDONLY | O_NONBLOCK);
  };
  STRATA_ASSIGN_OR_RETURN(auto entries, oci::ReadLayoutIndex(open, layout));
  STRATA_ASSIGN_OR_RETURN(Descriptor top, SelectEntry(entries, ref, layout));
  STRATA_ASSIGN_OR_RETURN(std::string image_name,
                          OciImageName(name, top, layout));
  STRATA_ASSIGN_OR_RETURN(oci::Manifest manifest,
                          oci::ResolveManifest(open, top, "index.json"));
  STRATA_ASSIGN_OR_RETURN(ImagePlan plan, oci::PlanImage(open, manifest));
  plan.names = {image_name};
  return oci::ImportPlannedImage(store, open, plan, opts);
}

}  // namespace strata::layerdb
