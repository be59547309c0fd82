#pragma once

// BlobStore: regular-file contents, uncompressed, named by XXH3-128
// (`blobs/ab/<30 hex>[.N]`), read-only (mode 0444) once written.
//
// Writes go to an O_TMPFILE (or a named temp file where the filesystem lacks
// O_TMPFILE) and are linked into place, so a blob file is either absent or
// complete. A blob that already exists under the same hash is only reused
// after a byte comparison: XXH3 is not collision-resistant, and a crafted
// layer must never change what another image reads. A colliding blob with
// different bytes goes to the next free variant (`.1`, `.2`, ...).
//
// Blobs are sparse: every whole 4096-byte block of zeros (at a 4096-aligned
// offset, the usual filesystem block) is left as a hole instead of written,
// so a sparse file of an image costs its data, not its size, on disk (and
// in copy-ups that clone or copy the blob with its holes). The bytes, and
// so the key, are the same as if written out.
//
// Durability: Put and Writer::Commit do not fsync; call Sync() before the
// index transaction that references new blobs commits.
//
// Thread-safety: all methods are safe to call concurrently, also from other
// processes on the same directory.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "layerdb/base/digest.h"
#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"
#include "layerdb/hash.h"

namespace strata::layerdb {

class BlobStore {
 public:
  // With `create`, `dir` is created if missing, with its 256 fan-out
  // subdirectories; without, it is only opened (read-only stores).
  static Result<BlobStore> Open(const std::string& dir, bool create = true);

  BlobStore(BlobStore&&) = default;
  BlobStore& operator=(BlobStore&&) = default;

  // Stores `data` and returns its key. Errors: ENOSPC, EIO, EACCES.
  Result<BlobKey> Put(std::string_view data);

  // Streams content of unknown size into the store.
  class Writer {
   public:
    Writer(Writer&&) = default;
    Writer& operator=(Writer&&) = delete;
    ~Writer();
    // Appends `data`. Errors: ENOSPC, EIO.
    Status Write(std::string_view data);
    uint64_t size() const { return size_; }
    // Makes the blob visible and returns its key; the Writer is then spent.
    Result<BlobKey> Commit();

   private:
    friend class BlobStore;
    Writer(const BlobStore* store, UniqueFd fd, std::string temp_path)
        : store_(store), fd_(std::move(fd)), temp_path_(std::move(temp_path)) {}
    const BlobStore* store_;
    UniqueFd fd_;
    std::string temp_path_;  // empty for O_TMPFILE
    Xxh128 hash_;
    uint64_t size_ = 0;  // bytes given to Write
    // The last size_ % 4096 bytes, not yet in the file: writing whole
    // aligned blocks only lets a block of zeros become a hole even when
    // Write's pieces do not end on block boundaries.
    std::string tail_;
  };
  Result<Writer> NewWriter() const;

  // Opens a blob read-only. ENOENT when it is missing.
  Result<UniqueFd> OpenBlob(const BlobKey& key) const;
  std::string PathOf(const BlobKey& key) const;
  const std::string& dir() const { return dir_; }

  // Makes every blob written so far durable (syncfs of the store's fs).
  Status Sync() const;

  // Calls fn(key, path) for every blob file (gc, fsck, df).
  Status ForEach(const std::function<Status(const BlobKey&,
                                            const std::string&)>& fn) const;
  // Removes temp files left by killed writers (named-temp fallback only).
  // REQUIRES: no writer is running (the store's exclusive lock is held).
  Status RemoveStaleTemps() const;

 private:
  BlobStore(std::string dir, UniqueFd dirfd)
      : dir_(std::move(dir)), dirfd_(std::move(dirfd)) {}
  // Links `fd` (content == `data` if non-null) under `key` or a free variant.
  Result<BlobKey> LinkInto(int fd, const std::string& temp_path,
                           BlobKey key) const;
  Result<UniqueFd> TempFile(std::string* temp_path) const;

  std::string dir_;
  UniqueFd dirfd_;
};

}  // namespace strata::layerdb
