#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"
#include "layerdb/catalog.h"
#include "layerdb/hash.h"
#include "layerdb/keys.h"
#include "layerdb/lifecycle.h"
#include "layerdb/node.h"
#include "layerdb/records.h"
#include "layerdb/tree_io.h"

// df: logical size, stored size, what deduplication saved.

namespace strata::layerdb {

namespace {

// Bytes of inline regular files in the trees of `layers`.
Result<uint64_t> InlineBytes(const lmdb::Txn& txn, const Dbis& d,
                             const Catalog& c) {
  uint64_t total = 0;
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, d.nodes));
  for (const auto& [id, layer] : c.layers) {
    const std::string prefix = keys::Tree(id);
    STRATA_ASSIGN_OR_RETURN(auto kv, cur.SeekRange(prefix));
    while (kv && kv->first.starts_with(prefix)) {
      STRATA_ASSIGN_OR_RETURN(NodeView n, NodeView::Parse(kv->second));
      if (n.attr().is_reg() && (n.flags() & kFlagInline) != 0)
        total += n.inline_data().size();
      STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
    }
  }
  return total;
}

}  // namespace

Result<DiskUsage> MeasureDiskUsage(const Store& store) {
  DiskUsage du;
  {
    STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, store.index().BeginRead());
    const Dbis& d = store.index().dbis();
    STRATA_ASSIGN_OR_RETURN(Catalog c, ReadCatalog(txn, d, nullptr));
    du.images = c.images.size();
    du.layers = c.layers.size();
    // Each image once: a tag is another name, not another copy.
    std::set<std::string> seen;
    for (const ImageInfo& img : c.images) {
      if (!seen.insert(img.id).second) continue;
      if (auto v = c.views.find(img.view); v != c.views.end())
        du.logical_bytes += v->second.size;
    }
    for (const auto& [id, layer] : c.layers)
      du.layer_bytes += layer.size;
    STRATA_ASSIGN_OR_RETURN(du.inline_bytes, InlineBytes(txn, d, c));
  }
  STRATA_RETURN_IF_ERROR(store.blobs().ForEach(
      [&](const BlobKey&, const std::string& path) -> Status {
        STRATA_ASSIGN_OR_RETURN(struct stat st, sys::Lstat(path));
        ++du.blobs;
        du.blob_bytes += static_cast<uint64_t>(st.st_size);
        return Ok();
      }));
  STRATA_ASSIGN_OR_RETURN(struct stat idx,
                          sys::Lstat(store.root() + "/index/data.mdb"));
  du.index_bytes = static_cast<uint64_t>(idx.st_size);
  du.stored_bytes = du.blob_bytes + du.index_bytes;
  uint64_t kept = du.blob_bytes + du.inline_bytes;
  du.dedup_saved = du.logical_bytes > kept ? du.logical_bytes - kept : 0;
  return du;
}

}  // namespace strata::layerdb
