#include "layerdb/lifecycle.h"

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
#include "layerdb/hash.h"
#include "layerdb/keys.h"
#include "layerdb/node.h"
#include "layerdb/records.h"
#include "layerdb/tree_io.h"

namespace strata::layerdb {

namespace {

using BlobSet = std::unordered_set<BlobKey, BlobKeyHash>;
using TreeSet = std::set<TreeId>;

std::shared_ptr<spdlog::logger> Log() {
  auto l = spdlog::get("layerdb");
  return l ? l : spdlog::default_logger();
}

// Calls fn(key, value) for every record of `dbi`, in key order.
template <class Fn>
Status ForEachRecord(const lmdb::Txn& txn, MDB_dbi dbi, Fn&& fn) {
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, dbi));
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.First());
  while (kv) {
    STRATA_RETURN_IF_ERROR(fn(kv->first, kv->second));
    STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
  }
  return Ok();
}

// The small records of the index, read in one transaction.
struct Catalog {
  std::vector<ImageInfo> images;
  std::map<TreeId, LayerInfo> layers;
  std::map<TreeId, ViewInfo> views;
};

// Undecodable records fail the read, unless `bad` collects them (fsck).
template <class T, class Decode, class Add>
Status ReadRecords(const lmdb::Txn& txn, MDB_dbi dbi, const char* what,
                   Decode decode, Add add, std::vector<std::string>* bad) {
  return ForEachRecord(
      txn, dbi, [&](lmdb::Bytes key, lmdb::Bytes value) -> Status {
        Result<T> rec = decode(value);
        if (rec) {
          add(std::move(*rec));
          return Ok();
        }
        if (bad == nullptr) return rec.error();
        std::string name = key.size() == 8 ? std::to_string(keys::GetBE64(key))
                                           : std::string(key);
        bad->push_back(std::string(what) + " record " + name + ": " +
                       rec.error().ToString());
        return Ok();
      });
}

Result<Catalog> ReadCatalog(const lmdb::Txn& txn, const Dbis& d,
                            std::vector<std::string>* bad) {
  Catalog c;
  STRATA_RETURN_IF_ERROR(ReadRecords<ImageInfo>(
      txn, d.images, "image", DecodeImage,
      [&](ImageInfo i) { c.images.push_back(std::move(i)); }, bad));
  STRATA_RETURN_IF_ERROR(ReadRecords<LayerInfo>(
      txn, d.layers, "layer", DecodeLayer,
      [&](LayerInfo l) { c.layers.emplace(l.id, std::move(l)); }, bad));
  STRATA_RETURN_IF_ERROR(ReadRecords<ViewInfo>(
      txn, d.views, "view", DecodeView,
      [&](ViewInfo v) { c.views.emplace(v.id, std::move(v)); }, bad));
  return c;
}

// Tree ids that have node records, found by skipping from tree to tree.
Result<TreeSet> TreesWithNodes(const lmdb::Txn& txn, const Dbis& d) {
  TreeSet trees;
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, d.nodes));
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.First());
  while (kv && kv->first.size() >= 8) {
    TreeId t = keys::GetBE64(kv->first);
    trees.insert(t);
    STRATA_ASSIGN_OR_RETURN(kv, cur.SeekRange(keys::Tree(t + 1)));
  }
  return trees;
}

// --- gc ---------------------------------------------------------------------

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
      Log()->info("gc: removing stale pin: file={}", path);
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

// Deletes `key` from `dbi` only if it still maps to tree `id`.
Status DelIfPointsTo(lmdb::Txn& txn, MDB_dbi dbi, const std::string& key,
                     TreeId id) {
  if (key.empty()) return Ok();
  STRATA_ASSIGN_OR_RETURN(auto v, txn.Get(dbi, key));
  if (!v || *v != keys::Id(id)) return Ok();
  STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(dbi, key));
  (void)gone;
  return Ok();
}

Status DeleteLayer(lmdb::Txn& txn, const Dbis& d, const LayerInfo& l) {
  STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(d.layers, keys::Id(l.id)));
  (void)gone;
  STRATA_RETURN_IF_ERROR(DelIfPointsTo(txn, d.layer_by_diff, l.diff_id, l.id));
  return DeleteTree(txn, d, l.id);
}

