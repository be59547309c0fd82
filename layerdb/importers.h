#pragma once

// Importers: bring content into the store (design §1, "Importers").
// Each one builds layers with LayerBuilder, stores file contents as blobs and
// commits each layer in one write transaction, holding the store's shared
// lock so that gc cannot collect blobs it has written but not yet committed.
// An importer killed at any point leaves no visible layer or image.
//
// Errors name the object and the cause in Error::detail (the member name, the
// blob digest, the file), e.g. EINVAL "member \"../x\": \"..\" in member name",
// EIO "layer sha256:ab…: digest mismatch".

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerdb/base/error.h"
#include "layerdb/store.h"

namespace strata::layerdb {

struct ImportOptions {
  // Called now and then with bytes read so far and the total (0 if unknown).
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// One layer changeset from a tar file (plain, gzip or zstd, detected by
// content; "-" reads stdin). Computes diff_id (sha256 of the uncompressed
// tar) and the sha256 of the file as given. With allow_external_links, a
// hardlink may name a file of a lower layer (multi-layer images only).
Result<LayerInfo> ImportTarLayer(Store& store, const std::string& path,
                                 const ImportOptions& opts,
                                 bool allow_external_links = false);

// One layer from a host directory tree (not following symlinks): every file
// type, modes, owners, times, xattrs and POSIX ACLs as the caller can read
// them. Whiteouts are not interpreted.
Result<LayerInfo> ImportDirLayer(Store& store, const std::string& dir,
                                 const ImportOptions& opts);

// What a container changed, as paths relative to the root of its merged
// tree (read from the upper directory by `strata commit`).
struct ChangeSet {
  std::vector<std::string> changed;   // taken alone; a directory's attributes
  std::vector<std::string> replaced;  // directories taken whole (opaque)
  std::vector<std::string> deleted;   // whiteouts
};

// One layer from the parts of the tree at `root` that `changes` names, read
// as ImportDirLayer reads a directory (hardlinks among the named files are
// kept). `source` is recorded as LayerInfo::source.
Result<LayerInfo> ImportChangesLayer(Store& store, const std::string& root,
                                     const ChangeSet& changes,
                                     const ImportOptions& opts,
                                     std::string source);

struct ImportedImage {
  ImageInfo image;
  std::vector<LayerInfo> layers;
};

// An OCI image layout directory. `ref` selects a manifest by its
// org.opencontainers.image.ref.name annotation (empty: the only one, or
// "latest"); index entries that are image indexes are followed, picking the
// host's platform. Every blob read is verified against its sha256 digest and
// every layer against the config's diff_ids. The image is named `name`, or
// the ref when `name` is empty.
Result<ImportedImage> ImportOciLayout(Store& store, const std::string& layout,
                                      std::string_view ref,
                                      std::string_view name,
                                      const ImportOptions& opts);

// A `docker save` / `podman save` archive (legacy manifest.json form, and the
// Docker >= 25 form that is also an OCI layout). Each image in the archive is
// named by its RepoTags, or by `name` when given (only for a single image).
Result<std::vector<ImportedImage>> ImportDockerArchive(
    Store& store, const std::string& file, std::string_view name,
    const ImportOptions& opts);

// A minimal OCI image config for images made from a directory or a tarball:
// architecture/os of the host, rootfs.diff_ids of `layers`, a default PATH.
nlohmann::json MakeImageConfig(const std::vector<LayerInfo>& layers);

}  // namespace strata::layerdb
