// UnionFs: directory listings. A directory with no upper part lists
// straight from the lower tree with its stable offsets (a stored view
// resumes with one B-tree seek). A merged directory is listed once per open
// (and on rewind), sorted by name, and served from that snapshot, as kernel
// overlayfs does; its offsets are positions in the snapshot.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <shared_mutex>

#include "fs/host_io.h"
#include "fs/union_fs.h"

namespace strata::fs {

namespace {
constexpr uint64_t kDotOffset = 1;
constexpr uint64_t kDotDotOffset = 2;
constexpr uint64_t kFirstOffset = 3;  // item i has next offset i + 3
}  // namespace

Result<std::vector<MergedEntry>> UnionFs::MergedListing(Inode& dir) {
  std::vector<MergedEntry> items;
  std::set<std::string, std::less<>> hidden;  // upper names and whiteouts
  if (dir.upper.valid()) {
    STRATA_ASSIGN_OR_RETURN(
        UniqueFd fd,
        host::OpenAt(dir.upper.get(), ".", O_RDONLY | O_DIRECTORY | O_NOATIME));
    STRATA_ASSIGN_OR_RETURN(auto entries, host::ReadDirAll(fd.get()));
    for (auto& e : entries) {
      if (std::string_view(e.name).starts_with(kWhPrefix)) {
        if (e.name != kOpaqueMarker)
          hidden.insert(e.name.substr(kWhPrefix.size()));
        continue;
      }
      STRATA_ASSIGN_OR_RETURN(auto st, host::StatAt(dir.upper.get(), e.name));
      if (!st) continue;  // raced with a removal
      hidden.insert(e.name);
      STRATA_ASSIGN_OR_RETURN(bool wh, IsUpperWhiteout(dir, e.name, *st));
      if (wh) continue;
      STRATA_ASSIGN_OR_RETURN(UpperInfo info, ResolveUpper(dir, e.name, *st));
      mode_t type = st->st_mode & S_IFMT;
      if (info.override) type = info.override->mode & S_IFMT;
      items.push_back({std::move(e.name), info.ino, type});
    }
  }
  if (dir.lower && !dir.opaque) {
    STRATA_RETURN_IF_ERROR(
        lower_->ReadDir(*dir.lower, 0, [&](const LowerDirEntry& e) {
          if (!hidden.contains(e.name))
            items.push_back({std::string(e.name), e.st_ino, e.type});
          return true;
        }));
  }
  std::sort(items.begin(), items.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return items;
}

Result<bool> UnionFs::IsEmptyDir(const std::shared_ptr<Inode>& dir) {
  if (!dir->upper.valid()) {
    bool any = false;
    STRATA_RETURN_IF_ERROR(
        lower_->ReadDir(*dir->lower, 0, [&](const LowerDirEntry&) {
          any = true;
          return false;
        }));
    return !any;
  }
  STRATA_ASSIGN_OR_RETURN(auto items, MergedListing(*dir));
  return items.empty();
}

Status UnionFs::ReadDir(
    uint64_t nodeid, uint64_t offset,
    FunctionRef<bool(std::string_view, uint64_t, uint32_t, uint64_t)> fn) {
  std::shared_lock lock(ns_mutex_);
  Inode& dir = table_->Get(nodeid);
  if (!dir.is_dir()) return Error(ENOTDIR, "readdir");
  if (offset < kDotOffset && !fn(".", dir.st_ino, S_IFDIR, kDotOffset))
    return Ok();
  if (offset < kDotDotOffset) {
    uint64_t up = dir.parent ? dir.parent->st_ino : dir.st_ino;
    if (!fn("..", up, S_IFDIR, kDotDotOffset)) return Ok();
  }
  if (!dir.upper.valid() && dir.lower) {
    // A lower directory: its own stable offsets, one B-tree seek to resume.
    uint64_t from = offset <= kDotDotOffset ? 0 : offset - kDotDotOffset;
    return lower_->ReadDir(*dir.lower, from, [&](const LowerDirEntry& e) {
      return fn(e.name, e.st_ino, e.type, e.next_offset + kDotDotOffset);
    });
  }
  Inode::ReaderListing& kept = dir.listing.get();
  std::shared_ptr<const std::vector<MergedEntry>> items;
  {
    std::lock_guard guard(kept.mutex);
    items = kept.entries;
  }
  if (offset < kFirstOffset || !items) {  // a reader starts: a fresh snapshot
    STRATA_ASSIGN_OR_RETURN(auto fresh, MergedListing(dir));
    items = std::make_shared<const std::vector<MergedEntry>>(std::move(fresh));
    std::lock_guard guard(kept.mutex);
    kept.entries = items;
  }
  size_t i = offset < kFirstOffset ? 0 : offset - kDotDotOffset;
  for (; i < items->size(); ++i) {
    const auto& it = (*items)[i];
    if (!fn(it.name, it.st_ino, it.type, i + kFirstOffset)) return Ok();
  }
  std::lock_guard guard(kept.mutex);  // read to the end: not needed
  if (kept.entries == items) kept.entries.reset();
  return Ok();
}

Status UnionFs::FsyncDir(uint64_t nodeid) {
  std::shared_lock lock(ns_mutex_);
  Inode& dir = table_->Get(nodeid);
  if (!dir.upper.valid() || options_.volatile_upper) return Ok();
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd, host::OpenAt(dir.upper.get(), ".", O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return Error::FromErrno("fsync", dir.name);
  return Ok();
}

}  // namespace strata::fs
