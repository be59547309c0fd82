#include "fs/upper_changes.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "fs/host_io.h"
#include "fs/upper_format.h"
#include "layerdb/base/sys.h"

namespace strata::fs {

namespace {

const UpperFormat kBoth[2] = {UpperFormat(XattrNs::kTrusted),
                              UpperFormat(XattrNs::kUser)};

std::string Join(const std::string& rel, const std::string& name) {
  return rel.empty() ? name : rel + "/" + name;
}

// The first of the trusted./user. forms of an overlay xattr that is set.
Result<std::optional<std::string>> OverlayXattr(
    const std::string& path, const std::vector<std::string>& names,
    std::string (UpperFormat::*which)() const) {
  for (const UpperFormat& f : kBoth) {
    std::string n = (f.*which)();
    if (std::find(names.begin(), names.end(), n) != names.end())
      return host::GetXattr(path, n);
  }
  return std::optional<std::string>();
}

class UpperReader {
 public:
  explicit UpperReader(std::string upper) : upper_(std::move(upper)) {}

  Status Read(UpperChanges& out) {
    out_ = &out;
    return Dir("");
  }

 private:
  std::string Host(const std::string& rel) const {
    return rel.empty() ? upper_ : upper_ + "/" + rel;
  }

  // A directory of the upper: replaced whole when opaque or redirected,
  // else its attributes changed and its entries are read.
  Status Dir(const std::string& rel) {
    std::string path = Host(rel);
    STRATA_ASSIGN_OR_RETURN(auto xnames, host::ListXattrNames(path));
    STRATA_ASSIGN_OR_RETURN(auto opaque,
                            OverlayXattr(path, xnames, &UpperFormat::Opaque));
    STRATA_ASSIGN_OR_RETURN(auto redirect,
                            OverlayXattr(path, xnames, &UpperFormat::Redirect));
    STRATA_ASSIGN_OR_RETURN(
        auto marker,
        host::StatAt(AT_FDCWD, path + "/" + std::string(kOpaqueMarker)));
    if ((opaque && *opaque == "y") || marker || redirect) {
      out_->changes.replaced.push_back(rel);
      return Ok();
    }
    out_->changes.changed.push_back(rel);
    bool xattr_whiteouts = opaque && *opaque == "x";
    STRATA_ASSIGN_OR_RETURN(auto names, sys::ListDir(path));
    for (const auto& name : names)
      STRATA_RETURN_IF_ERROR(Entry(rel, name, xattr_whiteouts));
    return Ok();
  }

  Status Entry(const std::string& dir, const std::string& name,
               bool xattr_whiteouts) {
    std::string rel = Join(dir, name);
    if (name == kOpaqueMarker) return Ok();
    if (name.starts_with(kWhPrefix)) {
      out_->changes.deleted.push_back(Join(dir, name.substr(kWhPrefix.size())));
      return Ok();
    }
    STRATA_ASSIGN_OR_RETURN(auto st, host::StatAt(AT_FDCWD, Host(rel)));
    if (!st) return Ok();  // gone meanwhile
    if (S_ISDIR(st->st_mode)) return Dir(rel);
    if (IsWhiteoutDev(*st) ||
        (xattr_whiteouts && S_ISREG(st->st_mode) && st->st_size == 0 &&
         IsXattrWhiteout(Host(rel)))) {
      out_->changes.deleted.push_back(rel);
      return Ok();
    }
    out_->changes.changed.push_back(rel);
    return Ok();
  }

  static bool IsXattrWhiteout(const std::string& path) {
    auto names = host::ListXattrNames(path);
    if (!names) return false;
    return std::any_of(names->begin(), names->end(), [](const auto& n) {
      return n == "trusted.overlay.whiteout" || n == "user.overlay.whiteout";
    });
  }

  std::string upper_;
  UpperChanges* out_ = nullptr;
};

}  // namespace

Result<UpperChanges> ReadUpperChanges(const std::string& upper_dir,
                                      const std::string& work_dir) {
  UpperChanges out;
  STRATA_RETURN_IF_ERROR(UpperReader(upper_dir).Read(out));
  auto index = sys::ListDir(work_dir + "/strata-index");
  if (!index && index.error().code() != ENOENT) return index.error();
  if (index) {
    for (const auto& key : *index) {
      uint64_t ino = 0;
      auto r = std::from_chars(key.data(), key.data() + key.size(), ino, 16);
      if (r.ec == std::errc() && r.ptr == key.data() + key.size())
        out.indexed.push_back(ino);
    }
  }
  return out;
}

}  // namespace strata::fs
