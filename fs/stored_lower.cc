#include "fs/stored_lower.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <utility>

#include <spdlog/spdlog.h>

namespace strata::fs {

using layerdb::TreeReader;

// A reader from the pool, renewed for one call and reset when it ends, so
// no read transaction outlives a request.
class StoredLowerSource::Lease {
 public:
  static Result<Lease> Take(StoredLowerSource& src) {
    std::optional<TreeReader> reader;
    {
      std::lock_guard lock(src.pool_mutex_);
      if (!src.pool_.empty()) {
        reader.emplace(std::move(src.pool_.back()));
        src.pool_.pop_back();
      }
    }
    if (reader) {
      STRATA_RETURN_IF_ERROR(reader->Renew());
    } else {
      STRATA_ASSIGN_OR_RETURN(TreeReader r, TreeReader::Begin(*src.store_));
      reader.emplace(std::move(r));
    }
    return Lease(src, std::move(*reader));
  }
  Lease(Lease&& o) noexcept
      : src_(std::exchange(o.src_, nullptr)), reader_(std::move(o.reader_)) {}
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (src_ == nullptr) return;
    reader_->Reset();
    std::lock_guard lock(src_->pool_mutex_);
    src_->pool_.push_back(std::move(*reader_));
  }
  const TreeReader& operator*() const { return *reader_; }
  const TreeReader* operator->() const { return &*reader_; }

 private:
  Lease(StoredLowerSource& src, TreeReader reader)
      : src_(&src), reader_(std::move(reader)) {}
  StoredLowerSource* src_;
  std::optional<TreeReader> reader_;
};

struct stat StatFromAttr(uint64_t ino, const layerdb::Attr& attr) {
  struct stat st {};
  st.st_ino = ino;
  st.st_mode = attr.mode;
  st.st_nlink = attr.nlink;
  st.st_uid = attr.uid;
  st.st_gid = attr.gid;
  st.st_rdev = attr.rdev;
  st.st_size = static_cast<off_t>(attr.size);
  st.st_blksize = 4096;
  st.st_blocks = static_cast<blkcnt_t>((attr.size + 511) / 512);
  auto ts = [](int64_t ns) {
    struct timespec t {};
    t.tv_sec = ns / 1000000000;
    t.tv_nsec = ns % 1000000000;
    if (t.tv_nsec < 0) {
      t.tv_nsec += 1000000000;
      --t.tv_sec;
    }
    return t;
  };
  st.st_mtim = ts(attr.mtime_ns);
  st.st_atim = ts(attr.atime_ns != 0 ? attr.atime_ns : attr.mtime_ns);
  st.st_ctim = ts(attr.ctime_ns != 0 ? attr.ctime_ns : attr.mtime_ns);
  return st;
}

Result<std::unique_ptr<StoredLowerSource>> StoredLowerSource::Open(
    const layerdb::Store& store, layerdb::TreeId view) {
  std::unique_ptr<StoredLowerSource> src(new StoredLowerSource(store, view));
  STRATA_ASSIGN_OR_RETURN(struct stat root, src->GetAttr(layerdb::kRootIno));
  src->root_ = LowerEntry{layerdb::kRootIno, root};
  return src;
}

Result<std::unique_ptr<StoredLowerSource>> StoredLowerSource::Open(
    std::unique_ptr<layerdb::Store> store, layerdb::TreeId view) {
  const layerdb::Store& ref = *store;
  STRATA_ASSIGN_OR_RETURN(auto src, Open(ref, view));
  src->owned_ = std::move(store);
  return src;
}

Result<std::unique_ptr<StoredLowerSource>> StoredLowerSource::OpenPinned(
    const std::string& store_root, layerdb::TreeId view) {
  STRATA_ASSIGN_OR_RETURN(
      auto store,
      layerdb::Store::Open(store_root, layerdb::Store::Mode::kReadOnly));
  auto pin = layerdb::PinTrees(*store, std::to_string(::getpid()), {view});
  if (!pin)
    spdlog::info("view {} not pinned: {}", view, pin.error().ToString());
  STRATA_ASSIGN_OR_RETURN(auto src, Open(std::move(store), view));
  if (pin) src->set_pin(std::move(*pin));
  return src;
}

Result<std::optional<LowerEntry>> StoredLowerSource::Lookup(
    LowerRef dir, std::string_view name) {
  STRATA_ASSIGN_OR_RETURN(Lease r, Lease::Take(*this));
  STRATA_ASSIGN_OR_RETURN(auto e, r->Lookup(view_, dir, name));
  if (!e) return std::optional<LowerEntry>();
  return std::optional<LowerEntry>(
      LowerEntry{e->ino, StatFromAttr(e->ino, e->attr)});
}

Result<struct stat> StoredLowerSource::GetAttr(LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Lease r, Lease::Take(*this));
  STRATA_ASSIGN_OR_RETURN(auto attr, r->GetAttr(view_, ref));
  if (!attr)
    return Error(ENOENT, "getattr", "lower inode " + std::to_string(ref));
  return StatFromAttr(ref, *attr);
}

Status StoredLowerSource::ReadDir(LowerRef dir, uint64_t offset,
                                  FunctionRef<bool(const LowerDirEntry&)> fn) {
  STRATA_ASSIGN_OR_RETURN(Lease r, Lease::Take(*this));
  return r->ReadDir(view_, dir, offset, [&](const layerdb::DirEntry& e) {
    return fn(LowerDirEntry{e.name, e.ino, e.ino, e.type, e.next_offset});
  });
}

Result<std::string> StoredLowerSource::ReadLink(LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Lease r, Lease::Take(*this));
  STRATA_ASSIGN_OR_RETURN(auto target, r->ReadLink(view_, ref));
  if (!target)
    return Error(ENOENT, "readlink", "lower inode " + std::to_string(ref));
  return std::string(*target);
}

Result<std::vector<std::pair<std::string, std::string>>>
StoredLowerSource::Xattrs(LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Lease r, Lease::Take(*this));
  std::vector<std::pair<std::string, std::string>> out;
  std::vector<std::string> names;
  STRATA_RETURN_IF_ERROR(r->ListXattrs(view_, ref, [&](std::string_view n) {
    names.emplace_back(n);
    return true;
  }));
  for (std::string& n : names) {
    STRATA_ASSIGN_OR_RETURN(auto v, r->GetXattr(view_, ref, n));
    if (v) out.emplace_back(std::move(n), std::string(*v));
  }
  return out;
}

Result<layerdb::FileContent> StoredLowerSource::OpenContent(LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Lease r, Lease::Take(*this));
  return r->OpenContent(view_, ref);
}

Result<struct statvfs> StoredLowerSource::StatFs() {
  struct statvfs sv {};
  if (::statvfs(store_->root().c_str(), &sv) != 0)
    return Error::FromErrno("statvfs", store_->root());
  return sv;
}

}  // namespace strata::fs
