#pragma once

// TreeReader: the read API of a stored tree, the one the FUSE daemon serves a
// view through (design §2). A view is the merged tree of an image
// (ImageInfo::view): whiteouts and opaque directories applied, hardlinks
// resolved, nlink counted, inode numbers assigned. Its root is kRootIno.
//
// One TreeReader is one LMDB read transaction: a consistent snapshot of the
// index. Use one per FUSE request and end it before replying; never hold one
// across requests (a long-lived reader pins old pages and the index file
// grows; lmdb.h "Caveats"). A per-worker reader may be recycled with Reset()
// after each request and Renew() before the next.
//
// Lookup, GetAttr, GetNode, ReadLink, GetXattr and ListXattrs do not
// allocate: keys are built on the stack and results point into the memory
// map. ReadDir/ReadDirPlus allocate only LMDB's cursor, and Begin LMDB's txn
// handle (Renew reuses it). Every
// std::string_view and NodeView they return is valid until the reader ends
// (is destroyed or Reset(); moving it keeps them valid); copy what must
// outlive it.
//
// Absence is a value (std::nullopt), not an error. Errors callers can expect:
//   ENOENT        an inode that does not exist, where the result cannot be
//                 "absent" (Status-returning calls, OpenContent)
//   ENOTDIR       ReadDir/ReadDirPlus on a non-directory
//   EINVAL        ReadLink on a non-symlink; OpenContent on a non-file
//   EISDIR        OpenContent on a directory
//   ENAMETOOLONG  Lookup of a name over 255 bytes
//   EAGAIN        Begin/Renew: every reader slot is taken
//   EIO           a malformed record or a dangling reference (a damaged
//                 index or a missing blob; fsck finds and repairs these)
//
// Thread-safety: a TreeReader is not thread-safe; one thread uses it at a
// time. The environment is opened with MDB_NOTLS, so a reader may move to
// another thread between calls, and many readers may be open at once in
// any threads and processes (up to the reader-slot limit, then EAGAIN);
// readers never block the writer or each other. The Store must outlive every
// reader made from it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "layerdb/base/error.h"
#include "layerdb/base/function_ref.h"
#include "layerdb/base/unique_fd.h"
#include "layerdb/lmdb/lmdb.h"
#include "layerdb/node.h"
#include "layerdb/store.h"

namespace strata::layerdb {

// The inode number of the root directory of every tree.
inline constexpr uint64_t kRootIno = 1;

// A name resolved in a directory.
struct Entry {
  uint64_t ino = 0;
  Attr attr;
};

// One directory entry as readdir returns it. `name` is valid until the reader
// ends. `type` is the S_IFMT bits of the entry's mode (st_mode & S_IFMT).
// `next_offset` is the offset that resumes the listing right after this
// entry: pass it as `offset` to the next ReadDir. Offsets are in [1, 2^32),
// stable for the life of the view (a view never changes) and never 0, so
// that 0 can mean "start"; the filesystem may shift them to make room for
// its own "." and "..".
struct DirEntry {
  std::string_view name;
  uint64_t ino = 0;
  uint32_t type = 0;
  uint64_t next_offset = 0;
};

// The content of a regular file, independent of the reader that opened it.
struct FileContent {
  UniqueFd fd;              // read-only blob, when the bytes are in a blob
  std::string inline_data;  // the bytes otherwise (empty for an empty file)
  uint64_t size = 0;        // st_size

  bool in_blob() const { return fd.valid(); }
};

class TreeReader {
 public:
  // Starts a read transaction on the store's index. Errors: EAGAIN (all
  // reader slots taken), EIO.
  static Result<TreeReader> Begin(const Store& store);

  TreeReader(TreeReader&&) noexcept = default;
  TreeReader& operator=(TreeReader&&) noexcept = default;
  TreeReader(const TreeReader&) = delete;
  TreeReader& operator=(const TreeReader&) = delete;
  ~TreeReader() = default;

