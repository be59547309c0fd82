// ImportDockerArchive: `docker save` / `podman save` / `skopeo copy
// docker-archive:` output (field-notes §4.6). The archive is extracted into a
// private directory under the store root, then read either as an OCI layout
// (Docker >= 25 writes one) or through its legacy manifest.json.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"
#include "layerdb/hash.h"
#include "layerdb/importers.h"
#include "layerdb/mem_tree.h"
#include "layerdb/oci_manifest.h"

namespace strata::layerdb {

namespace {

using nlohmann::json;
using oci::Descriptor;
using oci::ImagePlan;
using oci::Quote;

constexpr size_t kCopyChunk = 1 << 20;
// As the kernel's limit on symlinks followed in one lookup.
constexpr int kMaxLinkHops = 40;

// A private directory under the store root (so extraction lands on the
// store's filesystem, not a possibly small /tmp), removed with everything in
// it when the import returns, whatever the outcome.
class ScopedTempDir {
 public:
  static Result<ScopedTempDir> Create(const std::string& parent) {
    std::string path = parent + "/tmp-import-XXXXXX";
    if (::mkdtemp(path.data()) == nullptr)
      return Error::FromErrno("mkdtemp", path);
    return ScopedTempDir(std::move(path));
  }
  ScopedTempDir(ScopedTempDir&& o) noexcept : path_(std::move(o.path_)) {
    o.path_.clear();
  }
  ScopedTempDir& operator=(ScopedTempDir&&) = delete;
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  ~ScopedTempDir() {
    if (path_.empty()) return;
    if (Status s = sys::RemoveTree(path_); !s)
      spdlog::warn("import: cannot remove temporary directory: {}",
                   s.error().ToString());
  }

  const std::string& path() const { return path_; }

 private:
  explicit ScopedTempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

std::deque<std::string> SplitSlashes(std::string_view path) {
  std::deque<std::string> parts;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = std::min(path.find('/', pos), path.size());
    if (slash > pos) parts.emplace_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return parts;
}

template <class Parts>
std::string Join(const Parts& parts) {
  std::string out;
  for (const auto& p : parts)
    out += (out.empty() ? "" : "/") + std::string(p);
  return out;
}

// A member name as a clean relative path ("" for the root); EINVAL for
// absolute names and "..", as in layer tarballs.
Result<std::string> CleanMember(const char* name) {
  STRATA_ASSIGN_OR_RETURN(auto parts, SplitMemberPath(name));
  return Join(parts);
}

// The members of an archive below a private directory. Only regular files
// and directories are written there; symlinks and hardlinks are kept in
// memory and resolved by name inside the archive. The directory therefore
// never holds a link, so no member name or link target can make a read or a
// write leave it (archive_write_disk's SECURE flags would guard the writes,
// but it resolves names against the process's cwd, and docker save's
// symlinked layer.tar files would still lead reads anywhere).
class ArchiveTree {
 public:
  explicit ArchiveTree(std::string root) : root_(std::move(root)) {}

  Status Extract(int fd, const std::string& label, uint64_t total,
                 const ImportOptions& opts);
  // Opens the regular file that `member` names, following the archive's
  // own links. ENOENT when absent; EINVAL when a link leads outside.
  Result<UniqueFd> Open(const std::string& member) const;

 private:
  struct Link {
    bool hard = false;
    std::string target;  // hard: a clean member path; soft: as written
  };
  Status AddEntry(archive* a, archive_entry* e);
  Status WriteFile(archive* a, const std::string& path);
  Result<std::string> Resolve(std::string_view member) const;

