#include "fs/mount_options.h"

#include <unistd.h>

#include <array>
#include <filesystem>

namespace strata::fs {

MountOptionKind ClassifyMountOption(std::string_view key) {
  static constexpr std::array<std::string_view, 16> kKernel = {
      "allow_other", "allow_root", "nosuid",  "suid",  "nodev",      "dev",
      "noexec",      "exec",       "noatime", "atime", "nodiratime", "diratime",
      "sync",        "dirsync",    "ro",      "rw"};
  static constexpr std::array<std::string_view, 29> kIgnored = {
      "relatime",
      "norelatime",
      "strictatime",
      "lazytime",
      "nolazytime",
      "async",
      "auto",
      "noauto",
      "user",
      "nouser",
      "users",
      "_netdev",
      "nofail",
      "defaults",
      "context",
      "fscontext",
      "defcontext",
      "rootcontext",
      "default_permissions",
      "index",
      "redirect_dir",
      "metacopy",
      "xino",
      "userxattr",
      "nfs_export",
      "fast_ino",
      "static_nlink",
      "noacl",
      "source"};
  for (std::string_view k : kKernel)
    if (key == k) return MountOptionKind::kKernelFlag;
  for (std::string_view k : kIgnored)
    if (key == k) return MountOptionKind::kIgnored;
  if (key.starts_with("x-")) return MountOptionKind::kIgnored;
  return MountOptionKind::kOther;
}

std::vector<std::string> SplitEscaped(std::string_view s, char sep) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out.back() += s[++i];
    } else if (s[i] == sep) {
      out.emplace_back();
    } else {
      out.back() += s[i];
    }
  }
  return out;
}

std::string AbsolutePath(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  if (ec) return path;
  // Normal form, no trailing slash: "up/" + ".work" must not land inside.
  std::string out = abs.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/')
    out.pop_back();
  return out;
}

}  // namespace strata::fs
