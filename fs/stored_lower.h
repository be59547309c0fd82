#pragma once

// StoredLowerSource: a view from the store as the lower tree of a mount
// (design §2). The view is precomputed (whiteouts applied, nlink counted,
// inode numbers assigned), so every call is one or two LMDB probes whatever
// the number of layers, and a LowerRef is simply the view's inode number,
// which is also the st_ino (stable across remounts: views never change).
//
// Each call runs in a short read transaction on a per-thread reader that is
// reset before the call returns (never held across FUSE requests).

#include <memory>
#include <mutex>
#include <vector>

#include "fs/lower_source.h"
#include "layerdb/lifecycle.h"
#include "layerdb/store.h"

namespace strata::fs {

class StoredLowerSource final : public LowerSource {
 public:
  // Serves view `view` of `store`; the store must outlive the source.
  // Errors: ENOENT (no such view), EIO.
  static Result<std::unique_ptr<StoredLowerSource>> Open(
      const layerdb::Store& store, layerdb::TreeId view);
  // As Open, owning the store.
  static Result<std::unique_ptr<StoredLowerSource>> Open(
      std::unique_ptr<layerdb::Store> store, layerdb::TreeId view);

  // Opens the store at `store_root` read-only, pins `view` for this process
  // (pins/PID: gc keeps it while we serve it; best effort, since a store
  // the caller may not write cannot be collected by the caller either) and
  // serves it. For a mount daemon, after its fork.
  static Result<std::unique_ptr<StoredLowerSource>> OpenPinned(
      const std::string& store_root, layerdb::TreeId view);

  // Keeps `pin` (gc keeps the view) for as long as the source lives.
  void set_pin(layerdb::Pin pin) { pin_ = std::move(pin); }

  LowerEntry Root() const override { return root_; }
  Result<std::optional<LowerEntry>> Lookup(LowerRef dir,
                                           std::string_view name) override;
  Result<struct stat> GetAttr(LowerRef ref) override;
  Status ReadDir(LowerRef dir, uint64_t offset,
                 FunctionRef<bool(const LowerDirEntry&)> fn) override;
  Result<std::string> ReadLink(LowerRef ref) override;
  Result<std::vector<std::pair<std::string, std::string>>> Xattrs(
      LowerRef ref) override;
  Result<layerdb::FileContent> OpenContent(LowerRef ref) override;
  Result<struct statvfs> StatFs() override;

 private:
  class Lease;

  StoredLowerSource(const layerdb::Store& store, layerdb::TreeId view)
      : store_(&store), view_(view) {}

  std::unique_ptr<layerdb::Store> owned_;  // destroyed after the readers
  layerdb::Pin pin_;
  const layerdb::Store* store_;
  layerdb::TreeId view_;
  LowerEntry root_;
  // Reset readers for reuse (saves LMDB's txn allocation per request).
  std::mutex pool_mutex_;
  std::vector<layerdb::TreeReader> pool_;  // GUARDED_BY(pool_mutex_)
};

// The stat a stored node presents: st_ino = its view inode number; times
// not recorded in the layer (0) show as mtime.
struct stat StatFromAttr(uint64_t ino, const layerdb::Attr& attr);

}  // namespace strata::fs
