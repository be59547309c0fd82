#pragma once

// Importing one layer changeset from a tar stream (internal to layerdb; the
// public entry points are in importers.h). Shared by `import tar`, the OCI
// layout importer and the docker-archive importer.

#include <string>

#include "layerdb/base/error.h"
#include "layerdb/importers.h"
#include "layerdb/store.h"

namespace strata::layerdb {

struct TarSource {
  int fd = -1;               // read from the current position to EOF
  std::string label;         // names the input in errors ("layer sha256:…")
  std::string source;        // LayerInfo::source; `label` when empty
  uint64_t total_bytes = 0;  // for progress; 0 if unknown
  // When set, the layer is only committed if these match (OCI verification).
  std::string expect_compressed_digest;
  std::string expect_diff_id;
  std::string media_type;
  bool allow_external_links = false;
};

// Reads, verifies and commits the layer. REQUIRES: the caller holds the
// store's shared lock. Errors: EIO (corrupt or truncated compression, tar
// format errors, digest mismatch), EINVAL/ENAMETOOLONG/ENOTDIR/ENOENT/EPERM
// (hostile members, see LayerBuilder), ENOSPC.
Result<LayerInfo> ImportTarSource(Store& store, const TarSource& src,
                                  const ImportOptions& opts);

}  // namespace strata::layerdb