Status DeleteView(lmdb::Txn& txn, const Dbis& d, const ViewInfo& v) {
  STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(d.views, keys::Id(v.id)));
  (void)gone;
  STRATA_RETURN_IF_ERROR(
      DelIfPointsTo(txn, d.view_by_stack, keys::Stack(v.layers), v.id));
  return DeleteTree(txn, d, v.id);
}

// Tree records with no layer or view record cannot be reached; they are not
// made by any writer (a tree and its record commit together), so they are
// damage, removed like garbage.
Status DeleteOrphanTrees(lmdb::Txn& txn, const Dbis& d, const Catalog& c) {
  STRATA_ASSIGN_OR_RETURN(TreeSet trees, TreesWithNodes(txn, d));
  for (TreeId t : trees) {
    if (c.layers.contains(t) || c.views.contains(t)) continue;
    Log()->warn("gc: removing orphan tree records: tree={}", t);
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
  Log()->info("gc: done: layers={} views={} blobs={} bytes={}",
              report.layers_removed, report.views_removed, report.blobs_removed,
              report.bytes_freed);
  return report;
}

// --- fsck -------------------------------------------------------------------

namespace {

// One fault, and what repair does about it.
struct Finding {
  enum class Fix { kNone, kRemoveBlob, kRemoveTree, kRemoveImage };
  std::string what;
  Fix fix = Fix::kNone;
  BlobKey blob;       // kRemoveBlob
  TreeId tree = 0;    // kRemoveTree
  std::string image;  // kRemoveImage
};

class Findings {
 public:
  void Note(std::string what) { Add(std::move(what), Finding::Fix::kNone); }
  void BadBlob(std::string what, const BlobKey& key) {
    Add(std::move(what), Finding::Fix::kRemoveBlob).blob = key;
  }
  void BadTree(std::string what, TreeId tree) {
    Add(std::move(what), Finding::Fix::kRemoveTree).tree = tree;
    broken_trees_.insert(tree);
  }
  void BadImage(std::string what, const std::string& image) {
    Add(std::move(what), Finding::Fix::kRemoveImage).image = image;
  }
  const TreeSet& broken_trees() const { return broken_trees_; }
  const std::vector<Finding>& all() const { return all_; }

 private:
  Finding& Add(std::string what, Finding::Fix fix) {
    Finding& x = all_.emplace_back();
    x.what = std::move(what);
    x.fix = fix;
    return x;
  }
  std::vector<Finding> all_;
  TreeSet broken_trees_;
};

struct BlobScan {
  std::unordered_map<BlobKey, uint64_t, BlobKeyHash> sizes;  // intact ones
  BlobSet corrupt;
  BlobSet unreadable;
};

// Streams a file through XXH3-128; returns the hash and the size.
Result<std::pair<BlobKey, uint64_t>> HashFile(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, sys::Open(path, O_RDONLY));
  std::vector<std::byte> buf(1 << 20);
  Xxh128 hash;
  uint64_t size = 0;
  for (;;) {
    auto n = sys::ReadFull(fd.get(), buf);
    if (!n) return n.error().WithContext(path);
    if (*n == 0) break;
    hash.Update(buf.data(), *n);
    size += *n;
  }
  return std::pair(hash.Finish(), size);
}

Status ScanBlobs(const Store& store, FsckReport& report, Findings& f,
                 BlobScan& scan) {
  return store.blobs().ForEach([&](const BlobKey& key,
                                   const std::string& path) -> Status {
    ++report.blobs_checked;
    auto h = HashFile(path);
    if (!h) {
      // Not proof of corruption (permissions, a transient error): reported,
      // never deleted.
      f.Note("blob " + key.ToHex() + ": unreadable: " + h.error().ToString());
      scan.unreadable.insert(key);
      return Ok();
    }
    // Variants share the hash of their name; only the hash is checked.
    if (h->first.hash != key.hash) {
      f.BadBlob("blob " + key.ToHex() + ": content hashes to " +
                    h->first.ToHex() + " (corrupt)",
                key);
      scan.corrupt.insert(key);
      return Ok();
    }
    scan.sizes.emplace(key, h->second);
    return Ok();
  });
}

bool IsFanoutName(std::string_view n) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  };
  return n.size() == 2 && hex(n[0]) && hex(n[1]);
}

