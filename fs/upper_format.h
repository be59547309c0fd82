#pragma once

// The upper directory format (docs/format.md, "Upper directory"): kernel
// overlayfs's, so that the kernel, containers/storage and other tools can
// read what strata writes, plus a few extensions of our own.
//
//   whiteout     a 0/0 character device (else `.wh.NAME`, where mknod is
//                refused); read also: `.wh.NAME`, and a zero-size file with
//                `overlay.whiteout` in a directory whose opaque value is "x"
//   opaque       `overlay.opaque` = "y" (else a `.wh..wh..opq` file)
//   redirect     `overlay.redirect` = "/absolute/lower/path" on a renamed
//                directory (kernel format; relative names are read too)
//   metacopy     `overlay.metacopy` on a regular file whose data is still in
//                the lower tree, at `strata.lowerdata` (lower path)
//   identity     `strata.origin` = decimal st_ino of the lower object a
//                copied-up non-directory came from (stable st_ino)
//   hardlinks    <work>/strata-index/<st_ino hex>: the one upper inode of a
//                lower hardlink group; `strata.nlink` = its union nlink
//   ownership    `user.containers.override_stat` = "uid:gid:0mode[:type]"
//                where the daemon may not chown (containers/storage format)
//
// `overlay.` and `strata.` names live in `trusted.` when the daemon is root
// and in `user.` otherwise (kernel overlayfs's `userxattr`); both are read.

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "layerdb/base/error.h"

namespace strata::fs {

// The version of the upper directory format (docs/format.md), recorded in
// <work>/strata-format.
inline constexpr int kUpperFormatVersion = 1;

enum class XattrNs { kTrusted, kUser };

class UpperFormat {
 public:
  explicit UpperFormat(XattrNs ns) : ns_(ns) {}

  // Names written by this mount.
  std::string Opaque() const { return Ov("opaque"); }
  std::string Redirect() const { return Ov("redirect"); }
  std::string MetaCopy() const { return Ov("metacopy"); }
  std::string Origin() const { return St("origin"); }
  std::string LowerData() const { return St("lowerdata"); }
  std::string Nlink() const { return St("nlink"); }

  // The same names in the other namespace (read, never written).
  std::string OtherOpaque() const { return Other().Opaque(); }

  // True for names the union keeps to itself (never listed, never set by
  // callers): trusted./user. overlay.* and strata.*.
  static bool IsPrivateXattr(std::string_view name);

 private:
  UpperFormat Other() const {
    return UpperFormat(ns_ == XattrNs::kTrusted ? XattrNs::kUser
                                                : XattrNs::kTrusted);
  }
  std::string Prefix() const {
    return ns_ == XattrNs::kTrusted ? "trusted." : "user.";
  }
  std::string Ov(const char* n) const { return Prefix() + "overlay." + n; }
  std::string St(const char* n) const { return Prefix() + "strata." + n; }

  XattrNs ns_;
};

inline constexpr std::string_view kWhPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
inline constexpr const char* kOverrideStat = "user.containers.override_stat";
inline constexpr std::string_view kDefaultAcl = "system.posix_acl_default";

inline bool IsWhiteoutDev(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

// Ownership and mode recorded where the daemon may not chown.
struct OverrideStat {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;  // type | permission bits (type from the optional field)
  dev_t rdev = 0;   // for char-M-m / block-M-m
};
std::optional<OverrideStat> ParseOverrideStat(std::string_view value,
                                              mode_t real_type);
std::string FormatOverrideStat(const OverrideStat& o);

}  // namespace strata::fs
