#include "layerdb/index.h"

#include <sys/stat.h>

#include "layerdb/base/sys.h"
#include "layerdb/keys.h"

namespace strata::layerdb {

namespace {

// Sparse: LMDB only uses what it writes. 64 GiB holds ~10^8 inodes.
constexpr size_t kMapSize = size_t{64} << 30;

Status OpenDbis(lmdb::Txn& txn, bool create, Dbis& d) {
  unsigned flags = create ? MDB_CREATE : 0;
  struct Named {
    const char* name;
    MDB_dbi* dbi;
  } all[] = {{"meta", &d.meta},
             {"layers", &d.layers},
             {"layer_by_diff", &d.layer_by_diff},
             {"views", &d.views},
             {"view_by_stack", &d.view_by_stack},
             {"images", &d.images},
             {"nodes", &d.nodes},
             {"dirents", &d.dirents},
             {"dirseq", &d.dirseq}};
  for (const Named& n : all) {
    int rc = mdb_dbi_open(txn.get(), n.name, flags, n.dbi);
    if (rc == MDB_NOTFOUND)
      return Error(ENOENT, "open index", "store is not initialised");
    if (rc != 0) return lmdb::ToError(rc, "mdb_dbi_open");
  }
  return Ok();
}

std::string U32(uint32_t v) {
  std::string s;
  keys::PutBE32(s, v);
  return s;
}

Status CheckFormat(const lmdb::Txn& txn, const Dbis& d) {
  STRATA_ASSIGN_OR_RETURN(auto v, txn.Get(d.meta, "format"));
  if (!v || v->size() != 4)
    return Error(EIO, "open index", "format version record is missing");
  uint32_t version = keys::GetBE32(*v);
  if (version > kFormatVersion)
    return Error(ENOTSUP, "open index",
                 "store format " + std::to_string(version) +
                     " is newer than this strata supports (" +
                     std::to_string(kFormatVersion) + "); upgrade strata");
  return Ok();
}

}  // namespace

Result<Index> Index::Open(const std::string& dir, bool writable) {
  if (writable) {
    STRATA_RETURN_IF_ERROR(sys::MakeDirs(dir));
  } else if (auto st = sys::Lstat(dir + "/data.mdb"); !st) {
    return Error(ENOENT, "open store",
                 dir + " has no index (nothing imported yet?)");
  }
  Index idx;
  STRATA_ASSIGN_OR_RETURN(
      idx.env_, lmdb::Env::Open(dir, writable ? 0 : MDB_RDONLY, kMapSize, 16));
  idx.env_.ReaderCheck();
  if (writable) {
    STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, idx.BeginWrite());
    STRATA_RETURN_IF_ERROR(OpenDbis(txn, true, idx.dbis_));
    STRATA_ASSIGN_OR_RETURN(auto v, txn.Get(idx.dbis_.meta, "format"));
    if (!v) {
      STRATA_RETURN_IF_ERROR(
          txn.Put(idx.dbis_.meta, "format", U32(kFormatVersion)));
      STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
    } else {
      STRATA_RETURN_IF_ERROR(CheckFormat(txn, idx.dbis_));
      STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
    }
    return idx;
  }
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, idx.BeginRead());
  STRATA_RETURN_IF_ERROR(OpenDbis(txn, false, idx.dbis_));
  STRATA_RETURN_IF_ERROR(CheckFormat(txn, idx.dbis_));
  // DBI handles opened in a read txn stay valid after it ends when it is
  // committed (lmdb.h, mdb_dbi_open).
  STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
  return idx;
}

Result<uint64_t> Index::NewTreeId(lmdb::Txn& txn) const {
  STRATA_ASSIGN_OR_RETURN(auto v, txn.Get(dbis_.meta, "next_tree"));
  uint64_t id = v && v->size() == 8 ? keys::GetBE64(*v) : 1;
  std::string next;
  keys::PutBE64(next, id + 1);
  STRATA_RETURN_IF_ERROR(txn.Put(dbis_.meta, "next_tree", next));
  return id;
}

}  // namespace strata::layerdb
