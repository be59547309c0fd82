#pragma once

// Index: the LMDB environment of a store and its named databases
// (internal to layerdb; the layout is documented in docs/format.md).
//
// Thread-safety: Index is thread-safe once opened (MDB_NOTLS).

#include <cstdint>
#include <string>

#include "layerdb/base/error.h"
#include "layerdb/lmdb/lmdb.h"

namespace strata::layerdb {

// The on-disk format version this code reads and writes. A store with a
// larger version is refused; see docs/format.md for the history.
inline constexpr uint32_t kFormatVersion = 1;

struct Dbis {
  MDB_dbi meta = 0;           // string → value (format, next_tree)
  MDB_dbi layers = 0;         // tree id (BE64) → LayerInfo JSON
  MDB_dbi layer_by_diff = 0;  // diff_id → tree id (BE64)
  MDB_dbi views = 0;          // tree id (BE64) → ViewInfo JSON
  MDB_dbi view_by_stack = 0;  // layer ids (BE64 each) → tree id (BE64)
  MDB_dbi images = 0;         // "name:tag" → ImageInfo JSON
  MDB_dbi nodes = 0;          // tree ‖ ino → node record
  MDB_dbi dirents = 0;        // tree ‖ parent ‖ name → ino, type
  MDB_dbi dirseq = 0;         // tree ‖ parent ‖ seq → ino, type, name
};

class Index {
 public:
  // Opens `dir` (created when writable). A read-only open of a missing or
  // uninitialised index fails with ENOENT. Errors: ENOTSUP for a newer
  // format, EIO for a damaged one.
  static Result<Index> Open(const std::string& dir, bool writable);

  const lmdb::Env& env() const { return env_; }
  const Dbis& dbis() const { return dbis_; }

  Result<lmdb::Txn> BeginRead() const { return lmdb::Txn::BeginRead(env_); }
  Result<lmdb::Txn> BeginWrite() const { return lmdb::Txn::BeginWrite(env_); }

  // Allocates a new tree id inside `txn` (ids grow and are never reused).
  Result<uint64_t> NewTreeId(lmdb::Txn& txn) const;

 private:
  lmdb::Env env_;
  Dbis dbis_;
};

}  // namespace strata::layerdb
