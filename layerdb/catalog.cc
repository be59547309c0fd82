#include "layerdb/catalog.h"

#include "layerdb/keys.h"
#include "layerdb/records.h"
#include "layerdb/tree_io.h"

namespace strata::layerdb {

std::shared_ptr<spdlog::logger> LifecycleLog() {
  auto l = spdlog::get("layerdb");
  return l ? l : spdlog::default_logger();
}

namespace {

// Deletes `key` from `dbi` only if it still maps to tree `id`.
Status DelIfPointsTo(lmdb::Txn& txn, MDB_dbi dbi, const std::string& key,
                     TreeId id) {
  if (key.empty()) return Ok();
  STRATA_ASSIGN_OR_RETURN(auto v, txn.Get(dbi, key));
  if (!v || *v != keys::Id(id)) return Ok();
  STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(dbi, key));
  (void)gone;
  return Ok();
}

// Undecodable records fail the read, unless `bad` collects them (fsck).
template <class T, class Decode, class Add>
Status ReadRecords(const lmdb::Txn& txn, MDB_dbi dbi, const char* what,
                   Decode decode, Add add, std::vector<std::string>* bad) {
  return ForEachRecord(
      txn, dbi, [&](lmdb::Bytes key, lmdb::Bytes value) -> Status {
        Result<T> rec = decode(value);
        if (rec) {
          add(std::move(*rec));
          return Ok();
        }
        if (bad == nullptr) return rec.error();
        std::string name = key.size() == 8 ? std::to_string(keys::GetBE64(key))
                                           : std::string(key);
        bad->push_back(std::string(what) + " record " + name + ": " +
                       rec.error().ToString());
        return Ok();
      });
}

}  // namespace

Result<Catalog> ReadCatalog(const lmdb::Txn& txn, const Dbis& d,
                            std::vector<std::string>* bad) {
  Catalog c;
  STRATA_RETURN_IF_ERROR(ReadRecords<ImageInfo>(
      txn, d.images, "image", DecodeImage,
      [&](ImageInfo i) { c.images.push_back(std::move(i)); }, bad));
  STRATA_RETURN_IF_ERROR(ReadRecords<LayerInfo>(
      txn, d.layers, "layer", DecodeLayer,
      [&](LayerInfo l) { c.layers.emplace(l.id, std::move(l)); }, bad));
  STRATA_RETURN_IF_ERROR(ReadRecords<ViewInfo>(
      txn, d.views, "view", DecodeView,
      [&](ViewInfo v) { c.views.emplace(v.id, std::move(v)); }, bad));
  return c;
}

Result<TreeSet> TreesWithNodes(const lmdb::Txn& txn, const Dbis& d) {
  TreeSet trees;
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, d.nodes));
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.First());
  while (kv && kv->first.size() >= 8) {
    TreeId t = keys::GetBE64(kv->first);
    trees.insert(t);
    STRATA_ASSIGN_OR_RETURN(kv, cur.SeekRange(keys::Tree(t + 1)));
  }
  return trees;
}

Status DeleteLayer(lmdb::Txn& txn, const Dbis& d, const LayerInfo& l) {
  STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(d.layers, keys::Id(l.id)));
  (void)gone;
  STRATA_RETURN_IF_ERROR(DelIfPointsTo(txn, d.layer_by_diff, l.diff_id, l.id));
  return DeleteTree(txn, d, l.id);
}

Status DeleteView(lmdb::Txn& txn, const Dbis& d, const ViewInfo& v) {
  STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(d.views, keys::Id(v.id)));
  (void)gone;
  STRATA_RETURN_IF_ERROR(
      DelIfPointsTo(txn, d.view_by_stack, keys::Stack(v.layers), v.id));
  return DeleteTree(txn, d, v.id);
}

}  // namespace strata::layerdb
