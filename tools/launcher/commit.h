#pragma once

// strata commit: an upper directory back into a layer, and an image made of
// the base image's layers plus that one (design §3; data flows store →
// mount → upper → commit → store).
//
// The upper is read where its ids mean what they meant to the container (as
// mapped root for a rootless caller, mapped_child.h): a read-only mount of
// the same union shows every changed entry as the container saw it
// (metacopy data, override_stat owners, redirects, index entries), and
// fs::ReadUpperChanges says which entries changed.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerdb/base/error.h"
#include "layerdb/importers.h"
#include "layerdb/store.h"

namespace strata::launcher {

struct CommitSpec {
  std::string store_root;
  layerdb::TreeId view = 0;  // the lower tree the upper was made over
  std::vector<layerdb::TreeId> base_layers;
  nlohmann::json base_config;  // the base image's OCI config
  std::string upper_dir, work_dir;
  std::string mountpoint;  // an empty directory for the merged tree
  std::string name;        // of the new image, normalized
  std::string source;      // LayerInfo::source ("commit:CONTAINER")
  // Changed entries left out of the layer (a container's bind-mount
  // placeholders: what the container wrote there went to the host file).
  std::vector<std::string> exclude;
  layerdb::ImportOptions import;
};

// Commits and returns the new image. Errors: EBUSY when the upper is mounted
// (a running container), the failing step's errno and object otherwise.
Result<layerdb::ImageInfo> CommitUpper(const CommitSpec& spec);

}  // namespace strata::launcher
