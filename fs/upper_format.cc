#include "fs/upper_format.h"

#include <sys/sysmacros.h>

#include <vector>

#include <fmt/format.h>

#include "layerdb/base/number.h"

namespace strata::fs {

bool UpperFormat::IsPrivateXattr(std::string_view name) {
  for (std::string_view ns : {"trusted.", "user."}) {
    if (!name.starts_with(ns)) continue;
    std::string_view rest = name.substr(ns.size());
    if (rest.starts_with("overlay.") || rest.starts_with("strata."))
      return true;
  }
  return false;
}

namespace {

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    size_t end = s.find(sep, pos);
    out.push_back(
        s.substr(pos, end == std::string_view::npos ? end : end - pos));
    if (end == std::string_view::npos) return out;
    pos = end + 1;
  }
}

template <class T>
bool ParseNum(std::string_view s, T& out, int base) {
  auto n = ParseNumber<T>(s, base);
  if (n) out = *n;
  return n.has_value();
}

// containers/storage's type field: file, dir, symlink, pipe, socket,
// block-M-m, char-M-m.
std::optional<mode_t> ParseType(std::string_view t) {
  if (t == "file") return S_IFREG;
  if (t == "dir") return S_IFDIR;
  if (t == "symlink") return S_IFLNK;
  if (t == "pipe") return S_IFIFO;
  if (t == "socket") return S_IFSOCK;
  if (t.starts_with("block-")) return S_IFBLK;
  if (t.starts_with("char-")) return S_IFCHR;
  return std::nullopt;
}

}  // namespace

std::optional<OverrideStat> ParseOverrideStat(std::string_view value,
                                              mode_t real_type) {
  auto f = Split(value, ':');
  if (f.size() < 3) return std::nullopt;
  OverrideStat o;
  unsigned mode = 0;
  if (!ParseNum(f[0], o.uid, 10) || !ParseNum(f[1], o.gid, 10) ||
      !ParseNum(f[2], mode, 8))
    return std::nullopt;
  mode_t type = real_type;
  if (f.size() >= 4) {
    auto t = ParseType(f[3]);
    if (!t) return std::nullopt;
    type = *t;
    if (type == S_IFCHR || type == S_IFBLK) {
      auto dm = Split(f[3], '-');
      unsigned ma = 0, mi = 0;
      if (dm.size() != 3 || !ParseNum(dm[1], ma, 10) ||
          !ParseNum(dm[2], mi, 10))
        return std::nullopt;
      o.rdev = makedev(ma, mi);
    }
  }
  o.mode = type | (mode & 07777);
  return o;
}

std::string FormatOverrideStat(const OverrideStat& o) {
  dev_t rdev = o.rdev;
  std::string s = fmt::format("{}:{}:0{:o}", o.uid, o.gid, o.mode & 07777);
  switch (o.mode & S_IFMT) {
    case S_IFCHR:
      return s + fmt::format(":char-{}-{}", major(rdev), minor(rdev));
    case S_IFBLK:
      return s + fmt::format(":block-{}-{}", major(rdev), minor(rdev));
    case S_IFIFO:
      return s + ":pipe";
    case S_IFSOCK:
      return s + ":socket";
    case S_IFLNK:
      return s + ":symlink";
    case S_IFDIR:
      return s + ":dir";
    default:
      return s + ":file";
  }
}

}  // namespace strata::fs
