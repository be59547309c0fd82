#pragma once

// LayerBuilder: applies the members of one layer changeset (a tarball, a
// directory walk) to an in-memory tree, with OCI layer semantics
// (image-spec layer.md):
//  - `.wh.NAME` records a whiteout of NAME; `.wh..wh..opq` marks its directory
//    opaque, wherever it appears in the stream; `.wh.` alone is an error.
//  - A later member at an existing path replaces it; a directory over a
//    directory only replaces the attributes; a directory over a whiteout or
//    a non-directory starts empty (opaque: the earlier member deleted the
//    lower directory).
//  - Missing parents are created as "implicit" directories, which do not
//    override the attributes of a lower directory when the view is merged.
//  - A member below a non-directory of this layer (a symlink, a file) is an
//    error: member names are data and never resolve through symlinks.
//  - A hardlink names a member earlier in the same layer; with
//    allow_external_links, a missing target is kept as a link to the path in
//    the lower layers, resolved when a view is built.
//
// Regular-file content is stored by the importer first (BlobStore or inline);
// the builder only records the Node. Thread-safety: none.

#include <string_view>

#include "layerdb/base/error.h"
#include "layerdb/mem_tree.h"
#include "layerdb/node.h"

namespace strata::layerdb {

class LayerBuilder {
 public:
  explicit LayerBuilder(bool allow_external_links = false);

  // Adds a member. `node.attr.mode` carries the file type. Errors: EINVAL,
  // ENAMETOOLONG (bad names), ENOTDIR (through a non-directory).
  Status Add(std::string_view path, Node node);
  // Adds `path` as another name of the member at `target`. Errors as Add,
  // plus ENOENT (missing target), EPERM (target is a directory).
  Status AddHardlink(std::string_view path, std::string_view target);

  const TreeNodePtr& root() const { return root_; }
  uint64_t member_count() const { return members_; }

 private:
  Result<TreeNode*> ParentFor(const std::vector<std::string_view>& parts,
                              std::string_view path);
  Status Insert(TreeNode& parent, std::string_view name, TreeNodePtr child);

  TreeNodePtr root_;
  bool allow_external_links_;
  uint64_t members_ = 0;
};

}  // namespace strata::layerdb
