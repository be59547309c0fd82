#include "layerdb/lmdb/lmdb.h"

#include <spdlog/spdlog.h>

namespace strata::layerdb::lmdb {

Error ToError(int rc, const char* op) {
  switch (rc) {
    case MDB_NOTFOUND:
      return Error(ENOENT, op);
    case MDB_KEYEXIST:
      return Error(EEXIST, op);
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
      return Error(ENOSPC, op, "store index is full");
    case MDB_READERS_FULL:
      return Error(EAGAIN, op, "too many store readers");
    case MDB_CORRUPTED:
    case MDB_PANIC:
    case MDB_VERSION_MISMATCH:
    case MDB_INVALID:
    case MDB_PAGE_NOTFOUND:
      spdlog::error("lmdb: {}: {}", op, mdb_strerror(rc));
      return Error(EIO, op, mdb_strerror(rc));
    default:
      if (rc > 0) return Error(rc, op);
      return Error(EIO, op, mdb_strerror(rc));
  }
}

Result<Env> Env::Open(const std::string& dir, unsigned flags, size_t map_size,
                      unsigned max_dbs) {
  Env env;
  int rc = mdb_env_create(&env.env_);
  if (rc != 0) return ToError(rc, "mdb_env_create");
  if ((rc = mdb_env_set_mapsize(env.env_, map_size)) != 0)
    return ToError(rc, "mdb_env_set_mapsize");
  if ((rc = mdb_env_set_maxdbs(env.env_, max_dbs)) != 0)
    return ToError(rc, "mdb_env_set_maxdbs");
  if ((rc = mdb_env_set_maxreaders(env.env_, 1024)) != 0)
    return ToError(rc, "mdb_env_set_maxreaders");
  rc = mdb_env_open(env.env_, dir.c_str(), flags | MDB_NOTLS, 0644);
  if (rc != 0) return ToError(rc, "mdb_env_open").WithContext(dir);
  return env;
}

int Env::ReaderCheck() {
  int dead = 0;
  if (env_ != nullptr) mdb_reader_check(env_, &dead);
  return dead;
}

void Env::Close() {
  if (env_ != nullptr) mdb_env_close(env_);
  env_ = nullptr;
}

Result<Txn> Txn::BeginRead(const Env& env) {
  Txn t;
  int rc = mdb_txn_begin(env.get(), nullptr, MDB_RDONLY, &t.txn_);
  if (rc != 0) return ToError(rc, "mdb_txn_begin");
  return t;
}

Result<Txn> Txn::BeginWrite(const Env& env) {
  Txn t;
  int rc = mdb_txn_begin(env.get(), nullptr, 0, &t.txn_);
  if (rc != 0) return ToError(rc, "mdb_txn_begin");
  return t;
}

Result<std::optional<Bytes>> Txn::Get(MDB_dbi dbi, Bytes key) const {
  MDB_val k = ToVal(key);
  MDB_val v;
  int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<Bytes>();
  if (rc != 0) return ToError(rc, "mdb_get");
  return std::optional<Bytes>(FromVal(v));
}

Status Txn::Put(MDB_dbi dbi, Bytes key, Bytes value, unsigned flags) {
  MDB_val k = ToVal(key);
  MDB_val v = ToVal(value);
  int rc = mdb_put(txn_, dbi, &k, &v, flags);
  if (rc != 0) return ToError(rc, "mdb_put");
  return Ok();
}

Result<bool> Txn::Del(MDB_dbi dbi, Bytes key) {
  MDB_val k = ToVal(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) return ToError(rc, "mdb_del");
  return true;
}

Status Txn::Commit() && {
  MDB_txn* t = std::exchange(txn_, nullptr);
  int rc = mdb_txn_commit(t);
  if (rc != 0) return ToError(rc, "mdb_txn_commit");
  return Ok();
}

void Txn::Abort() {
  if (txn_ != nullptr) mdb_txn_abort(txn_);
  txn_ = nullptr;
}

void Txn::Reset() {
  if (txn_ != nullptr) mdb_txn_reset(txn_);
}

Status Txn::Renew() {
  int rc = mdb_txn_renew(txn_);
  if (rc != 0) return ToError(rc, "mdb_txn_renew");
  return Ok();
}

Result<Cursor> Cursor::Open(const Txn& txn, MDB_dbi dbi) {
  Cursor c;
  int rc = mdb_cursor_open(txn.get(), dbi, &c.cur_);
  if (rc != 0) return ToError(rc, "mdb_cursor_open");
  return c;
}

Result<std::optional<std::pair<Bytes, Bytes>>> Cursor::Op(MDB_val* k,
                                                          MDB_cursor_op op) {
  MDB_val v;
  int rc = mdb_cursor_get(cur_, k, &v, op);
  if (rc == MDB_NOTFOUND) return std::optional<std::pair<Bytes, Bytes>>();
  if (rc != 0) return ToError(rc, "mdb_cursor_get");
  return std::optional(std::pair(FromVal(*k), FromVal(v)));
}

Result<std::optional<std::pair<Bytes, Bytes>>> Cursor::SeekRange(Bytes key) {
  MDB_val k = ToVal(key);
  return Op(&k, MDB_SET_RANGE);
}

Result<std::optional<std::pair<Bytes, Bytes>>> Cursor::First() {
  MDB_val k{};
  return Op(&k, MDB_FIRST);
}

Result<std::optional<std::pair<Bytes, Bytes>>> Cursor::Next() {
  MDB_val k{};
  return Op(&k, MDB_NEXT);
}

Status Cursor::DelCurrent() {
  int rc = mdb_cursor_del(cur_, 0);
  if (rc != 0) return ToError(rc, "mdb_cursor_del");
  return Ok();
}

void Cursor::Close() {
  if (cur_ != nullptr) mdb_cursor_close(cur_);
  cur_ = nullptr;
}

}  // namespace strata::layerdb::lmdb
