// MakeImageConfig (importers.h): the OCI image config of an image made from
// directories or tarballs, which come with none (image-spec config.md).

#include <ctime>
#include <string>
#include <string_view>

#include "layerdb/importers.h"

namespace strata::layerdb {

namespace {

// The config's "architecture" uses Go's GOARCH names (image-spec config.md);
// the host is the architecture this binary was built for.
constexpr std::string_view HostArchitecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__i386__)
  return "386";
#elif defined(__arm__)
  return "arm";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "ppc64le";
#elif defined(__powerpc64__)
  return "ppc64";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#elif defined(__loongarch64)
  return "loong64";
#elif defined(__mips64) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "mips64le";
#else
#error "unknown host architecture: add its GOARCH name"
#endif
}

// RFC 3339 in UTC with second precision, as Docker and umoci write it.
std::string Rfc3339Utc(time_t t) {
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return {buf, n};
}

// "tar:/home/me/x.tar" -> "strata import tar": the kind of source without
// the host path, which would otherwise travel with a pushed image.
std::string CreatedBy(const LayerInfo& layer) {
  std::string kind = layer.source.substr(0, layer.source.find(':'));
  return kind.empty() ? "strata import" : "strata import " + kind;
}

}  // namespace

nlohmann::json MakeImageConfig(const std::vector<LayerInfo>& layers) {
  std::string now = Rfc3339Utc(std::time(nullptr));
  nlohmann::json diff_ids = nlohmann::json::array();
  nlohmann::json history = nlohmann::json::array();
  // Layers without a diff_id (directory imports) have no OCI identity yet;
  // history stays one entry per listed diff_id, as config.md requires of
  // entries that are not empty_layer.
  for (const LayerInfo& layer : layers) {
    if (layer.diff_id.empty()) continue;
    diff_ids.push_back(layer.diff_id);
    history.push_back(
        {{"created", layer.created != 0 ? Rfc3339Utc(layer.created) : now},
         {"created_by", CreatedBy(layer)}});
  }
  nlohmann::json config = {
      {"created", now},
      {"architecture", HostArchitecture()},
      {"os", "linux"},
      {"config",
       {{"Env", nlohmann::json::array({"PATH=/usr/local/sbin:/usr/local/bin:"
                                       "/usr/sbin:/usr/bin:/sbin:/bin"})}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
  };
  if (!history.empty()) config["history"] = std::move(history);
  return config;
}

}  // namespace strata::layerdb
