#pragma once

// Exporters: content out of the store (design §3, `strata export`).
// Output is deterministic: the same image exports byte-identically (entries
// in name order, PAX format, no timestamps invented).

#include <string>

#include "layerdb/base/error.h"
#include "layerdb/store.h"

namespace strata::layerdb {

// The merged tree of an image as one tar (like `docker export`): every file
// type, modes, owners, times, xattrs (SCHILY.xattr), POSIX ACLs, hardlink
// groups as tar hardlinks. `out` is a file path or "-" for stdout. Written
// to a temp file and renamed, so a failure leaves no partial output file.
Status ExportFlatTar(const Store& store, const ImageInfo& image,
                     const std::string& out);

// One layer's changeset as a tar, with whiteouts as `.wh.NAME` and opaque
// directories as `.wh..wh..opq`.
Status ExportLayerTar(const Store& store, TreeId layer, const std::string& out);

// An OCI image layout at `dir` (created; an existing layout is added to):
// gzip layer blobs, a config whose diff_ids match them, a manifest, and an
// index.json entry annotated with org.opencontainers.image.ref.name = `tag`.
// Readable by skopeo and umoci.
Status ExportOciLayout(const Store& store, const ImageInfo& image,
                       const std::string& dir, const std::string& tag);

}  // namespace strata::layerdb
