#include "layerdb/oci_manifest.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <span>

#include "layerdb/base/sys.h"
#include "layerdb/hash.h"

namespace strata::layerdb::oci {

namespace {

using nlohmann::json;

// Image JSON nests a handful of levels; the bound only has to keep
// nlohmann's recursive dump() far from the stack limit.
constexpr int kMaxJsonDepth = 64;
// An index of indexes of … : real images use at most two levels.
constexpr int kMaxIndexDepth = 8;

constexpr std::string_view kOciIndex =
    "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kOciManifest =
    "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";

Status CheckMediaTypeAgrees(const Descriptor& desc, const json& doc,
                            const std::string& what) {
  auto it = doc.find("mediaType");
  if (it == doc.end() || !it->is_string() || desc.media_type.empty())
    return Ok();
  const auto& in_blob = it->get_ref<const std::string&>();
  if (in_blob == desc.media_type) return Ok();
  return Error(EINVAL, "parse json",
               what + ": its descriptor says media type " +
                   Quote(desc.media_type) + " but the blob says " +
                   Quote(in_blob));
}

Kind KindOfBlob(const Descriptor& desc, const json& doc) {
  Kind k = KindOfMediaType(desc.media_type);
  if (k != Kind::kUnknown || !desc.media_type.empty()) return k;
  // A descriptor without a media type (lax producers): ask the blob.
  auto it = doc.find("mediaType");
  if (it != doc.end() && it->is_string())
    return KindOfMediaType(it->get_ref<const std::string&>());
  if (doc.contains("manifests")) return Kind::kIndex;
  if (doc.contains("layers")) return Kind::kManifest;
  return Kind::kUnknown;
}

Result<std::vector<Descriptor>> ParseManifestList(const json& doc,
                                                  const std::string& what) {
  auto it = doc.find("manifests");
  if (it == doc.end() || !it->is_array())
    return Error(EINVAL, "parse json", what + ": no \"manifests\" array");
  std::vector<Descriptor> out;
  for (const json& entry : *it) {
    // Entries of unknown media types (artifacts, signatures) must be
    // tolerated (image-layout.md), whatever else they hold: skip them unread.
    auto type = entry.find("mediaType");
    if (type != entry.end() && type->is_string() &&
        KindOfMediaType(type->get_ref<const std::string&>()) == Kind::kUnknown)
      continue;
    STRATA_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(entry, what));
    out.push_back(std::move(d));
  }
  return out;
}

bool MatchesHost(const Descriptor& d) {
  return d.has_platform && d.platform.os == "linux" &&
         d.platform.architecture == HostArchitecture();
}

// The variant a tie is broken towards; Docker's default for arm64 is v8.
bool PreferredVariant(const Platform& p) {
  return p.variant.empty() || (p.architecture == "arm64" && p.variant == "v8");
}

Result<Descriptor> ParsePlatform(const json& j, Descriptor d,
                                 const std::string& what) {
  if (!j.is_object())
    return Error(EINVAL, "parse json", what + ": platform is not an object");
  STRATA_ASSIGN_OR_RETURN(d.platform.os, StringField(j, "os", what));
  STRATA_ASSIGN_OR_RETURN(d.platform.architecture,
                          StringField(j, "architecture", what));
  STRATA_ASSIGN_OR_RETURN(d.platform.variant, StringField(j, "variant", what));
  d.has_platform = true;
  return d;
}

}  // namespace

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 100)) {
    if (std::isprint(static_cast<unsigned char>(c)) == 0 || c == '"') {
      out += '?';
    } else {
      out += c;
    }
  }
  if (s.size() > 100) out += "...";
  return out + "\"";
}

Result<std::string> StringField(const json& j, std::string_view key,
                                const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return Error(EINVAL, "parse json",
                 what + ": \"" + std::string(key) + "\" is not a string");
  return it->get<std::string>();
}

Kind KindOfMediaType(std::string_view media_type) {
  if (media_type == kOciIndex || media_type == kDockerList) return Kind::kIndex;
  if (media_type == kOciManifest || media_type == kDockerManifest)
    return Kind::kManifest;
  return Kind::kUnknown;
}

bool IsConfigMediaType(std::string_view media_type) {
  return media_type == "application/vnd.oci.image.config.v1+json" ||
         media_type == "application/vnd.docker.container.image.v1+json";
}

