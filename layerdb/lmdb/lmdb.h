#pragma once

// RAII wrappers over LMDB, internal to layerdb (namespace
// strata::layerdb::lmdb).
//
// Rules kept here (lmdb.h "Caveats"):
//  - Env is opened with MDB_NOTLS so a read Txn is not tied to a thread (the
//    FUSE loop's workers come and go); open it once per process, after fork.
//  - A Txn aborts in its destructor; Commit() consumes it.
//  - A Cursor must not outlive its Txn and is closed before a write commit.
//  - Values returned by Get()/Cursor are views into the map, valid only until
//    the Txn ends: callers copy what they keep.
//
// Thread-safety: Env is thread-safe; a Txn or Cursor belongs to one thread at
// a time.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <lmdb.h>

#include "layerdb/base/error.h"

namespace strata::layerdb::lmdb {

// Maps an LMDB return code to an Error (MDB_NOTFOUND → ENOENT,
// MDB_KEYEXIST → EEXIST, MDB_MAP_FULL/MDB_TXN_FULL → ENOSPC,
// MDB_READERS_FULL → EAGAIN, corruption/panic/version → EIO).
Error ToError(int rc, const char* op);

using Bytes = std::string_view;  // raw key/value bytes

inline MDB_val ToVal(Bytes b) {
  return MDB_val{b.size(), const_cast<char*>(b.data())};
}
inline Bytes FromVal(const MDB_val& v) {
  return Bytes(static_cast<const char*>(v.mv_data), v.mv_size);
}

class Env {
 public:
  Env() = default;
  Env(Env&& o) noexcept : env_(std::exchange(o.env_, nullptr)) {}
  Env& operator=(Env&& o) noexcept {
    Close();
    env_ = std::exchange(o.env_, nullptr);
    return *this;
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  ~Env() { Close(); }

  // Opens (creating if needed) the environment in directory `dir`.
  static Result<Env> Open(const std::string& dir, unsigned flags,
                          size_t map_size, unsigned max_dbs);

  MDB_env* get() const { return env_; }
  // Clears reader slots of dead processes; returns how many.
  int ReaderCheck();

 private:
  void Close();
  MDB_env* env_ = nullptr;
};

class Cursor;

class Txn {
 public:
  Txn() = default;
  Txn(Txn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  Txn& operator=(Txn&& o) noexcept {
    Abort();
    txn_ = std::exchange(o.txn_, nullptr);
    return *this;
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() { Abort(); }

  static Result<Txn> BeginRead(const Env& env);
  static Result<Txn> BeginWrite(const Env& env);

  MDB_txn* get() const { return txn_; }

  // nullopt when the key is absent. The view dies with the Txn.
  Result<std::optional<Bytes>> Get(MDB_dbi dbi, Bytes key) const;
  Status Put(MDB_dbi dbi, Bytes key, Bytes value, unsigned flags = 0);
  // Returns false when the key was absent.
  Result<bool> Del(MDB_dbi dbi, Bytes key);

  Status Commit() &&;
  void Abort();

  // Read txns only: Reset() ends the snapshot but keeps the handle (and,
  // with MDB_NOTLS, its reader slot); Renew() starts a new snapshot on it.
  // This saves the malloc and slot lookup of BeginRead for a handle that is
  // recycled per request (lmdb.h, mdb_txn_reset). Views from the old
  // snapshot die at Reset(). A reset Txn may be destroyed.
  void Reset();
  Status Renew();

 private:
  MDB_txn* txn_ = nullptr;
};

class Cursor {
 public:
  Cursor() = default;
  Cursor(Cursor&& o) noexcept : cur_(std::exchange(o.cur_, nullptr)) {}
  Cursor& operator=(Cursor&& o) noexcept {
    Close();
    cur_ = std::exchange(o.cur_, nullptr);
    return *this;
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor() { Close(); }

  static Result<Cursor> Open(const Txn& txn, MDB_dbi dbi);

  // Positions at the first key >= `key`; nullopt past the end.
  Result<std::optional<std::pair<Bytes, Bytes>>> SeekRange(Bytes key);
  Result<std::optional<std::pair<Bytes, Bytes>>> First();
  Result<std::optional<std::pair<Bytes, Bytes>>> Next();
  // Deletes the current item (write txns only).
  Status DelCurrent();
  void Close();

 private:
  Result<std::optional<std::pair<Bytes, Bytes>>> Op(MDB_val* k,
                                                    MDB_cursor_op op);
  MDB_cursor* cur_ = nullptr;
};

}  // namespace strata::layerdb::lmdb
