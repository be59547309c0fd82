#include "layerdb/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <ctime>

#include "layerdb/base/sys.h"
#include "layerdb/catalog.h"
#include "layerdb/hash.h"
#include "layerdb/keys.h"
#include "layerdb/records.h"
#include "layerdb/tree_io.h"
#include "layerdb/view_merge.h"

namespace strata::layerdb {

namespace {

// The OCI image id is the digest of the config, which names every layer by
// its diff_id. Layers imported from a directory have no diff_id, so then the
// layer ids are hashed in too: two different trees never share an image id.
std::string ImageId(const nlohmann::json& config,
                    const std::vector<TreeId>& layers) {
  size_t listed = 0;
  if (auto r = config.find("rootfs"); r != config.end() && r->is_object())
    if (auto d = r->find("diff_ids"); d != r->end() && d->is_array())
      listed = d->size();
  std::string text = config.dump();
  if (listed != layers.size()) text += "\nstrata-layers:" + keys::Stack(layers);
  return Sha256::Of(text);
}

// Makes the layers of a new image visible, in the image's transaction.
Status ClearPending(lmdb::Txn& txn, const Dbis& d,
                    const std::vector<TreeId>& layers) {
  for (TreeId id : layers) {
    STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(d.layers, keys::Id(id)));
    if (!rec)
      return Error(ENOENT, "create image",
                   "layer " + std::to_string(id) + " was removed concurrently");
    STRATA_ASSIGN_OR_RETURN(LayerInfo layer, DecodeLayer(*rec));
    if (!layer.pending) continue;
    layer.pending = false;
    STRATA_RETURN_IF_ERROR(txn.Put(d.layers, keys::Id(id), EncodeLayer(layer)));
  }
  return Ok();
}

int64_t Now() {
  return static_cast<int64_t>(::time(nullptr));
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '/';
}
bool IsTagChar(char c) {
  return (c >= 'A' && c <= 'Z') || IsNameChar(c);
}

// Iterates a whole DBI, decoding each value with `decode`.
template <class T, class Decode>
Result<std::vector<T>> ListAll(const Index& index, MDB_dbi dbi, Decode decode) {
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index.BeginRead());
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, dbi));
  std::vector<T> out;
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.First());
  while (kv) {
    STRATA_ASSIGN_OR_RETURN(T item, decode(kv->second));
    out.push_back(std::move(item));
    STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
  }
  return out;
}

Result<UniqueFd> Flock(const std::string& path, int op) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, sys::Open(path, O_RDWR | O_CREAT, 0644));
  while (::flock(fd.get(), op) != 0) {
    if (errno != EINTR) return Error::FromErrno("flock", path);
  }
  return fd;
}

}  // namespace

Result<std::string> NormalizeImageName(std::string_view name) {
  auto bad = [&](const char* why) {
    return Error(EINVAL, "image name", "\"" + std::string(name) + "\": " + why);
  };
  if (name.empty()) return bad("empty");
  size_t slash = name.rfind('/');
  size_t colon = name.rfind(':');
  std::string repo(name), tag = "latest";
  if (colon != std::string_view::npos &&
      (slash == std::string_view::npos || colon > slash)) {
    repo = name.substr(0, colon);
    tag = name.substr(colon + 1);
  }
  if (repo.empty() || tag.empty() || tag.size() > 128) return bad("bad tag");
  // A registry host part may carry a port: "host:5000/repo".
  size_t first_slash = repo.find('/');
  for (size_t i = 0; i < repo.size(); ++i) {
    bool in_host = first_slash != std::string::npos && i < first_slash;
    if (!IsNameChar(repo[i]) &&
        !(in_host && (repo[i] == ':' ||
                      std::isupper(static_cast<unsigned char>(repo[i])))))
      return bad("invalid character in repository");
  }
  for (char c : tag)
    if (!IsTagChar(c) && !(c >= 'A' && c <= 'Z'))
      return bad("invalid character in tag");
  if (tag[0] == '.' || tag[0] == '-') return bad("bad tag");
  return repo + ":" + tag;
}

std::string DefaultStoreRoot() {
  if (const char* r = std::getenv("STRATA_ROOT"); r != nullptr && *r != '\0')
    return r;
  if (::geteuid() == 0) return "/var/lib/strata";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x != nullptr && *x != '\0')
    return std::string(x) + "/strata";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.local/share/strata";
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& root, Mode mode) {
  bool writable = mode == Mode::kReadWrite;
  if (writable) STRATA_RETURN_IF_ERROR(sys::MakeDirs(root));
  auto index = Index::Open(root + "/index", writable);
  if (!index) return index.error().WithContext("store " + root);
  std::unique_ptr<BlobStore> blobs;
  if (writable) {
    STRATA_ASSIGN_OR_RETURN(BlobStore b, BlobStore::Open(root + "/blobs"));
    blobs = std::make_unique<BlobStore>(std::move(b));
  } else {
    auto b = BlobStore::Open(root + "/blobs", /*create=*/false);
    if (!b) return b.error().WithContext("store " + root);
    blobs = std::make_unique<BlobStore>(std::move(*b));
  }
  return std::unique_ptr<Store>(
      new Store(root, std::move(*index), std::move(blobs)));
}

