#pragma once

// MergeLayers: computes the merged tree (a "view") of an ordered layer stack,
// bottom first, exactly as applying each changeset in order to an empty
// directory would (OCI image-spec layer.md; kernel overlayfs lookup rules):
//  - a whiteout removes the name from the layers below;
//  - an opaque directory hides every lower child of that directory;
//  - a directory over a directory merges, taking the upper attributes unless
//    the upper one is implicit (made only as a parent of a member, or only
//    by an opaque marker: such a directory keeps the lower attributes);
//  - anything else over anything shadows it: file over dir, dir over file;
//  - hardlinked names stay one node; an external hardlink joins the node at
//    its target path in the layers below (as they were before the link's
//    layer, whatever that layer does to the path).
// The result holds no whiteouts and no layer flags. Layer trees are not
// modified: every node of the view is a fresh copy.
//
// Errors: ENOENT (an external hardlink whose target is not in the layers
// below). Thread-safety: none.

#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/mem_tree.h"

namespace strata::layerdb {

Result<TreeNodePtr> MergeLayers(const std::vector<TreeNodePtr>& layers);

}  // namespace strata::layerdb