  std::string root_;
  UniqueFd dir_;
  std::map<std::string, Link, std::less<>> links_;
  std::vector<char> buf_ = std::vector<char>(kCopyChunk);
};

Status ArchiveTree::Extract(int fd, const std::string& label, uint64_t total,
                            const ImportOptions& opts) {
  STRATA_ASSIGN_OR_RETURN(dir_, sys::Open(root_, O_RDONLY | O_DIRECTORY));
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(),
                                                           &archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  auto broken = [&] {
    const char* msg = archive_error_string(a.get());
    return Error(EIO, "read archive",
                 label + ": " + (msg != nullptr ? msg : "unreadable"));
  };
  if (archive_read_open_fd(a.get(), fd, 1 << 16) != ARCHIVE_OK) return broken();
  for (;;) {
    archive_entry* e;
    int rc = archive_read_next_header(a.get(), &e);
    if (rc == ARCHIVE_EOF) return Ok();
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return broken();
    Status s = AddEntry(a.get(), e);
    if (!s) return s.error().WithContext(label);
    if (opts.progress)
      opts.progress(static_cast<uint64_t>(archive_filter_bytes(a.get(), -1)),
                    total);
  }
}

Status ArchiveTree::AddEntry(archive* a, archive_entry* e) {
  const char* name = archive_entry_pathname(e);
  if (name == nullptr) return Error(EINVAL, "extract", "member without a name");
  STRATA_ASSIGN_OR_RETURN(std::string path, CleanMember(name));
  if (path.empty()) return Ok();  // "./": the root itself
  links_.erase(path);             // a later member replaces an earlier one
  if (const char* target = archive_entry_hardlink(e); target != nullptr) {
    STRATA_ASSIGN_OR_RETURN(std::string clean, CleanMember(target));
    links_[path] = Link{true, std::move(clean)};
    return Ok();
  }
  switch (archive_entry_filetype(e)) {
    case AE_IFDIR:
      return sys::MakeDirs(root_ + "/" + path, 0700);
    case AE_IFREG:
      return WriteFile(a, path);
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      links_[path] = Link{false, target != nullptr ? target : ""};
      return Ok();
    }
    default:  // devices, fifos: never part of an image archive
      spdlog::debug("import: skipping special file in archive: name={}", path);
      return Ok();
  }
}

Status ArchiveTree::WriteFile(archive* a, const std::string& path) {
  if (size_t slash = path.rfind('/'); slash != std::string::npos)
    STRATA_RETURN_IF_ERROR(
        sys::MakeDirs(root_ + "/" + path.substr(0, slash), 0700));
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd out,
      sys::OpenAt(dir_.get(), path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW,
                  0600));
  for (;;) {
    la_ssize_t n = archive_read_data(a, buf_.data(), buf_.size());
    if (n < 0) {
      const char* msg = archive_error_string(a);
      return Error(EIO, "extract",
                   Quote(path) + ": " + (msg != nullptr ? msg : "unreadable"));
    }
    if (n == 0) return out.Close();
    STRATA_RETURN_IF_ERROR(sys::WriteFull(
        out.get(),
        std::as_bytes(std::span(buf_.data(), static_cast<size_t>(n)))));
  }
}

// Like openat2(RESOLVE_IN_ROOT) over the archive's names, except that a
// link leading outside is an error rather than clamped to the root: an
// archive that does that is hostile or broken.
Result<std::string> ArchiveTree::Resolve(std::string_view member) const {
  auto outside = [&](const std::string& why) {
    return Error(EINVAL, "resolve member", Quote(member) + ": " + why);
  };
  if (member.starts_with('/')) return outside("absolute path");
  std::vector<std::string> done;
  std::deque<std::string> todo = SplitSlashes(member);
  int hops = 0;
  while (!todo.empty()) {
    std::string part = std::move(todo.front());
    todo.pop_front();
    if (part == ".") continue;
    if (part == "..") {
      if (done.empty()) return outside("leads outside the archive");
      done.pop_back();
      continue;
    }
    done.push_back(std::move(part));
    auto link = links_.find(Join(done));
    if (link == links_.end()) continue;
    if (++hops > kMaxLinkHops)
      return Error(ELOOP, "resolve member", Quote(member) + ": too many links");
    done.pop_back();
    if (link->second.hard) done.clear();
    if (link->second.target.starts_with('/'))
      return outside("symlink to " + Quote(link->second.target) +
                     " leads outside the archive");
    std::deque<std::string> next = SplitSlashes(link->second.target);
    todo.insert(todo.begin(), next.begin(), next.end());
  }
  return Join(done);
}

Result<UniqueFd> ArchiveTree::Open(const std::string& member) const {
  STRATA_ASSIGN_OR_RETURN(std::string path, Resolve(member));
  if (path.empty())
    return Error(EISDIR, "open member", Quote(member) + " is the archive root");
  // No link exists on disk, so O_NOFOLLOW only documents the invariant.
  return sys::OpenAt(dir_.get(), path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
}

Result<json> ReadArchiveJson(const oci::OpenFn& open, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, open(name));
  STRATA_ASSIGN_OR_RETURN(std::string text, oci::ReadSmallFile(fd.get(), name));
  return oci::ParseJson(text, name);
}

// The digest a legacy path promises: "<hex>.json" (a config, as docker save
// and skopeo name it) or "blobs/sha256/<hex>" (Docker >= 25); "" for none.
// docker save's "<id>/layer.tar" and skopeo's "<diff_id>.tar" promise no
// digest of the file: their content is checked against diff_ids instead.
std::string DigestFromPath(std::string_view path) {
  std::string_view hex;
  if (path.starts_with("blobs/sha256/")) {
    hex = path.substr(13);
  } else if (path.ends_with(".json")) {
    hex = path.substr(path.rfind('/') + 1);
    hex.remove_suffix(5);
  }
  bool is_hex = hex.size() == 64 &&
                hex.find_first_not_of("0123456789abcdef") == std::string::npos;
  return is_hex ? "sha256:" + std::string(hex) : std::string();
}

// The media type of a legacy layer file, by its first bytes: manifest.json
// does not say, and LayerInfo should (exporters and push use it).
std::string DetectLayerMediaType(const oci::OpenFn& open,
                                 const std::string& path) {
  std::string type = "application/vnd.oci.image.layer.v1.tar";
  auto fd = open(path);
  std::array<unsigned char, 4> magic{};
  if (!fd) return type;
  auto n = sys::ReadFull(fd->get(), std::as_writable_bytes(std::span(magic)));
  if (n && *n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
    return type + "+gzip";
  if (n && *n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 &&
      magic[2] == 0x2f && magic[3] == 0xfd)
    return type + "+zstd";
  return type;
}

Result<std::vector<std::string>> StringArray(const json& entry, const char* key,
                                             const std::string& what) {
  std::vector<std::string> out;
  auto it = entry.find(key);
  if (it == entry.end() || it->is_null()) return out;
  if (!it->is_array())
    return Error(EINVAL, "parse json",
                 what + ": \"" + key + "\" is not an array");
  for (const json& s : *it) {
    if (!s.is_string())
      return Error(EINVAL, "parse json",
                   what + ": \"" + key + "\" holds a non-string");
    out.push_back(s.get<std::string>());
  }
  return out;
}

Result<json> ReadLegacyConfig(const oci::OpenFn& open, const std::string& path,
                              const std::string& what) {
  std::string config_what = "config " + Quote(path);
  auto fd = open(path);
  if (!fd && fd.error().code() == ENOENT)
    return Error(ENOENT, "read json",
                 what + " references missing " + config_what);
  if (!fd) return fd.error().WithContext(config_what);
  STRATA_ASSIGN_OR_RETURN(std::string text,
                          oci::ReadSmallFile(fd->get(), config_what));
  std::string want = DigestFromPath(path);
  if (std::string got = Sha256::Of(text); !want.empty() && got != want)
    return Error(EIO, "verify blob",
                 config_what + ": content has digest " + got +
                     ", but its name says " + want);
  return oci::ParseJson(text, config_what);
}

// One entry of a legacy manifest.json: {Config, RepoTags, Layers}.
Result<ImagePlan> PlanLegacyEntry(const oci::OpenFn& open, const json& entry,
                                  const std::string& what) {
  if (!entry.is_object())
    return Error(EINVAL, "parse json", what + ": not an object");
  ImagePlan plan;
  plan.what = what;
  STRATA_ASSIGN_OR_RETURN(std::string config_path,
                          oci::StringField(entry, "Config", what));
  if (config_path.empty())
    return Error(EINVAL, "parse json", what + ": no Config");
  STRATA_ASSIGN_OR_RETURN(plan.config,
                          ReadLegacyConfig(open, config_path, what));
  plan.config_digest = DigestFromPath(config_path);
  STRATA_ASSIGN_OR_RETURN(
      auto diff_ids,
      oci::ConfigDiffIds(plan.config, "config " + Quote(config_path)));
  STRATA_ASSIGN_OR_RETURN(auto layers, StringArray(entry, "Layers", what));
  if (layers.size() != diff_ids.size())
    return Error(EINVAL, "parse json",
                 what + " lists " + std::to_string(layers.size()) +
                     " layers but config " + Quote(config_path) + " lists " +
                     std::to_string(diff_ids.size()) + " diff_ids");
  for (size_t i = 0; i < layers.size(); ++i) {
    plan.layers.push_back({layers[i], DigestFromPath(layers[i]), -1,
                           DetectLayerMediaType(open, layers[i]), diff_ids[i],
                           what});
  }
  STRATA_ASSIGN_OR_RETURN(plan.names, StringArray(entry, "RepoTags", what));
  return plan;
}

Result<std::vector<ImagePlan>> PlanLegacy(const oci::OpenFn& open,
                                          const std::string& file) {
  auto manifest = ReadArchiveJson(open, "manifest.json");
  if (!manifest && manifest.error().code() == ENOENT)
    return Error(EINVAL, "import docker-archive",
                 file +
                     ": neither manifest.json nor an OCI layout inside; "
                     "not a docker save archive");
  if (!manifest) return manifest.error();
  if (!manifest->is_array())
    return Error(EINVAL, "parse json", "manifest.json: not an array");
  std::vector<ImagePlan> plans;
  for (size_t i = 0; i < manifest->size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(
        ImagePlan plan,
        PlanLegacyEntry(open, (*manifest)[i],
                        "manifest.json[" + std::to_string(i) + "]"));
    plans.push_back(std::move(plan));
  }
  return plans;
}

void AddName(ImagePlan& plan, std::string name) {
  if (std::find(plan.names.begin(), plan.names.end(), name) == plan.names.end())
    plan.names.push_back(std::move(name));
}

// Names of an index.json entry in Docker's OCI form: containerd's full
// name, else the RepoTags that the legacy manifest.json gives its config,
// else its ref.name.
void NameOciEntry(const Descriptor& top, const json& legacy,
                  const std::string& file, ImagePlan& plan) {
  auto full = top.annotations.find(std::string(oci::kContainerdNameAnnotation));
  if (full != top.annotations.end()) return AddName(plan, full->second);
  bool tagged = false;
  for (const json& entry : legacy) {
    auto config = oci::StringField(entry, "Config", "manifest.json");
    if (!config || plan.config_digest.empty() ||
        *config != oci::BlobPath(plan.config_digest))
      continue;
    auto tags = StringArray(entry, "RepoTags", "manifest.json");
    if (!tags) continue;
    for (std::string& t : *tags) {
      AddName(plan, std::move(t));
      tagged = true;
    }
  }
  std::string ref = top.RefName();
  if (tagged || ref.empty()) return;
  AddName(plan,
          oci::IsBareTag(ref) ? oci::RepoFromPath(file) + ":" + ref : ref);
}

// Docker >= 25: every index.json entry is an image (entries naming the same
// manifest are one image with several names).
Result<std::vector<ImagePlan>> PlanOciForm(const oci::OpenFn& open,
                                           const std::string& file) {
  STRATA_ASSIGN_OR_RETURN(auto entries, oci::ReadLayoutIndex(open, file));
  auto legacy = ReadArchiveJson(open, "manifest.json");
  json legacy_entries = legacy && legacy->is_array() ? *legacy : json::array();
  std::vector<ImagePlan> plans;
  for (const Descriptor& top : entries) {
    STRATA_ASSIGN_OR_RETURN(oci::Manifest m,
                            oci::ResolveManifest(open, top, "index.json"));
    auto same = std::find_if(
        plans.begin(), plans.end(),
        [&](const ImagePlan& p) { return p.manifest_digest == m.desc.digest; });
    if (same == plans.end()) {
      STRATA_ASSIGN_OR_RETURN(ImagePlan plan, oci::PlanImage(open, m));
      plans.push_back(std::move(plan));
      same = plans.end() - 1;
    }
    NameOciEntry(top, legacy_entries, file, *same);
  }
  return plans;
}

// Applies `name` (one image only), else checks and normalizes each image's
// own names, before any layer is imported.
Status NameImages(std::vector<ImagePlan>& plans, std::string_view name,
                  const std::string& file) {
  if (plans.empty())
    return Error(EINVAL, "import docker-archive", file + " holds no images");
  if (!name.empty() && plans.size() > 1)
    return Error(EINVAL, "import docker-archive",
                 file + " holds " + std::to_string(plans.size()) +
                     " images; a name can only be given for one");
  if (!name.empty()) {
    STRATA_ASSIGN_OR_RETURN(std::string full, NormalizeImageName(name));
    plans[0].names = {full};
    return Ok();
  }
  for (ImagePlan& plan : plans) {
    if (plan.names.empty())
      return Error(
          EINVAL, "import docker-archive",
          file + ": " + plan.what + " has no RepoTags; give it a name");
    for (std::string& n : plan.names) {
      STRATA_ASSIGN_OR_RETURN(n, NormalizeImageName(oci::FamiliarName(n)));
    }
  }
  return Ok();
}

Status ExtractArchive(ArchiveTree& tree, const std::string& file,
                      const ImportOptions& opts) {
  UniqueFd owned;
  int fd = STDIN_FILENO;
  uint64_t total = 0;
  if (file != "-") {
    STRATA_ASSIGN_OR_RETURN(owned, sys::Open(file, O_RDONLY));
    STRATA_ASSIGN_OR_RETURN(struct stat st, sys::Fstat(owned.get()));
    if (S_ISDIR(st.st_mode))
      return Error(EISDIR, "import docker-archive", file + " is a directory");
    fd = owned.get();
    total = static_cast<uint64_t>(st.st_size);
  }
  return tree.Extract(fd, file == "-" ? "stdin" : file, total, opts);
}

}  // namespace

Result<std::vector<ImportedImage>> ImportDockerArchive(
    Store& store, const std::string& file, std::string_view name,
    const ImportOptions& opts) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store.LockShared());
  STRATA_ASSIGN_OR_RETURN(ScopedTempDir tmp,
                          ScopedTempDir::Create(store.root()));
  ArchiveTree tree(tmp.path());
  STRATA_RETURN_IF_ERROR(ExtractArchive(tree, file, opts));
  oci::OpenFn open = [&tree](const std::string& rel) { return tree.Open(rel); };
  bool is_oci = open("oci-layout") && open("index.json");
  STRATA_ASSIGN_OR_RETURN(
      auto plans, is_oci ? PlanOciForm(open, file) : PlanLegacy(open, file));
  STRATA_RETURN_IF_ERROR(NameImages(plans, name, file));
  std::vector<ImportedImage> out;
  for (const ImagePlan& plan : plans) {
    STRATA_ASSIGN_OR_RETURN(ImportedImage image,
                            oci::ImportPlannedImage(store, open, plan, opts));
    out.push_back(std::move(image));
  }
  return out;
}

}  // namespace strata::layerdb
