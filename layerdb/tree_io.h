#pragma once

// Writing an in-memory tree into the index, and loading a stored tree back
// (internal to layerdb: layer commit, view build, export, fsck).

#include <cstdint>

#include "layerdb/base/error.h"
#include "layerdb/index.h"
#include "layerdb/mem_tree.h"

namespace strata::layerdb {

// Assigns inode numbers (root = 1, then depth-first preorder, names sorted;
// hardlinked names share one), counts nlink (names for files, 2 + subdirs
// for directories) and writes nodes and dirents of tree `tree` in `txn`.
// With `with_seq`, also the dirseq records that give readdir stable offsets.
// REQUIRES: `tree` is the largest tree id in the index (records are appended).
Result<TreeStats> WriteTree(lmdb::Txn& txn, const Dbis& dbis, uint64_t tree,
                            TreeNode& root, bool with_seq);

// Loads tree `tree` into memory; hardlinked names share one TreeNode.
Result<TreeNodePtr> LoadTree(const lmdb::Txn& txn, const Dbis& dbis,
                             uint64_t tree);

// Deletes every record of tree `tree` (nodes, dirents, dirseq).
Status DeleteTree(lmdb::Txn& txn, const Dbis& dbis, uint64_t tree);

}  // namespace strata::layerdb
