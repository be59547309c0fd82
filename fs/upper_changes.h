#pragma once

// What an upper directory changed (`strata commit`): reads the upper format
// (upper_format.h) and names, relative to the merged tree, every entry the
// layer must carry. The merged tree itself (a mount of the same union) is
// where the entries are then read from: it already applies metacopy,
// override_stat, redirects and index entries.

#include <cstdint>
#include <string>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/importers.h"

namespace strata::fs {

struct UpperChanges {
  layerdb::ChangeSet changes;
  // st_ino of lower hardlink groups with an index entry: every name of such
  // a group shows the index's content, so each belongs in the layer (the
  // caller finds the names by walking the merged tree).
  std::vector<uint64_t> indexed;
};

// Reads `upper_dir` (and `work_dir`'s strata-index). Whiteouts (0/0 devices,
// `.wh.NAME`, overlay.whiteout in an "x" directory) become deletions, opaque
// and redirected directories are replaced whole, every other entry is
// changed. Errors: the failing call's errno and path.
Result<UpperChanges> ReadUpperChanges(const std::string& upper_dir,
                                      const std::string& work_dir);

}  // namespace strata::fs
