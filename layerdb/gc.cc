#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"
#include "layerdb/catalog.h"
#include "layerdb/hash.h"
#include "layerdb/keys.h"
#include "layerdb/lifecycle.h"
#include "layerdb/node.h"
#include "layerdb/records.h"
#include "layerdb/tree_io.h"

// Garbage collection: mark from images and pins, sweep the index, then blobs.

namespace strata::layerdb {

namespace {

// Pins: tree ids (views or layers) that gc keeps although no image names
// them. Each file in <root>/pins/ holds one decimal id per line:
//  - a mount writes pins/<pid> for the view it serves; when that process is
//    gone (killed, crashed) the file is stale and gc removes it. The pid is
//    as seen in the store's pid namespace, so a daemon inside a container's
//    pid namespace must pin by container instead.
//  - a container writes pins/<container id> for as long as it exists; a
//    name that is not a number is never considered stale.
// Writers create the file atomically (a temp file named ".*", then rename)
// while holding the store's shared lock, and gc holds the exclusive lock
// while it reads them, so gc never misses a pin for a view being mounted.
// FIXME: a reused pid keeps a stale pin alive until that process exits too;
// this only delays collection.
bool IsDeadPid(std::string_view name) {
  pid_t pid = 0;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
  if (ec != std::errc() || p != name.data() + name.size() || pid <= 0)
    return false;
  // EPERM means the process exists but belongs to someone else.
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

Status ParsePinFile(const std::string& path, TreeSet& pins) {
  STRATA_ASSIGN_OR_RETURN(std::string text, sys::ReadFile(path));
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.empty()) continue;
    TreeId id = 0;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), id);
    // A pin we cannot read might protect something: refuse rather than
    // collect it.
    if (ec != std::errc() || p != line.data() + line.size())
      return Error(EINVAL, "read pins",
                   path + " line " + std::to_string(line_no) +
                       ": not a tree id (fix or remove the file)");
    pins.insert(id);
  }
  return Ok();
}

Result<TreeSet> ReadPins(const std::string& root) {
  TreeSet pins;
  const std::string dir = root + "/pins";
  auto names = sys::ListDir(dir);
  if (!names) {
    if (names.error().code() == ENOENT) return pins;
    return names.error();
  }
  for (const std::string& name : *names) {
    if (name.starts_with(".")) continue;  // a writer's temp file
    std::string path = dir + "/" + name;
    if (IsDeadPid(name)) {
      LifecycleLog()->info("gc: removing stale pin: file={}", path);
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return Error::FromErrno("unlink", path);
      continue;
    }
    STRATA_RETURN_IF_ERROR(ParsePinFile(path, pins));
  }
  return pins;
}

struct Marks {
  TreeSet views;
  TreeSet layers;
};

Marks Mark(const Catalog& c, const TreeSet& pins) {
  Marks m;
  for (const ImageInfo& img : c.images) {
    m.views.insert(img.view);
    m.layers.insert(img.layers.begin(), img.layers.end());
  }
  for (TreeId id : pins) {
    if (c.views.contains(id)) m.views.insert(id);
    if (c.layers.contains(id)) m.layers.insert(id);
  }
  // A kept view keeps its stack: a container on a pinned view may later be
  // committed as a layer on top of those layers.
  for (TreeId v : m.views) {
    auto it = c.views.find(v);
    if (it == c.views.end()) continue;
    m.layers.insert(it->second.layers.begin(), it->second.layers.end());
  }
  return m;
}

// Tree records with no layer or view record cannot be reached; they are not
// made by any writer (a tree and its record commit together), so they are
// damage, removed like garbage.
Status DeleteOrphanTrees(lmdb::Txn& txn, const Dbis& d, const Catalog& c) {
  STRATA_ASSIGN_OR_RETURN(TreeSet trees, TreesWithNodes(txn, d));
  for (TreeId t : trees) {
    if (c.layers.contains(t) || c.views.contains(t)) continue;
    LifecycleLog()->warn("gc: removing orphan tree records: tree={}", t);
    STRATA_RETURN_IF_ERROR(DeleteTree(txn, d, t));
  }
  return Ok();
}