bool IsLayerMediaType(std::string_view media_type) {
  static constexpr std::string_view kTypes[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  return std::find(std::begin(kTypes), std::end(kTypes), media_type) !=
         std::end(kTypes);
}

Result<std::string> DigestHex(std::string_view digest,
                              const std::string& what) {
  size_t colon = digest.find(':');
  std::string_view alg = digest.substr(0, colon);
  bool alg_ok = colon != std::string_view::npos && !alg.empty() &&
                std::all_of(alg.begin(), alg.end(), [](char c) {
                  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                         c == '+' || c == '.' || c == '_' || c == '-';
                });
  if (!alg_ok)
    return Error(EINVAL, "parse digest",
                 what + ": invalid digest " + Quote(digest));
  if (alg != "sha256")
    return Error(ENOTSUP, "parse digest",
                 what + ": digest algorithm " + Quote(alg) +
                     " is not supported (only sha256)");
  std::string_view hex = digest.substr(colon + 1);
  bool hex_ok =
      hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      });
  if (!hex_ok)
    return Error(EINVAL, "parse digest",
                 what + ": invalid digest " + Quote(digest) +
                     " (want sha256: and 64 lowercase hex digits)");
  return std::string(hex);
}

std::string BlobPath(std::string_view digest) {
  return "blobs/sha256/" + std::string(digest.substr(7));
}

std::string ShortDigest(std::string_view digest) {
  return std::string(digest.substr(0, 7 + 12));
}

std::string Platform::ToString() const {
  std::string s = (os.empty() ? "?" : os) + "/" +
                  (architecture.empty() ? "?" : architecture);
  if (!variant.empty()) s += "/" + variant;
  return s;
}

std::string Descriptor::RefName() const {
  auto it = annotations.find(std::string(kRefNameAnnotation));
  return it == annotations.end() ? std::string() : it->second;
}

Result<Descriptor> ParseDescriptor(const json& j, const std::string& what) {
  if (!j.is_object())
    return Error(EINVAL, "parse json", what + ": descriptor is not an object");
  Descriptor d;
  STRATA_ASSIGN_OR_RETURN(d.media_type, StringField(j, "mediaType", what));
  STRATA_ASSIGN_OR_RETURN(d.digest, StringField(j, "digest", what));
  STRATA_RETURN_IF_ERROR(DigestHex(d.digest, what));
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_unsigned())
    return Error(EINVAL, "parse json",
                 what + ": descriptor " + d.digest + " has no valid size");
  d.size = size->get<uint64_t>();
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    for (const auto& [k, v] : a->items())
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
  }
  if (auto p = j.find("platform"); p != j.end() && !p->is_null())
    return ParsePlatform(*p, std::move(d), what);
  return d;
}

Result<json> ParseJson(std::string_view text, const std::string& what) {
  int max_depth = 0;
  json::parser_callback_t track = [&max_depth](int depth, json::parse_event_t,
                                               json&) {
    max_depth = std::max(max_depth, depth);
    return true;
  };
  json j = json::parse(text, track, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return Error(EINVAL, "parse json", what + ": not valid JSON");
  if (max_depth > kMaxJsonDepth)
    return Error(EINVAL, "parse json", what + ": JSON nested too deeply");
  return j;
}

Result<std::string> ReadSmallFile(int fd, const std::string& what) {
  STRATA_ASSIGN_OR_RETURN(struct stat st, sys::Fstat(fd));
  if (!S_ISREG(st.st_mode))
    return Error(EINVAL, "read json", what + ": not a regular file");
  auto size = static_cast<uint64_t>(st.st_size);
  if (size > kMaxJsonBytes)
    return Error(EFBIG, "read json",
                 what + ": " + std::to_string(size) +
                     " bytes, over the 4 MiB limit for image JSON");
  // One byte more than the file claims, to notice it growing under us.
  std::string data(static_cast<size_t>(size) + 1, '\0');
  auto got = sys::ReadFull(fd, std::as_writable_bytes(std::span(data)));
  if (!got) return got.error().WithContext(what);
  if (*got > kMaxJsonBytes)
    return Error(EFBIG, "read json", what + ": over the 4 MiB limit");
  data.resize(*got);
  return data;
}

Result<json> ReadJsonBlob(const OpenFn& open, const Descriptor& desc,
                          const std::string& kind,
                          const std::string& referrer) {
  std::string what = kind + " " + desc.digest;
  if (desc.size > kMaxJsonBytes)
    return Error(EFBIG, "read json",
                 what + ": " + std::to_string(desc.size) +
                     " bytes, over the 4 MiB limit for image JSON");
  auto fd = open(BlobPath(desc.digest));
  if (!fd && fd.error().code() == ENOENT)
    return Error(ENOENT, "read json", referrer + " references missing " + what);
  if (!fd) return fd.error().WithContext(what);
  STRATA_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(fd->get(), what));
  if (text.size() != desc.size)
    return Error(EIO, "verify blob",
                 what + ": blob is " + std::to_string(text.size()) +
                     " bytes, but " + referrer + " says " +
                     std::to_string(desc.size));
  if (std::string got = Sha256::Of(text); got != desc.digest)
    return Error(EIO, "verify blob",
                 what + ": content has digest " + got + " (referenced by " +
                     referrer + ")");
  return ParseJson(text, what);
}

