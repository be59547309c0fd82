#include "layerdb/records.h"

namespace strata::layerdb {

namespace {

using nlohmann::json;

template <class Fn>
auto Parse(std::string_view bytes, const char* what, Fn&& fn)
    -> Result<decltype(fn(json()))> {
  try {
    return fn(json::parse(bytes));
  } catch (const json::exception& e) {
    return Error(EIO, "decode record", std::string(what) + ": " + e.what());
  }
}

}  // namespace

json ToJson(const LayerInfo& l) {
  return json{{"id", l.id},
              {"diff_id", l.diff_id},
              {"compressed_digest", l.compressed_digest},
              {"media_type", l.media_type},
              {"source", l.source},
              {"size", l.size},
              {"inodes", l.inodes},
              {"entries", l.entries},
              {"created", l.created},
              {"pending", l.pending}};
}

std::string EncodeLayer(const LayerInfo& l) {
  return ToJson(l).dump();
}

Result<LayerInfo> DecodeLayer(std::string_view bytes) {
  return Parse(bytes, "layer", [](const json& j) {
    LayerInfo l;
    l.id = j.at("id").get<TreeId>();
    l.diff_id = j.value("diff_id", "");
    l.compressed_digest = j.value("compressed_digest", "");
    l.media_type = j.value("media_type", "");
    l.source = j.value("source", "");
    l.size = j.value("size", uint64_t{0});
    l.inodes = j.value("inodes", uint64_t{0});
    l.entries = j.value("entries", uint64_t{0});
    l.created = j.value("created", int64_t{0});
    l.pending = j.value("pending", false);
    return l;
  });
}

json ToJson(const ViewInfo& v) {
  return json{{"id", v.id},         {"layers", v.layers},
              {"inodes", v.inodes}, {"entries", v.entries},
              {"size", v.size},     {"build_seconds", v.build_seconds}};
}

std::string EncodeView(const ViewInfo& v) {
  return ToJson(v).dump();
}

Result<ViewInfo> DecodeView(std::string_view bytes) {
  return Parse(bytes, "view", [](const json& j) {
    ViewInfo v;
    v.id = j.at("id").get<TreeId>();
    v.layers = j.at("layers").get<std::vector<TreeId>>();
    v.inodes = j.value("inodes", uint64_t{0});
    v.entries = j.value("entries", uint64_t{0});
    v.size = j.value("size", uint64_t{0});
    v.build_seconds = j.value("build_seconds", 0.0);
    return v;
  });
}

std::string EncodeImage(const ImageInfo& i) {
  return json{{"name", i.name},      {"id", i.id},
              {"layers", i.layers},  {"view", i.view},
              {"config", i.config},  {"manifest_digest", i.manifest_digest},
              {"created", i.created}}
      .dump();
}

Result<ImageInfo> DecodeImage(std::string_view bytes) {
  return Parse(bytes, "image", [](const json& j) {
    ImageInfo i;
    i.name = j.at("name").get<std::string>();
    i.id = j.value("id", "");
    i.layers = j.at("layers").get<std::vector<TreeId>>();
    i.view = j.at("view").get<TreeId>();
    i.config = j.value("config", json::object());
    i.manifest_digest = j.value("manifest_digest", "");
    i.created = j.value("created", int64_t{0});
    return i;
  });
}

}  // namespace strata::layerdb