// Mark and sweep of views and layers, in one write transaction so that the
// index goes from one consistent state to the next.
Status SweepIndex(const Store& store, const TreeSet& pins, GcReport& report) {
  const Dbis& d = store.index().dbis();
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, store.index().BeginWrite());
  STRATA_ASSIGN_OR_RETURN(Catalog c, ReadCatalog(txn, d, nullptr));
  Marks m = Mark(c, pins);
  for (const auto& [id, view] : c.views) {
    if (m.views.contains(id)) continue;
    STRATA_RETURN_IF_ERROR(DeleteView(txn, d, view));
    ++report.views_removed;
  }
  for (const auto& [id, layer] : c.layers) {
    if (m.layers.contains(id)) continue;
    STRATA_RETURN_IF_ERROR(DeleteLayer(txn, d, layer));
    ++report.layers_removed;
  }
  STRATA_RETURN_IF_ERROR(DeleteOrphanTrees(txn, d, c));
  return std::move(txn).Commit();
}

std::string NodeName(lmdb::Bytes key) {
  if (key.size() != 16) return "a malformed node key";
  return "tree " + std::to_string(keys::GetBE64(key)) + " inode " +
         std::to_string(keys::GetBE64(key.substr(8)));
}

// Every blob key referenced by a node of any tree left in the index.
Result<BlobSet> ReferencedBlobs(const Index& index) {
  BlobSet live;
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, index.BeginRead());
  STRATA_RETURN_IF_ERROR(ForEachRecord(
      txn, index.dbis().nodes,
      [&](lmdb::Bytes key, lmdb::Bytes value) -> Status {
        auto node = NodeView::Parse(value);
        // Without the record we cannot know its blob: keep every blob.
        if (!node)
          return Error(EIO, "gc",
                       NodeName(key) + ": undecodable node; run strata fsck");
        if ((node->flags() & kFlagBlob) != 0) live.insert(node->blob());
        return Ok();
      }));
  return live;
}

Status SweepBlobs(const Store& store, GcReport& report) {
  STRATA_ASSIGN_OR_RETURN(BlobSet live, ReferencedBlobs(store.index()));
  return store.blobs().ForEach(
      [&](const BlobKey& key, const std::string& path) -> Status {
        if (live.contains(key)) return Ok();
        auto st = sys::Lstat(path);
        if (::unlink(path.c_str()) != 0) {
          if (errno == ENOENT) return Ok();
          return Error::FromErrno("unlink", path);
        }
        ++report.blobs_removed;
        if (st) report.bytes_freed += static_cast<uint64_t>(st->st_size);
        return Ok();
      });
}

}  // namespace

namespace {

// Scratch directories of docker-archive imports (`tmp-import-*`) that a
// SIGKILL left behind. Safe: gc holds the exclusive lock, so no import runs.
Status RemoveImportScratch(const Store& store) {
  STRATA_ASSIGN_OR_RETURN(auto names, sys::ListDir(store.root()));
  for (const std::string& n : names) {
    if (n.rfind("tmp-import-", 0) != 0) continue;
    STRATA_RETURN_IF_ERROR(sys::RemoveTree(store.root() + "/" + n));
  }
  return Ok();
}

}  // namespace

Result<GcReport> CollectGarbage(Store& store) {
  // Importers hold the shared lock from their first blob to their commit, so
  // with the exclusive lock every blob on disk is either committed or
  // abandoned by a killed import.
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store.LockExclusive());
  GcReport report;
  STRATA_ASSIGN_OR_RETURN(TreeSet pins, ReadPins(store.root()));
  STRATA_RETURN_IF_ERROR(SweepIndex(store, pins, report));
  // Blobs go only after the index commit: a crash in between leaves
  // unreferenced blobs (the next gc takes them), never a missing one.
  STRATA_RETURN_IF_ERROR(SweepBlobs(store, report));
  STRATA_RETURN_IF_ERROR(store.blobs().RemoveStaleTemps());
  STRATA_RETURN_IF_ERROR(RemoveImportScratch(store));
  LifecycleLog()->info("gc: done: layers={} views={} blobs={} bytes={}",
                       report.layers_removed, report.views_removed,
                       report.blobs_removed, report.bytes_freed);
  return report;
}

}  // namespace strata::layerdb
