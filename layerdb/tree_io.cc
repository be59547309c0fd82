#include "layerdb/tree_io.h"

#include <sys/stat.h>

#include <algorithm>
#include <unordered_map>
#include <utility>
#include <vector>

#include "layerdb/keys.h"

namespace strata::layerdb {

namespace {

// Numbers the tree depth-first (iteratively: trees may be thousands deep)
// and returns the directories in inode order.
std::vector<TreeNode*> Number(TreeNode& root, TreeStats& stats,
                              std::vector<TreeNode*>& inode_order) {
  std::vector<TreeNode*> dirs;
  std::unordered_map<TreeNode*, uint32_t> names;
  std::vector<TreeNode*> stack{&root};
  uint64_t next = 1;
  while (!stack.empty()) {
    TreeNode* n = stack.back();
    stack.pop_back();
    n->ino = next++;
    inode_order.push_back(n);
    if (!n->node.attr.is_dir()) continue;
    dirs.push_back(n);
    uint32_t subdirs = 0;
    // Push in reverse so that the smallest name is numbered first.
    for (auto it = n->children.rbegin(); it != n->children.rend(); ++it) {
      TreeNode* c = it->second.get();
      ++stats.entries;
      if (c->node.attr.is_dir()) ++subdirs;
      if (++names[c] == 1) stack.push_back(c);
    }
    n->node.attr.nlink = 2 + subdirs;
  }
  for (auto& [node, count] : names) {
    if (!node->node.attr.is_dir()) node->node.attr.nlink = count;
  }
  return dirs;
}

}  // namespace

Result<TreeStats> WriteTree(lmdb::Txn& txn, const Dbis& dbis, uint64_t tree,
                            TreeNode& root, bool with_seq) {
  TreeStats stats;
  std::vector<TreeNode*> inode_order;
  std::vector<TreeNode*> dirs = Number(root, stats, inode_order);
  // Hardlinked names were numbered once, so inode_order is ascending.
  for (TreeNode* n : inode_order) {
    ++stats.inodes;
    if (n->node.attr.is_reg()) stats.bytes += n->node.attr.size;
    STRATA_RETURN_IF_ERROR(txn.Put(dbis.nodes, keys::Node(tree, n->ino),
                                   EncodeNode(n->node), MDB_APPEND));
  }
  // Directories in inode order, children in name order: ascending keys.
  std::sort(dirs.begin(), dirs.end(),
            [](TreeNode* a, TreeNode* b) { return a->ino < b->ino; });
  for (TreeNode* d : dirs) {
    uint32_t seq = 0;
    for (const auto& [name, child] : d->children) {
      std::string value =
          keys::DirentValue(child->ino, child->node.attr.type());
      STRATA_RETURN_IF_ERROR(txn.Put(
          dbis.dirents, keys::Dirent(tree, d->ino, name), value, MDB_APPEND));
      if (!with_seq) continue;
      // Offsets 0 is "start"; the entry at seq s resumes at s + 1.
      STRATA_RETURN_IF_ERROR(txn.Put(dbis.dirseq,
                                     keys::DirSeq(tree, d->ino, ++seq),
                                     value + name, MDB_APPEND));
    }
  }
  return stats;
}

Result<TreeNodePtr> LoadTree(const lmdb::Txn& txn, const Dbis& dbis,
                             uint64_t tree) {
  std::unordered_map<uint64_t, TreeNodePtr> by_ino;
  const std::string prefix = keys::Tree(tree);
  {
    STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur,
                            lmdb::Cursor::Open(txn, dbis.nodes));
    STRATA_ASSIGN_OR_RETURN(auto kv, cur.SeekRange(prefix));
    while (kv && kv->first.starts_with(prefix)) {
      auto n = std::make_shared<TreeNode>();
      n->ino = keys::GetBE64(kv->first.substr(8));
      STRATA_ASSIGN_OR_RETURN(n->node, DecodeNode(kv->second));
      by_ino.emplace(n->ino, std::move(n));
      STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
    }
  }
  if (by_ino.empty())
    return Error(ENOENT, "load tree",
                 "tree " + std::to_string(tree) + " does not exist");
  auto root = by_ino.find(1);
  if (root == by_ino.end())
    return Error(EIO, "load tree",
                 "tree " + std::to_string(tree) + " has no root");
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur,
                          lmdb::Cursor::Open(txn, dbis.dirents));
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.SeekRange(prefix));
  while (kv && kv->first.starts_with(prefix)) {
    uint64_t parent = keys::GetBE64(kv->first.substr(8));
    std::string_view name = kv->first.substr(16);
    uint64_t ino = keys::DirentIno(kv->second);
    auto p = by_ino.find(parent);
    auto c = by_ino.find(ino);
    if (p == by_ino.end() || c == by_ino.end())
      return Error(EIO, "load tree",
                   "tree " + std::to_string(tree) + " has a dangling entry \"" +
                       std::string(name) + "\"");
    p->second->children.emplace(std::string(name), c->second);
    STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
  }
  return root->second;
}

namespace {
Status DeletePrefix(lmdb::Txn& txn, MDB_dbi dbi, const std::string& prefix) {
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn, dbi));
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.SeekRange(prefix));
  while (kv && kv->first.starts_with(prefix)) {
    STRATA_RETURN_IF_ERROR(cur.DelCurrent());
    STRATA_ASSIGN_OR_RETURN(kv, cur.SeekRange(prefix));
  }
  return Ok();
}
}  // namespace

Status DeleteTree(lmdb::Txn& txn, const Dbis& dbis, uint64_t tree) {
  const std::string prefix = keys::Tree(tree);
  STRATA_RETURN_IF_ERROR(DeletePrefix(txn, dbis.nodes, prefix));
  STRATA_RETURN_IF_ERROR(DeletePrefix(txn, dbis.dirents, prefix));
  STRATA_RETURN_IF_ERROR(DeletePrefix(txn, dbis.dirseq, prefix));
  return Ok();
}

}  // namespace strata::layerdb