Result<UniqueFd> Store::LockShared() const {
  return Flock(root_ + "/store.lock", LOCK_SH);
}

Result<UniqueFd> Store::LockExclusive() const {
  return Flock(root_ + "/store.lock", LOCK_EX);
}

Result<LayerInfo> Store::CommitLayer(const LayerBuilder& builder,
                                     LayerInfo meta) {
  // Blobs first: the index must never reference content that a crash could
  // lose.
  STRATA_RETURN_IF_ERROR(blobs_->Sync());
  const Dbis& d = index_.dbis();
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginWrite());
  if (!meta.diff_id.empty()) {
    STRATA_ASSIGN_OR_RETURN(auto existing,
                            txn.Get(d.layer_by_diff, meta.diff_id));
    if (existing) {
      STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(d.layers, *existing));
      if (rec) {
        STRATA_ASSIGN_OR_RETURN(LayerInfo old, DecodeLayer(*rec));
        old.reused = true;
        return old;
      }
    }
  }
  STRATA_ASSIGN_OR_RETURN(meta.id, index_.NewTreeId(txn));
  STRATA_ASSIGN_OR_RETURN(TreeStats stats,
                          WriteTree(txn, d, meta.id, *builder.root(), false));
  meta.inodes = stats.inodes;
  meta.entries = stats.entries;
  meta.size = stats.bytes;
  if (meta.created == 0) meta.created = Now();
  meta.pending = true;
  STRATA_RETURN_IF_ERROR(
      txn.Put(d.layers, keys::Id(meta.id), EncodeLayer(meta)));
  if (!meta.diff_id.empty())
    STRATA_RETURN_IF_ERROR(
        txn.Put(d.layer_by_diff, meta.diff_id, keys::Id(meta.id)));
  STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
  return meta;
}

Result<ViewInfo> Store::EnsureView(const std::vector<TreeId>& layers) {
  const Dbis& d = index_.dbis();
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginWrite());
  STRATA_ASSIGN_OR_RETURN(auto existing,
                          txn.Get(d.view_by_stack, keys::Stack(layers)));
  if (existing) {
    STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(d.views, *existing));
    if (rec) return DecodeView(*rec);
  }
  auto start = std::chrono::steady_clock::now();
  std::vector<TreeNodePtr> trees;
  for (TreeId id : layers) {
    STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(d.layers, keys::Id(id)));
    if (!rec)
      return Error(ENOENT, "build view",
                   "layer " + std::to_string(id) + " does not exist");
    STRATA_ASSIGN_OR_RETURN(TreeNodePtr t, layerdb::LoadTree(txn, d, id));
    trees.push_back(std::move(t));
  }
  STRATA_ASSIGN_OR_RETURN(TreeNodePtr merged, MergeLayers(trees));
  ViewInfo view;
  view.layers = layers;
  STRATA_ASSIGN_OR_RETURN(view.id, index_.NewTreeId(txn));
  STRATA_ASSIGN_OR_RETURN(TreeStats stats,
                          WriteTree(txn, d, view.id, *merged, true));
  view.inodes = stats.inodes;
  view.entries = stats.entries;
  view.size = stats.bytes;
  view.build_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  STRATA_RETURN_IF_ERROR(txn.Put(d.views, keys::Id(view.id), EncodeView(view)));
  STRATA_RETURN_IF_ERROR(
      txn.Put(d.view_by_stack, keys::Stack(layers), keys::Id(view.id)));
  STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
  return view;
}

Result<ImageInfo> Store::CreateImage(std::string_view name,
                                     const std::vector<TreeId>& layers,
                                     nlohmann::json config,
                                     std::string manifest_digest,
                                     std::string config_digest) {
  STRATA_ASSIGN_OR_RETURN(std::string full, NormalizeImageName(name));
  STRATA_ASSIGN_OR_RETURN(ViewInfo view, EnsureView(layers));
  ImageInfo img;
  img.name = full;
  img.layers = layers;
  img.view = view.id;
  img.id = config_digest.empty() ? ImageId(config, layers)
                                 : std::move(config_digest);
  img.config = std::move(config);
  img.manifest_digest = std::move(manifest_digest);
  img.created = Now();
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginWrite());
  // The view may have been collected between the two transactions.
  STRATA_ASSIGN_OR_RETURN(auto v,
                          txn.Get(index_.dbis().views, keys::Id(view.id)));
  if (!v)
    return Error(EAGAIN, "create image",
                 full + ": view removed concurrently; retry");
  STRATA_RETURN_IF_ERROR(ClearPending(txn, index_.dbis(), layers));
  STRATA_RETURN_IF_ERROR(txn.Put(index_.dbis().images, full, EncodeImage(img)));
  STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
  return img;
}

