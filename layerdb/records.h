#pragma once

// JSON encodings of the small index records (layers, views, images). They
// are not on any hot path; JSON keeps them readable with `mdb_dump` and easy
// to extend (unknown fields are ignored). Internal to layerdb.

#include <string>
#include <string_view>

#include "layerdb/base/error.h"
#include "layerdb/store.h"

namespace strata::layerdb {

std::string EncodeLayer(const LayerInfo& info);
Result<LayerInfo> DecodeLayer(std::string_view bytes);
std::string EncodeView(const ViewInfo& info);
Result<ViewInfo> DecodeView(std::string_view bytes);
std::string EncodeImage(const ImageInfo& info);
Result<ImageInfo> DecodeImage(std::string_view bytes);

}  // namespace strata::layerdb
