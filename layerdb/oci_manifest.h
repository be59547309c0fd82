#pragma once

// OCI and Docker image JSON, read safely (internal to layerdb). Shared by the
// OCI layout importer (import_oci.cc) and the docker-archive importer
// (import_docker_archive.cc); field-notes §4 has the rules they follow.
//
// Every blob lives at "blobs/sha256/<64 lowercase hex>" below a root that an
// OpenFn opens (a layout directory, an extracted archive). Digests are data:
// DigestHex admits only that grammar, so a digest never becomes a path with
// "/" or "..". JSON blobs are read only up to kMaxJsonBytes and verified
// against their descriptor (size and sha256) before they are parsed.
//
// Errors name the object ("index.json", "manifest sha256:…", "config
// sha256:…") and the cause in Error::detail, in one line.
// Thread-safety: plain functions over values; OpenFn decides the rest.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"
#include "layerdb/importers.h"
#include "layerdb/store.h"

namespace strata::layerdb::oci {

// Manifests, indexes and configs larger than this are refused (EFBIG): real
// ones are a few KiB, and a registry need only accept 4 MB manifests.
inline constexpr uint64_t kMaxJsonBytes = 4 << 20;

inline constexpr std::string_view kRefNameAnnotation =
    "org.opencontainers.image.ref.name";
inline constexpr std::string_view kContainerdNameAnnotation =
    "io.containerd.image.name";

// `s` (input data: a ref, a digest) quoted and cut short, with unprintable
// bytes replaced, so that an error stays one readable line.
std::string Quote(std::string_view s);

// The string member `key` of object `j`: "" when absent or null, EINVAL
// when it has another type.
Result<std::string> StringField(const nlohmann::json& j, std::string_view key,
                                const std::string& what);

// Opens a file below the root being imported ("index.json",
// "blobs/sha256/<hex>") read-only. ENOENT when it is absent.
using OpenFn = std::function<Result<UniqueFd>(const std::string& rel)>;

enum class Kind { kIndex, kManifest, kUnknown };
Kind KindOfMediaType(std::string_view media_type);
bool IsConfigMediaType(std::string_view media_type);
bool IsLayerMediaType(std::string_view media_type);

// The 64 hex digits of "sha256:<64 lowercase hex>". EINVAL for anything else
// ("../", uppercase, wrong length), ENOTSUP for another algorithm; `what`
// names where the digest was found.
Result<std::string> DigestHex(std::string_view digest, const std::string& what);
// "blobs/sha256/<hex>". REQUIRES: `digest` passed DigestHex.
std::string BlobPath(std::string_view digest);
// "sha256:" and the first 12 hex digits, for labels.
std::string ShortDigest(std::string_view digest);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string ToString() const;  // "linux/arm64/v8"
};

struct Descriptor {
  std::string media_type;  // may be empty (legacy or lax producers)
  std::string digest;      // validated by DigestHex
  uint64_t size = 0;
  std::map<std::string, std::string> annotations;
  bool has_platform = false;
  Platform platform;

  std::string RefName() const;  // org.opencontainers.image.ref.name or ""
};

// Parses a descriptor object. `what` names its container ("index.json",
// "manifest sha256:…"). EINVAL when a field is missing or malformed.
Result<Descriptor> ParseDescriptor(const nlohmann::json& j,
                                   const std::string& what);

// Parses JSON text; EINVAL when it is not JSON or is nested absurdly deep
// (the serializer recurses, so depth is bounded before anything dumps it).
Result<nlohmann::json> ParseJson(std::string_view text,
                                 const std::string& what);

// Reads a small regular file through `fd` (at most kMaxJsonBytes; EFBIG
// beyond, EINVAL when not a regular file).
Result<std::string> ReadSmallFile(int fd, const std::string& what);

// Reads, verifies and parses the JSON blob `desc`. `kind` says what it is
// ("manifest", "config") and `referrer` what pointed at it, so a missing
// blob reads "manifest sha256:… references missing config sha256:…"
// (ENOENT). EIO when size or sha256 differ from the descriptor.
Result<nlohmann::json> ReadJsonBlob(const OpenFn& open, const Descriptor& desc,
                                    const std::string& kind,
                                    const std::string& referrer);

// Checks `oci-layout` and returns the entries of `index.json` that are
// manifests or indexes (others, e.g. artifacts, are skipped as the spec
// requires). `where` names the layout in errors.
Result<std::vector<Descriptor>> ReadLayoutIndex(const OpenFn& open,
                                                const std::string& where);

// "amd64", "arm64", … for the architecture this binary was built for.
std::string HostArchitecture();

// Picks the entry for linux/<host arch> among `entries` (variant only breaks
// ties); a single entry without a platform is taken as is. ENOENT listing
// the platforms on offer otherwise.
Result<Descriptor> PickPlatform(const std::vector<Descriptor>& entries,
                                const std::string& where);

struct Manifest {
  Descriptor desc;
  nlohmann::json doc;
};

// Follows image indexes (OCI index, Docker manifest list) from `desc` down to
// one image manifest for the host platform, verifying every blob read.
Result<Manifest> ResolveManifest(const OpenFn& open, Descriptor desc,
                                 const std::string& referrer);

// The config's rootfs.diff_ids, each a valid sha256 digest. EINVAL otherwise.
Result<std::vector<std::string>> ConfigDiffIds(const nlohmann::json& config,
                                               const std::string& what);

// One layer to import, fully described before anything is imported.
struct LayerPlan {
  std::string path;        // below the OpenFn root
  std::string digest;      // expected sha256 of the file, "" if unknown
  int64_t size = -1;       // expected size in bytes, -1 if unknown
  std::string media_type;  // may be empty: compression is detected anyway
  std::string diff_id;     // from the config
  std::string referrer;    // "manifest sha256:…", for missing-blob errors

  // "layer sha256:<12 hex>", by blob digest, else by diff_id.
  std::string Label() const;
};

// One image to create: everything read and verified except layer contents.
struct ImagePlan {
  std::string what;             // "manifest sha256:…", "manifest.json[0]"
  std::string manifest_digest;  // "" for legacy docker-archive images
  std::string config_digest;    // "" when unknown (legacy, unverifiable)
  nlohmann::json config;
  std::vector<LayerPlan> layers;
  std::vector<std::string> names;  // normalized; the first is created
};

// Reads the manifest's config and lays out its layers. EINVAL for unknown
// config or layer media types, and when the layers and the config's
// diff_ids differ in number.
Result<ImagePlan> PlanImage(const OpenFn& open, const Manifest& manifest);

// Imports the layers of `plan` (bottom first) and names the image. Before
// the first layer is committed it checks that every layer file exists with
// its expected size and verifies the digests of the layers above the first,
// so that a corrupt image leaves no layers behind. REQUIRES: the caller holds
// the store's shared lock.
Result<ImportedImage> ImportPlannedImage(Store& store, const OpenFn& open,
                                         const ImagePlan& plan,
                                         const ImportOptions& opts);

// The Docker "familiar" form of a reference: "docker.io/library/busybox:1"
// → "busybox:1", "docker.io/foo/bar:v1" → "foo/bar:v1"; others unchanged.
std::string FamiliarName(std::string_view ref);
// True for a ref.name that is only a tag ("latest", "v1.0").
bool IsBareTag(std::string_view ref);
// A repository name made from a file or directory name ("My Image.tar" →
// "my-image"), for layouts and archives whose refs are bare tags.
std::string RepoFromPath(const std::string& path);

}  // namespace strata::layerdb::oci