Result<std::optional<ImageInfo>> Store::FindImage(std::string_view name) const {
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginRead());
  if (auto full = NormalizeImageName(name)) {
    STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(index_.dbis().images, *full));
    if (rec) {
      STRATA_ASSIGN_OR_RETURN(ImageInfo img, DecodeImage(*rec));
      return std::optional(std::move(img));
    }
  }
  // An image id or a unique prefix of one ("sha256:ab12…" or "ab12…").
  std::string prefix(name);
  if (!prefix.starts_with("sha256:")) prefix = "sha256:" + prefix;
  if (prefix.size() < 7 + 4) return std::optional<ImageInfo>();
  STRATA_ASSIGN_OR_RETURN(auto all, ListImages());
  std::optional<ImageInfo> found;
  for (ImageInfo& img : all) {
    if (!img.id.starts_with(prefix)) continue;
    if (found && found->id != img.id)
      return Error(EINVAL, "find image",
                   "\"" + std::string(name) + "\" is ambiguous");
    found = std::move(img);
  }
  return found;
}

Result<std::vector<ImageInfo>> Store::ListImages() const {
  return ListAll<ImageInfo>(index_, index_.dbis().images, DecodeImage);
}

Result<std::vector<LayerInfo>> Store::ListLayers() const {
  STRATA_ASSIGN_OR_RETURN(
      auto all, ListAll<LayerInfo>(index_, index_.dbis().layers, DecodeLayer));
  std::erase_if(all, [](const LayerInfo& l) { return l.pending; });
  return all;
}

Result<std::vector<ViewInfo>> Store::ListViews() const {
  return ListAll<ViewInfo>(index_, index_.dbis().views, DecodeView);
}

Result<std::optional<LayerInfo>> Store::GetLayer(TreeId id) const {
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginRead());
  STRATA_ASSIGN_OR_RETURN(auto rec,
                          txn.Get(index_.dbis().layers, keys::Id(id)));
  if (!rec) return std::optional<LayerInfo>();
  STRATA_ASSIGN_OR_RETURN(LayerInfo l, DecodeLayer(*rec));
  return std::optional(std::move(l));
}

Result<std::optional<LayerInfo>> Store::FindLayer(std::string_view ref) const {
  std::string prefix(ref);
  if (!prefix.empty() &&
      prefix.find_first_not_of("0123456789") == std::string::npos &&
      prefix.size() < 12)
    return GetLayer(std::stoull(prefix));
  if (!prefix.starts_with("sha256:")) prefix = "sha256:" + prefix;
  STRATA_ASSIGN_OR_RETURN(auto all, ListLayers());
  std::optional<LayerInfo> found;
  for (LayerInfo& l : all) {
    if (!l.diff_id.starts_with(prefix)) continue;
    if (found)
      return Error(EINVAL, "find layer",
                   "\"" + std::string(ref) + "\" is ambiguous");
    found = std::move(l);
  }
  return found;
}

Result<std::optional<ViewInfo>> Store::GetView(TreeId id) const {
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginRead());
  STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(index_.dbis().views, keys::Id(id)));
  if (!rec) return std::optional<ViewInfo>();
  STRATA_ASSIGN_OR_RETURN(ViewInfo v, DecodeView(*rec));
  return std::optional(std::move(v));
}

Result<ImageInfo> Store::Tag(std::string_view src, std::string_view dst) {
  STRATA_ASSIGN_OR_RETURN(std::string full, NormalizeImageName(dst));
  STRATA_ASSIGN_OR_RETURN(auto img, FindImage(src));
  if (!img)
    return Error(ENOENT, "tag", "image \"" + std::string(src) + "\" not found");
  img->name = full;
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginWrite());
  STRATA_RETURN_IF_ERROR(
      txn.Put(index_.dbis().images, full, EncodeImage(*img)));
  STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
  return *img;
}

Status Store::RemoveImage(std::string_view name) {
  STRATA_ASSIGN_OR_RETURN(auto img, FindImage(name));
  if (!img)
    return Error(ENOENT, "rmi",
                 "image \"" + std::string(name) + "\" not found");
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginWrite());
  STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(index_.dbis().images, img->name));
  (void)gone;
  return std::move(txn).Commit();
}

Status Store::DropUnusedLayers(const std::vector<TreeId>& ids) {
  STRATA_ASSIGN_OR_RETURN(auto images, ListImages());
  STRATA_ASSIGN_OR_RETURN(auto views, ListViews());
  auto used = [&](TreeId id) {
    for (const ImageInfo& i : images)
      if (std::find(i.layers.begin(), i.layers.end(), id) != i.layers.end())
        return true;
    for (const ViewInfo& v : views)
      if (std::find(v.layers.begin(), v.layers.end(), id) != v.layers.end())
        return true;
    return false;
  };
  const Dbis& d = index_.dbis();
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginWrite());
  for (TreeId id : ids) {
    if (used(id)) continue;
    STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(d.layers, keys::Id(id)));
    if (!rec) continue;
    STRATA_ASSIGN_OR_RETURN(LayerInfo layer, DecodeLayer(*rec));
    STRATA_RETURN_IF_ERROR(DeleteLayer(txn, d, layer));
  }
  return std::move(txn).Commit();
}

Result<TreeNodePtr> Store::LoadTree(TreeId id) const {
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index_.BeginRead());
  return layerdb::LoadTree(txn, index_.dbis(), id);
}

}  // namespace strata::layerdb