Result<std::vector<Descriptor>> ReadLayoutIndex(const OpenFn& open,
                                                const std::string& where) {
  auto read = [&](const std::string& name) -> Result<json> {
    auto fd = open(name);
    if (!fd) return fd.error().WithContext(where + ": not an OCI layout");
    STRATA_ASSIGN_OR_RETURN(std::string text,
                            ReadSmallFile(fd->get(), where + "/" + name));
    return ParseJson(text, where + "/" + name);
  };
  STRATA_ASSIGN_OR_RETURN(json layout, read("oci-layout"));
  if (!layout.is_object())
    return Error(EINVAL, "parse json", where + "/oci-layout: not an object");
  STRATA_ASSIGN_OR_RETURN(std::string version,
                          StringField(layout, "imageLayoutVersion", where));
  if (version != "1.0.0")
    return Error(EINVAL, "parse json",
                 where + ": unsupported imageLayoutVersion " + Quote(version));
  STRATA_ASSIGN_OR_RETURN(json index, read("index.json"));
  std::string what = where + "/index.json";
  if (!index.is_object() || index.value("schemaVersion", json()) != 2)
    return Error(EINVAL, "parse json", what + ": not an image index");
  return ParseManifestList(index, what);
}

std::string HostArchitecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__arm__)
  return "arm";
#elif defined(__i386__)
  return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "ppc64le";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#else
  return "unknown";
#endif
}

Result<Descriptor> PickPlatform(const std::vector<Descriptor>& entries,
                                const std::string& where) {
  const Descriptor* best = nullptr;
  for (const Descriptor& d : entries) {
    if (!MatchesHost(d)) continue;
    if (best == nullptr ||
        (!PreferredVariant(best->platform) && PreferredVariant(d.platform)))
      best = &d;
  }
  if (best != nullptr) return *best;
  if (entries.size() == 1 && !entries[0].has_platform) return entries[0];
  std::string offered;
  for (const Descriptor& d : entries) {
    if (!offered.empty()) offered += ", ";
    offered += d.has_platform ? d.platform.ToString() : "(no platform)";
  }
  return Error(ENOENT, "pick platform",
               where + " has no image for linux/" + HostArchitecture() +
                   " (it has: " + (offered.empty() ? "nothing" : offered) +
                   ")");
}

Result<Manifest> ResolveManifest(const OpenFn& open, Descriptor desc,
                                 const std::string& referrer) {
  std::string from = referrer;
  for (int depth = 0; depth < kMaxIndexDepth; ++depth) {
    bool is_index = KindOfMediaType(desc.media_type) == Kind::kIndex;
    STRATA_ASSIGN_OR_RETURN(
        json doc,
        ReadJsonBlob(open, desc, is_index ? "index" : "manifest", from));
    std::string what = (is_index ? "index " : "manifest ") + desc.digest;
    if (!doc.is_object())
      return Error(EINVAL, "parse json", what + ": not an object");
    STRATA_RETURN_IF_ERROR(CheckMediaTypeAgrees(desc, doc, what));
    Kind kind = KindOfBlob(desc, doc);
    if (kind == Kind::kManifest)
      return Manifest{std::move(desc), std::move(doc)};
    if (kind != Kind::kIndex)
      return Error(EINVAL, "parse json",
                   what + ": unsupported media type " + Quote(desc.media_type));
    what = "index " + desc.digest;
    STRATA_ASSIGN_OR_RETURN(std::vector<Descriptor> children,
                            ParseManifestList(doc, what));
    STRATA_ASSIGN_OR_RETURN(desc, PickPlatform(children, what));
    from = what;
  }
  return Error(ELOOP, "parse json",
               referrer + ": image indexes nested more than " +
                   std::to_string(kMaxIndexDepth) + " deep");
}