// Files in blobs/ that are not blobs: reported for a person to look at.
Status FindStrayFiles(const Store& store, Findings& f) {
  const std::string& dir = store.blobs().dir();
  STRATA_ASSIGN_OR_RETURN(auto top, sys::ListDir(dir));
  for (const std::string& name : top) {
    if (name == "tmp") continue;  // temp files of running or killed imports
    std::string sub = dir;
    sub.append("/").append(name);
    if (!IsFanoutName(name)) {
      f.Note(sub + ": not part of the blob store");
      continue;
    }
    auto files = sys::ListDir(sub);
    if (!files) {
      f.Note(sub + ": " + files.error().ToString());
      continue;
    }
    for (const std::string& file : *files) {
      if (!BlobKey::FromHex(name + file))
        f.Note(sub + "/" + file + ": not a blob name");
    }
  }
  return Ok();
}

std::string TreeName(const Catalog& c, TreeId t) {
  if (auto it = c.layers.find(t); it != c.layers.end()) {
    std::string n = "layer " + std::to_string(t);
    // The short form `strata layers` prints.
    std::string_view diff = it->second.diff_id;
    if (size_t colon = diff.find(':'); colon != std::string_view::npos)
      diff.remove_prefix(colon + 1);
    if (!diff.empty()) n += " (" + std::string(diff.substr(0, 12)) + ")";
    return n;
  }
  if (c.views.contains(t)) return "view " + std::to_string(t);
  return "tree " + std::to_string(t);
}

void CheckImages(const Catalog& c, Findings& f) {
  for (const ImageInfo& img : c.images) {
    std::string name = "image " + img.name;
    auto view = c.views.find(img.view);
    if (view == c.views.end()) {
      f.BadImage(name + ": view " + std::to_string(img.view) + " is missing",
                 img.name);
    } else if (view->second.layers != img.layers) {
      f.BadImage(name + ": view " + std::to_string(img.view) +
                     " merges a different layer stack",
                 img.name);
    }
    for (TreeId l : img.layers) {
      if (!c.layers.contains(l))
        f.BadImage(name + ": layer " + std::to_string(l) + " is missing",
                   img.name);
    }
  }
}

// Every layer and view has a root directory (inode 1).
Status CheckRoots(const lmdb::Txn& txn, const Dbis& d, const Catalog& c,
                  Findings& f) {
  TreeSet trees;
  for (const auto& [id, l] : c.layers)
    trees.insert(id);
  for (const auto& [id, v] : c.views)
    trees.insert(id);
  for (TreeId t : trees) {
    STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(d.nodes, keys::Node(t, 1)));
    bool ok = false;
    if (rec) {
      auto root = NodeView::Parse(*rec);
      ok = root && root->attr().is_dir();
    }
    if (!ok) f.BadTree(TreeName(c, t) + ": has no root directory", t);
  }
  return Ok();
}

std::string BlobFault(const BlobScan& scan, const NodeView& n) {
  const BlobKey& k = n.blob();
  if (scan.corrupt.contains(k)) return "uses corrupt blob " + k.ToHex();
  if (scan.unreadable.contains(k)) return "";  // reported with the blob
  auto it = scan.sizes.find(k);
  if (it == scan.sizes.end()) return "uses missing blob " + k.ToHex();
  if (it->second != n.attr().size)
    return "has size " + std::to_string(n.attr().size) + " but blob " +
           k.ToHex() + " holds " + std::to_string(it->second) + " bytes";
  return "";
}

Status CheckNodes(const lmdb::Txn& txn, const Dbis& d, const Catalog& c,
                  const BlobScan& scan, FsckReport& report, Findings& f) {
  TreeSet orphans;
  return ForEachRecord(
      txn, d.nodes, [&](lmdb::Bytes key, lmdb::Bytes value) -> Status {
        ++report.nodes_checked;
        if (key.size() != 16) {
          f.Note("nodes: malformed key of " + std::to_string(key.size()) +
                 " bytes");
          return Ok();
        }
        TreeId t = keys::GetBE64(key);
        // Built only for a fault: this runs once per inode of the store.
        auto where = [&] {
          return TreeName(c, t) + ": inode " +
                 std::to_string(keys::GetBE64(key.substr(8)));
        };
        if (!c.layers.contains(t) && !c.views.contains(t)) {
          if (orphans.insert(t).second)
            f.BadTree(
                "tree " + std::to_string(t) + ": has no layer or view record",
                t);
          return Ok();
        }
        auto node = NodeView::Parse(value);
        if (!node) {
          f.BadTree(where() + ": undecodable node record", t);
          return Ok();
        }
        if ((node->flags() & kFlagBlob) == 0) return Ok();
        if (std::string fault = BlobFault(scan, *node); !fault.empty())
          f.BadTree(where() + " " + fault, t);
        return Ok();
      });
}

