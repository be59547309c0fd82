#pragma once

// Store: the embedded image store (design §1). One directory holds
//   index/      the LMDB index (layers, views, images, trees)
//   blobs/      content-addressed regular-file contents
//   store.lock  flock: shared while importing or deleting, exclusive for gc
//
// Data flows one way: importers build a layer in memory (LayerBuilder) and
// store file contents as blobs, then CommitLayer makes the layer visible in
// one write transaction; CreateImage merges a layer stack into a view (once
// per distinct stack) and names it. Nothing is visible before its commit, so
// a killed import leaves only unreferenced blobs, which Gc removes.
//
// Thread-safety: a Store may be shared by threads; several processes may use
// one store at once (LMDB serialises writers; gc excludes importers).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"
#include "layerdb/blob_store.h"
#include "layerdb/index.h"
#include "layerdb/layer_builder.h"

namespace strata::layerdb {

using TreeId = uint64_t;

struct LayerInfo {
  TreeId id = 0;
  std::string diff_id;            // sha256 of the uncompressed tar, if known
  std::string compressed_digest;  // sha256 of the blob as distributed
  std::string media_type;
  std::string source;  // what was imported ("tar:/path", ...)
  uint64_t size = 0;   // logical bytes of regular files
  uint64_t inodes = 0;
  uint64_t entries = 0;
  int64_t created = 0;  // unix seconds
  // A layer is pending from its commit until an image names it: listings
  // hide it, and gc removes it if its import was killed before that.
  bool pending = false;
  // Not stored: set by CommitLayer when an existing layer (same diff_id) was
  // returned instead of a new one.
  bool reused = false;
};

struct ViewInfo {
  TreeId id = 0;
  std::vector<TreeId> layers;  // bottom first
  uint64_t inodes = 0;
  uint64_t entries = 0;
  uint64_t size = 0;
  double build_seconds = 0;
};

struct ImageInfo {
  std::string name;  // "repo:tag"
  std::string id;    // sha256 of the config JSON
  std::vector<TreeId> layers;
  TreeId view = 0;
  nlohmann::json config;  // OCI image config
  std::string manifest_digest;
  int64_t created = 0;
};

// The JSON form of the records, as stored in the index (docs/format.md) and
// as `strata inspect` and `--json` listings print them.
nlohmann::json ToJson(const LayerInfo& layer);
nlohmann::json ToJson(const ViewInfo& view);

// "busybox" → "busybox:latest"; "host:5000/a" → "host:5000/a:latest".
// EINVAL when the name is empty or contains characters outside the OCI
// reference grammar.
Result<std::string> NormalizeImageName(std::string_view name);

// --root, else $STRATA_ROOT, else /var/lib/strata (root) or
// $XDG_DATA_HOME/strata (~/.local/share/strata).
std::string DefaultStoreRoot();

class StoreLock;

class Store {
 public:
  enum class Mode { kReadOnly, kReadWrite };
  static Result<std::unique_ptr<Store>> Open(const std::string& root,
                                             Mode mode);

  const std::string& root() const { return root_; }
  const BlobStore& blobs() const { return *blobs_; }
  BlobStore& blobs() { return *blobs_; }
  const Index& index() const { return index_; }

  // Locks store.lock: shared by importers and rmi, exclusive by gc. The lock
  // lasts as long as the returned object.
  Result<UniqueFd> LockShared() const;
  Result<UniqueFd> LockExclusive() const;

  // Stores a built layer, pending until CreateImage names it (so a killed
  // import leaves no visible layer). If a layer with the same diff_id exists
  // it is returned instead (the new records are not written).
  Result<LayerInfo> CommitLayer(const LayerBuilder& builder, LayerInfo meta);

  // Names an image made of `layers` (bottom first); builds the view of that
  // stack unless one exists. Replaces an image of the same name. The image id
  // is `config_digest` (the OCI image id: the digest of the config blob as
  // distributed) when given, else computed from the config.
  Result<ImageInfo> CreateImage(std::string_view name,
                                const std::vector<TreeId>& layers,
                                nlohmann::json config,
                                std::string manifest_digest = "",
                                std::string config_digest = "");

  // Deletes the layers among `ids` that no image and no view uses: the undo
  // of a multi-layer import that failed after committing some of its layers.
  Status DropUnusedLayers(const std::vector<TreeId>& ids);

  Result<std::optional<ImageInfo>> FindImage(std::string_view name) const;
  Result<std::vector<ImageInfo>> ListImages() const;
  // Layers that some image has named (pending ones are left out).
  Result<std::vector<LayerInfo>> ListLayers() const;
  Result<std::vector<ViewInfo>> ListViews() const;
  Result<std::optional<LayerInfo>> GetLayer(TreeId id) const;
  // By full or abbreviated diff_id ("sha256:ab12", "ab12"), or numeric id.
  Result<std::optional<LayerInfo>> FindLayer(std::string_view ref) const;
  Result<std::optional<ViewInfo>> GetView(TreeId id) const;

  // Adds `dst` as another name for the image `src`.
  Result<ImageInfo> Tag(std::string_view src, std::string_view dst);
  // Removes a name. Layers and blobs stay until Gc.
  Status RemoveImage(std::string_view name);

  // Loads a stored tree (layer or view) into memory.
  Result<TreeNodePtr> LoadTree(TreeId id) const;

 private:
  Store(std::string root, Index index, std::unique_ptr<BlobStore> blobs)
      : root_(std::move(root)),
        index_(std::move(index)),
        blobs_(std::move(blobs)) {}
  Result<ViewInfo> EnsureView(const std::vector<TreeId>& layers);

  std::string root_;
  Index index_;
  std::unique_ptr<BlobStore> blobs_;
};

}  // namespace strata::layerdb
