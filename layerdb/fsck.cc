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

// fsck: re-hash blobs, check every index reference, repair on request.

namespace strata::layerdb {

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

}  // namespace strata::layerdb