// Directory entries (and a view's readdir sequence) point at existing nodes
// of the same tree, from an existing parent.
Status CheckEntries(const lmdb::Txn& txn, const Dbis& d, MDB_dbi dbi,
                    size_t key_len, const Catalog& c, Findings& f) {
  return ForEachRecord(
      txn, dbi, [&](lmdb::Bytes key, lmdb::Bytes value) -> Status {
        if (key.size() < key_len || value.size() < 9) {
          f.Note(std::string(key_len == 16 ? "dirents" : "dirseq") +
                 ": malformed record");
          return Ok();
        }
        TreeId t = keys::GetBE64(key);
        uint64_t parent = keys::GetBE64(key.substr(8));
        uint64_t ino = keys::DirentIno(value);
        std::string name(key_len == 16 ? key.substr(16) : value.substr(9));
        for (uint64_t i : {parent, ino}) {
          STRATA_ASSIGN_OR_RETURN(auto rec, txn.Get(d.nodes, keys::Node(t, i)));
          if (rec) continue;
          f.BadTree(TreeName(c, t) + ": entry \"" + name + "\" in directory " +
                        std::to_string(parent) + " points at missing inode " +
                        std::to_string(i),
                    t);
        }
        return Ok();
      });
}

Status CheckIndex(const lmdb::Txn& txn, const Dbis& d, const BlobScan& scan,
                  FsckReport& report, Findings& f, Catalog& c) {
  std::vector<std::string> bad;
  STRATA_ASSIGN_OR_RETURN(c, ReadCatalog(txn, d, &bad));
  for (std::string& b : bad)
    f.Note(std::move(b));
  CheckImages(c, f);
  STRATA_RETURN_IF_ERROR(CheckRoots(txn, d, c, f));
  STRATA_RETURN_IF_ERROR(CheckNodes(txn, d, c, scan, report, f));
  STRATA_RETURN_IF_ERROR(CheckEntries(txn, d, d.dirents, 16, c, f));
  STRATA_RETURN_IF_ERROR(CheckEntries(txn, d, d.dirseq, 20, c, f));
  return Ok();
}

// An image is as broken as the worst of its trees.
void FindImagesOnBrokenTrees(const Catalog& c, Findings& f) {
  const TreeSet& broken = f.broken_trees();
  for (const ImageInfo& img : c.images) {
    std::vector<TreeId> trees = img.layers;
    trees.push_back(img.view);
    for (TreeId t : trees) {
      if (!broken.contains(t)) continue;
      f.BadImage("image " + img.name + ": uses " + TreeName(c, t) +
                     ", which is damaged",
                 img.name);
      break;
    }
  }
}

// Removes broken images, then the broken layers and views themselves (a
// damaged layer left in place would be reused by a re-import of the same
// diff_id), in one transaction; then the corrupt blob files.
Status Repair(Store& store, const Catalog& c, const Findings& f) {
  const Dbis& d = store.index().dbis();
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, store.index().BeginWrite());
  for (const Finding& x : f.all()) {
    if (x.fix != Finding::Fix::kRemoveImage) continue;
    STRATA_ASSIGN_OR_RETURN(bool gone, txn.Del(d.images, x.image));
    (void)gone;
  }
  for (TreeId t : f.broken_trees()) {
    if (auto l = c.layers.find(t); l != c.layers.end()) {
      STRATA_RETURN_IF_ERROR(DeleteLayer(txn, d, l->second));
    } else if (auto v = c.views.find(t); v != c.views.end()) {
      STRATA_RETURN_IF_ERROR(DeleteView(txn, d, v->second));
    } else {
      STRATA_RETURN_IF_ERROR(DeleteTree(txn, d, t));
    }
  }
  STRATA_RETURN_IF_ERROR(std::move(txn).Commit());
  for (const Finding& x : f.all()) {
    if (x.fix != Finding::Fix::kRemoveBlob) continue;
    std::string path = store.blobs().PathOf(x.blob);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Error::FromErrno("unlink", path);
  }
  return Ok();
}