  // Ends the snapshot and keeps the handle for Renew(); every view returned
  // so far dies. Only Renew() or destruction may follow.
  void Reset() { txn_.Reset(); }
  // Starts a fresh snapshot on a Reset() reader. Errors: EAGAIN, EIO,
  // EINVAL (the reader was not reset).
  Status Renew() { return txn_.Renew(); }

  // Resolves `name` in directory `dir`: nullopt when there is no such name
  // (also when `dir` is not a directory). "." and ".." are not stored; the
  // filesystem answers them. Two B-tree probes (entry, then node).
  // Errors: ENAMETOOLONG, EIO.
  Result<std::optional<Entry>> Lookup(TreeId tree, uint64_t dir,
                                      std::string_view name) const;

  // The attributes of inode `ino`, nullopt when it does not exist.
  // Errors: EIO.
  Result<std::optional<Attr>> GetAttr(TreeId tree, uint64_t ino) const;

  // The whole record of inode `ino` (content reference, symlink target,
  // xattrs), parsed in place; valid until the reader ends. nullopt when the
  // inode does not exist. Errors: EIO.
  Result<std::optional<NodeView>> GetNode(TreeId tree, uint64_t ino) const;

  // Lists directory `dir` in name order from `offset` (0 = the start, else a
  // DirEntry::next_offset from an earlier call, in any reader of the same
  // view). Calls `fn` for each entry until it returns false or the directory
  // ends. Returning false means "this entry did not fit": it is not
  // consumed, and the next call resumes from the previous entry's
  // next_offset. Resuming costs one B-tree seek, whatever the offset.
  // "." and ".." are not included. Offsets past the end give no entries.
  // REQUIRES: `tree` is a view (layer trees have no readdir offsets and list
  // as empty). Errors: ENOENT (no such inode), ENOTDIR, EIO.
  Status ReadDir(TreeId tree, uint64_t dir, uint64_t offset,
                 FunctionRef<bool(const DirEntry&)> fn) const;

  // ReadDir plus the attributes of each entry (one more probe per entry),
  // for FUSE readdirplus.
  Status ReadDirPlus(TreeId tree, uint64_t dir, uint64_t offset,
                     FunctionRef<bool(const DirEntry&, const Attr&)> fn) const;

  // The target of symlink `ino`, nullopt when the inode does not exist.
  // Errors: EINVAL (not a symlink), EIO.
  Result<std::optional<std::string_view>> ReadLink(TreeId tree,
                                                   uint64_t ino) const;

  // Calls `fn` with the name of each xattr of `ino`, in stored order, until
  // it returns false. Errors: ENOENT (no such inode), EIO.
  Status ListXattrs(TreeId tree, uint64_t ino,
                    FunctionRef<bool(std::string_view name)> fn) const;

  // The value of xattr `name` of `ino`; nullopt when the inode has no such
  // xattr (the filesystem answers ENODATA). Errors: ENOENT (no such inode),
  // EIO.
  Result<std::optional<std::string_view>> GetXattr(TreeId tree, uint64_t ino,
                                                   std::string_view name) const;

  // The content of regular file `ino`: a read-only, close-on-exec fd of its
  // blob (for splice reads), or a copy of its inline bytes. The result does
  // not depend on the reader and may outlive it. Allocates (a copy or an
  // fd), so call it at open, not per read. Errors: ENOENT (no such inode),
  // EISDIR, EINVAL (not a regular file), EMFILE/ENFILE (opening the blob),
  // EIO (the blob is missing or the record is malformed).
  Result<FileContent> OpenContent(TreeId tree, uint64_t ino) const;

 private:
  TreeReader(const Store& store, lmdb::Txn txn);

  // The raw node record of `ino`, nullopt when absent.
  Result<std::optional<std::string_view>> NodeBytes(TreeId tree,
                                                    uint64_t ino) const;
  // As GetNode, but absence is ENOENT (`op` names the caller).
  Result<NodeView> RequireNode(TreeId tree, uint64_t ino, const char* op) const;

  const Store* store_;
  lmdb::Txn txn_;
  MDB_dbi nodes_;
  MDB_dbi dirents_;
  MDB_dbi dirseq_;
};

}  // namespace strata::layerdb
