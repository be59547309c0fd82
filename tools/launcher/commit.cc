#include "tools/launcher/commit.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <memory>
#include <unordered_set>

#include "fs/session.h"
#include "fs/stored_lower.h"
#include "fs/union_fs.h"
#include "fs/upper_changes.h"
#include "tools/launcher/mapped_child.h"

namespace strata::launcher {

namespace {

// Every name of the lower hardlink groups that have an index entry: all of
// them show the index's content, so all go into the layer.
Status AddIndexedNames(const std::string& root,
                       const std::vector<uint64_t>& indexed,
                       layerdb::ChangeSet& changes) {
  if (indexed.empty()) return Ok();
  std::unordered_set<uint64_t> inos(indexed.begin(), indexed.end());
  namespace stdfs = std::filesystem;
  std::error_code ec;
  stdfs::recursive_directory_iterator it(root, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISREG(st.st_mode) && st.st_nlink > 1 && inos.contains(st.st_ino))
      changes.changed.push_back(
          it->path().lexically_relative(root).generic_string());
  }
  if (ec) return Error(ec.value(), "commit", root + ": walk");
  return Ok();
}

nlohmann::json CommittedConfig(const CommitSpec& spec) {
  nlohmann::json config =
      spec.base_config.is_object() ? spec.base_config : nlohmann::json{};
  char now[32];
  std::time_t t = std::time(nullptr);
  std::strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  config["created"] = now;
  return config;
}

// In the child that does not serve the mount: reads the changes, stores the
// layer and names the image.
Status ImportFromMount(const CommitSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(auto upper,
                          fs::ReadUpperChanges(spec.upper_dir, spec.work_dir));
  STRATA_RETURN_IF_ERROR(
      AddIndexedNames(spec.mountpoint, upper.indexed, upper.changes));
  std::erase_if(upper.changes.changed, [&](const std::string& rel) {
    return std::find(spec.exclude.begin(), spec.exclude.end(), rel) !=
           spec.exclude.end();
  });
  STRATA_ASSIGN_OR_RETURN(
      auto store,
      layerdb::Store::Open(spec.store_root, layerdb::Store::Mode::kReadWrite));
  STRATA_ASSIGN_OR_RETURN(
      auto layer,
      layerdb::ImportChangesLayer(*store, spec.mountpoint, upper.changes,
                                  spec.import, spec.source));
  std::vector<layerdb::TreeId> layers = spec.base_layers;
  layers.push_back(layer.id);
  auto image = store->CreateImage(spec.name, layers, CommittedConfig(spec));
  if (!image) {
    (void)store->DropUnusedLayers({layer.id});
    return image.error();
  }
  return Ok();
}

Result<std::unique_ptr<fs::BackgroundMount>> MountReadOnly(
    const CommitSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(auto lower, fs::StoredLowerSource::OpenPinned(
                                          spec.store_root, spec.view));
  fs::UnionOptions uo;
  uo.upper_dir = spec.upper_dir;
  uo.work_dir = spec.work_dir;
  uo.xattr_ns = fs::XattrNs::kTrusted;  // downgraded to user. where refused
  auto ufs = fs::UnionFs::Create(std::move(lower), uo);
  if (!ufs &&
      (ufs.error().code() == EWOULDBLOCK || ufs.error().code() == EBUSY))
    return Error(
        EBUSY, "commit",
        spec.upper_dir + ": in use by a mount (is the container running?)");
  if (!ufs) return ufs.error();
  fs::MountConfig mc;
  mc.mountpoint = spec.mountpoint;
  mc.fsname = "strata-commit";
  mc.subtype = "strata";
  mc.read_only = true;
  return fs::BackgroundMount::Mount(mc, std::move(*ufs));
}

// In the mapped child: a private mount namespace with the union mounted
// read-only; a child of ours reads it while our threads serve it (it is
// forked before they start).
Status CommitInNamespace(const CommitSpec& spec) {
  if (::unshare(CLONE_NEWNS) != 0)
    return Error::FromErrno("unshare", "mount namespace");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return Error::FromErrno("mount", "make / private");
  STRATA_ASSIGN_OR_RETURN(auto mount, MountReadOnly(spec));
  return RunInChild([&] { return ImportFromMount(spec); },
                    [&] { mount->Start(); });
}

}  // namespace

Result<layerdb::ImageInfo> CommitUpper(const CommitSpec& spec) {
  STRATA_RETURN_IF_ERROR(
      RunAsMappedRoot([&] { return CommitInNamespace(spec); }));
  STRATA_ASSIGN_OR_RETURN(
      auto store,
      layerdb::Store::Open(spec.store_root, layerdb::Store::Mode::kReadOnly));
  STRATA_ASSIGN_OR_RETURN(auto image, store->FindImage(spec.name));
  if (!image)
    return Error(ENOENT, "commit", "image " + spec.name + " vanished");
  return *image;
}

}  // namespace strata::launcher
