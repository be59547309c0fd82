#pragma once

// The small records of the index read in one transaction, and helpers shared
// by gc, fsck and df (internal to layerdb; public API in lifecycle.h).

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include <spdlog/spdlog.h>

#include "layerdb/base/error.h"
#include "layerdb/index.h"
#include "layerdb/store.h"

namespace strata::layerdb {

using BlobSet = std::unordered_set<BlobKey, BlobKeyHash>;
using TreeSet = std::set<TreeId>;

// The "layerdb" logger, or the default one when main made none.
std::shared_ptr<spdlog::logger> LifecycleLog();

// Calls fn(key, value) for every record of `dbi`, in key order.
template <class Fn>
Status ForEachRecord(const lmdb::Txn& txn, MDB_dbi dbi, Fn&& fn) {
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, dbi));
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.First());
  while (kv) {
    STRATA_RETURN_IF_ERROR(fn(kv->first, kv->second));
    STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
  }
  return Ok();
}

struct Catalog {
  std::vector<ImageInfo> images;
  std::map<TreeId, LayerInfo> layers;
  std::map<TreeId, ViewInfo> views;
};

// Reads images, layers and views. Undecodable records fail the read, unless
// `bad` collects them (one line each; fsck).
Result<Catalog> ReadCatalog(const lmdb::Txn& txn, const Dbis& d,
                            std::vector<std::string>* bad);

// Tree ids that have node records, found by skipping from tree to tree.
Result<TreeSet> TreesWithNodes(const lmdb::Txn& txn, const Dbis& d);

// Delete a layer or a view: its record, its dedup key (only if that still
// names it) and its tree records. In the caller's write transaction.
Status DeleteLayer(lmdb::Txn& txn, const Dbis& d, const LayerInfo& l);
Status DeleteView(lmdb::Txn& txn, const Dbis& d, const ViewInfo& v);

}  // namespace strata::layerdb