std::string RepairAction(const Finding& x, const Catalog& c) {
  switch (x.fix) {
    case Finding::Fix::kRemoveBlob:
      return "removed the blob file";
    case Finding::Fix::kRemoveTree:
      if (c.layers.contains(x.tree)) return "removed the layer";
      if (c.views.contains(x.tree)) return "removed the view";
      return "removed its records";
    case Finding::Fix::kRemoveImage:
      return "removed image " + x.image;
    case Finding::Fix::kNone:
      break;
  }
  return "";
}

}  // namespace

Result<FsckReport> CheckStore(Store& store, bool repair) {
  // Shared: no gc runs meanwhile. Exclusive to repair: nothing may start
  // using what we are about to remove.
  auto lock = repair ? store.LockExclusive() : store.LockShared();
  if (!lock) return lock.error();
  FsckReport report;
  Findings f;
  Catalog c;
  {
    // The index snapshot is taken before the blobs are scanned: everything
    // it references was synced to disk before it committed, whereas a layer
    // committed during the scan could name blobs we have not listed.
    STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, store.index().BeginRead());
    BlobScan scan;
    STRATA_RETURN_IF_ERROR(ScanBlobs(store, report, f, scan));
    STRATA_RETURN_IF_ERROR(FindStrayFiles(store, f));
    STRATA_RETURN_IF_ERROR(
        CheckIndex(txn, store.index().dbis(), scan, report, f, c));
    FindImagesOnBrokenTrees(c, f);
  }
  if (repair) STRATA_RETURN_IF_ERROR(Repair(store, c, f));
  for (const Finding& x : f.all()) {
    FsckProblem p{x.what};
    if (repair && x.fix != Finding::Fix::kNone) {
      p.repaired = true;
      p.what += "; " + RepairAction(x, c);
    }
    report.problems.push_back(std::move(p));
  }
  return report;
}

// --- df ---------------------------------------------------------------------

namespace {

// Bytes of inline regular files in the trees of `layers`.
Result<uint64_t> InlineBytes(const lmdb::Txn& txn, const Dbis& d,
                             const Catalog& c) {
  uint64_t total = 0;
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, d.nodes));
  for (const auto& [id, layer] : c.layers) {
    const std::string prefix = keys::Tree(id);
    STRATA_ASSIGN_OR_RETURN(auto kv, cur.SeekRange(prefix));
    while (kv && kv->first.starts_with(prefix)) {
      STRATA_ASSIGN_OR_RETURN(NodeView n, NodeView::Parse(kv->second));
      if (n.attr().is_reg() && (n.flags() & kFlagInline) != 0)
        total += n.inline_data().size();
      STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
    }
  }
  return total;
}

}  // namespace

Result<DiskUsage> MeasureDiskUsage(const Store& store) {
  DiskUsage du;
  {
    STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, store.index().BeginRead());
    const Dbis& d = store.index().dbis();
    STRATA_ASSIGN_OR_RETURN(Catalog c, ReadCatalog(txn, d, nullptr));
    du.images = c.images.size();
    du.layers = c.layers.size();
    // Each image once: a tag is another name, not another copy.
    std::set<std::string> seen;
    for (const ImageInfo& img : c.images) {
      if (!seen.insert(img.id).second) continue;
      if (auto v = c.views.find(img.view); v != c.views.end())
        du.logical_bytes += v->second.size;
    }
    for (const auto& [id, layer] : c.layers)
      du.layer_bytes += layer.size;
    STRATA_ASSIGN_OR_RETURN(du.inline_bytes, InlineBytes(txn, d, c));
  }
  STRATA_RETURN_IF_ERROR(store.blobs().ForEach(
      [&](const BlobKey&, const std::string& path) -> Status {
        STRATA_ASSIGN_OR_RETURN(struct stat st, sys::Lstat(path));
        ++du.blobs;
        du.blob_bytes += static_cast<uint64_t>(st.st_size);
        return Ok();
      }));
  STRATA_ASSIGN_OR_RETURN(struct stat idx,
                          sys::Lstat(store.root() + "/index/data.mdb"));
  du.index_bytes = static_cast<uint64_t>(idx.st_size);
  du.stored_bytes = du.blob_bytes + du.index_bytes;
  uint64_t kept = du.blob_bytes + du.inline_bytes;
  du.dedup_saved = du.logical_bytes > kept ? du.logical_bytes - kept : 0;
  return du;
}

}  // namespace strata::layerdb