Result<std::vector<std::string>> ConfigDiffIds(const json& config,
                                               const std::string& what) {
  if (!config.is_object())
    return Error(EINVAL, "parse json", what + ": not an object");
  auto rootfs = config.find("rootfs");
  if (rootfs == config.end() || !rootfs->is_object())
    return Error(EINVAL, "parse json", what + ": no rootfs");
  STRATA_ASSIGN_OR_RETURN(std::string type, StringField(*rootfs, "type", what));
  if (type != "layers")
    return Error(EINVAL, "parse json",
                 what + ": rootfs type " + Quote(type) + ", want \"layers\"");
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array())
    return Error(EINVAL, "parse json", what + ": no rootfs.diff_ids array");
  std::vector<std::string> out;
  for (const json& id : *ids) {
    if (!id.is_string())
      return Error(EINVAL, "parse json", what + ": a diff_id is not a string");
    const auto& s = id.get_ref<const std::string&>();
    STRATA_RETURN_IF_ERROR(DigestHex(s, what + " diff_ids"));
    out.push_back(s);
  }
  return out;
}

std::string LayerPlan::Label() const {
  return "layer " + ShortDigest(digest.empty() ? diff_id : digest);
}

Result<ImagePlan> PlanImage(const OpenFn& open, const Manifest& manifest) {
  const json& doc = manifest.doc;
  ImagePlan plan;
  plan.what = "manifest " + manifest.desc.digest;
  plan.manifest_digest = manifest.desc.digest;
  if (!doc.is_object() || doc.value("schemaVersion", json()) != 2)
    return Error(EINVAL, "parse json", plan.what + ": schemaVersion is not 2");
  auto cfg = doc.find("config");
  if (cfg == doc.end())
    return Error(EINVAL, "parse json", plan.what + ": no config");
  STRATA_ASSIGN_OR_RETURN(Descriptor config, ParseDescriptor(*cfg, plan.what));
  if (!IsConfigMediaType(config.media_type))
    return Error(EINVAL, "parse json",
                 plan.what + ": config " + config.digest + " has media type " +
                     Quote(config.media_type) + ", not an image config");
  auto layers = doc.find("layers");
  if (layers == doc.end() || !layers->is_array())
    return Error(EINVAL, "parse json", plan.what + ": no \"layers\" array");
  STRATA_ASSIGN_OR_RETURN(plan.config,
                          ReadJsonBlob(open, config, "config", plan.what));
  plan.config_digest = config.digest;
  std::string config_what = "config " + config.digest;
  STRATA_ASSIGN_OR_RETURN(auto diff_ids,
                          ConfigDiffIds(plan.config, config_what));
  if (diff_ids.size() != layers->size())
    return Error(EINVAL, "parse json",
                 plan.what + " lists " + std::to_string(layers->size()) +
                     " layers but " + config_what + " lists " +
                     std::to_string(diff_ids.size()) + " diff_ids");
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(Descriptor d,
                            ParseDescriptor((*layers)[i], plan.what));
    if (!IsLayerMediaType(d.media_type))
      return Error(EINVAL, "parse json",
                   plan.what + ": layer " + d.digest +
                       " has unsupported media type " + Quote(d.media_type));
    plan.layers.push_back({BlobPath(d.digest), d.digest,
                           static_cast<int64_t>(d.size), d.media_type,
                           diff_ids[i], plan.what});
  }
  return plan;
}

std::string FamiliarName(std::string_view ref) {
  for (std::string_view host : {"docker.io/", "index.docker.io/"}) {
    if (!ref.starts_with(host)) continue;
    std::string_view rest = ref.substr(host.size());
    if (rest.starts_with("library/") &&
        rest.find('/', 8) == std::string_view::npos)
      rest.remove_prefix(8);
    return std::string(rest);
  }
  return std::string(ref);
}

bool IsBareTag(std::string_view ref) {
  return ref.find_first_of("/:@") == std::string_view::npos;
}

std::string RepoFromPath(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) p = path;
  p = p.lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  std::string base = p.filename().string();
  for (std::string_view ext : {".gz", ".zst", ".tgz", ".tar"}) {
    if (base.size() > ext.size() && base.ends_with(ext))
      base.resize(base.size() - ext.size());
  }
  std::string repo;
  for (char c : base) {
    auto u = static_cast<unsigned char>(c);
    bool keep = std::isalnum(u) != 0 || c == '.' || c == '_' || c == '-';
    repo += keep ? static_cast<char>(std::tolower(u)) : '-';
  }
  auto alnum = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0;
  };
  auto first = std::find_if(repo.begin(), repo.end(), alnum);
  auto last = std::find_if(repo.rbegin(), repo.rend(), alnum).base();
  if (first >= last) return "image";
  return std::string(first, last);
}

}  // namespace strata::layerdb::oci
