#pragma once

// MemTree: an in-memory directory tree of Nodes, the working form of a layer
// while it is imported and of a view while it is merged. Hardlinked names
// share one TreeNode (shared_ptr identity is hardlink identity).
//
// Thread-safety: none; one builder thread.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/node.h"

namespace strata::layerdb {

struct TreeNode;
using TreeNodePtr = std::shared_ptr<TreeNode>;

struct TreeNode {
  Node node;
  // Directories only; sorted by name (the index and readdir order).
  std::map<std::string, TreeNodePtr, std::less<>> children;
  uint64_t ino = 0;  // assigned when the tree is written
};

// Limits on names in imported content (Linux NAME_MAX and PATH_MAX).
inline constexpr size_t kMaxNameLen = 255;
inline constexpr size_t kMaxPathLen = 4096;

// Splits a member name ("./usr/bin/", "etc/passwd") into components.
// Errors (EINVAL/ENAMETOOLONG, detail names the member): an absolute name, a
// ".." component, a component over 255 bytes, a name over 4096 bytes.
// "" and "." give no components (the root).
Result<std::vector<std::string_view>> SplitMemberPath(std::string_view path);

TreeNodePtr MakeDirNode(uint32_t mode, uint8_t flags);

// The node at member path `path` below `root` (never following symlinks);
// nullptr when a component is missing, is not a directory, or the path is
// not a valid member name.
const TreeNode* FindNode(const TreeNode& root, std::string_view path);

// Per-tree counts gathered while writing.
struct TreeStats {
  uint64_t inodes = 0;
  uint64_t entries = 0;
  uint64_t bytes = 0;  // logical size of regular files
};

}  // namespace strata::layerdb
