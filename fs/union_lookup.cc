// UnionFs: name resolution and identity. A name resolves in the upper
// directory first (whiteouts hide, opaque directories stop), then in the
// lower tree: one LowerSource lookup, which for a stored view is one B-tree
// probe whatever the number of layers.

#include <fcntl.h>
#include <sys/stat.h>

#include <mutex>
#include <shared_mutex>

#include "fs/host_io.h"
#include "fs/union_fs.h"
#include "layerdb/base/number.h"

namespace strata::fs {

namespace {

std::string JoinLower(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string p(dir);
  p += '/';
  p += name;
  return p;
}

bool HasName(const std::vector<std::string>& names, const std::string& n) {
  for (const auto& x : names)
    if (x == n) return true;
  return false;
}

// The st_ino of an upper object with no lower origin.
uint64_t UpperOnlyIno(const struct stat& st) {
  return kUpperInoBase |
         (static_cast<uint64_t>(st.st_ino) & (kUpperInoBase - 1));
}

// A live Inode that an upper entry of type `st` may resolve to.
bool UsableUpper(const Inode& live, const struct stat& st) {
  return (live.type & S_IFMT) == (st.st_mode & S_IFMT) && live.has_upper &&
         !live.unlinked;
}

}  // namespace

Result<std::optional<LowerEntry>> UnionFs::LowerChild(const Inode& dir,
                                                      std::string_view name) {
  if (!dir.lower || dir.opaque) return std::optional<LowerEntry>();
  return lower_->Lookup(*dir.lower, name);
}

Result<std::optional<LowerEntry>> UnionFs::LowerByPath(std::string_view path) {
  LowerEntry cur = lower_->Root();
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? "" : path.substr(slash + 1);
    if (part.empty()) continue;
    STRATA_ASSIGN_OR_RETURN(auto next, lower_->Lookup(cur.ref, part));
    if (!next) return std::optional<LowerEntry>();
    cur = *next;
  }
  return std::optional<LowerEntry>(cur);
}

Result<bool> UnionFs::IsUpperWhiteout(const Inode& dir, std::string_view name,
                                      const struct stat& st) {
  if (IsWhiteoutDev(st)) return true;
  if (name.starts_with(kWhPrefix)) return true;  // markers are never shown
  // Kernel 6.7+ xattr whiteouts: a zero-size file with overlay.whiteout in
  // a directory whose opaque value is "x".
  if (dir.xattr_whiteouts && S_ISREG(st.st_mode) && st.st_size == 0) {
    std::string path = ChildPath(dir, name);
    for (const char* ns :
         {"trusted.overlay.whiteout", "user.overlay.whiteout"}) {
      STRATA_ASSIGN_OR_RETURN(auto v, host::GetXattr(path, ns));
      if (v) return true;
    }
  }
  return false;
}

Result<UpperInfo> UnionFs::ResolveUpper(const Inode& dir, std::string_view name,
                                        const struct stat& st,
                                        std::shared_ptr<Inode>* live) {
  UpperInfo info;
  std::string path = ChildPath(dir, name);
  STRATA_ASSIGN_OR_RETURN(auto xattr_names, host::ListXattrNames(path));
  auto has = [&](const std::string& n) { return HasName(xattr_names, n); };
  auto get = [&](const std::string& n) -> Result<std::optional<std::string>> {
    if (!has(n)) return std::optional<std::string>();
    return host::GetXattr(path, n);
  };
  const UpperFormat both[2] = {UpperFormat(XattrNs::kTrusted),
                               UpperFormat(XattrNs::kUser)};
  if (S_ISDIR(st.st_mode)) {
    for (const UpperFormat& f : both) {
      STRATA_ASSIGN_OR_RETURN(auto v, get(f.Opaque()));
      if (v && *v == "y") info.opaque = true;
      if (v && *v == "x") info.xattr_whiteouts = true;
    }
    if (!info.opaque) {
      STRATA_ASSIGN_OR_RETURN(
          auto marker,
          host::StatAt(dir.upper.get(),
                       std::string(name) + "/" + std::string(kOpaqueMarker)));
      info.opaque = marker.has_value();
    }
    if (!info.opaque) {
      std::optional<std::string> redirect;
      for (const UpperFormat& f : both) {
        if (redirect) break;
        STRATA_ASSIGN_OR_RETURN(redirect, get(f.Redirect()));
      }
      if (redirect && redirect->starts_with("/")) {
        info.lower_path = redirect->substr(1);
        STRATA_ASSIGN_OR_RETURN(info.lower, LowerByPath(info.lower_path));
      } else if (redirect) {
        info.lower_path = JoinLower(dir.lower_path, *redirect);
        STRATA_ASSIGN_OR_RETURN(info.lower, LowerChild(dir, *redirect));
      } else {
        info.lower_path = JoinLower(dir.lower_path, name);
        STRATA_ASSIGN_OR_RETURN(info.lower, LowerChild(dir, name));
      }
      if (info.lower && !S_ISDIR(info.lower->st.st_mode)) info.lower.reset();
    }
    info.ino = info.lower ? info.lower->st.st_ino : UpperOnlyIno(st);
    return info;
  }
  info.ino = UpperOnlyIno(st);
  for (const UpperFormat& f : both) {
    STRATA_ASSIGN_OR_RETURN(auto v, get(f.Origin()));
    if (v) {
      if (auto ino = ParseNumber<uint64_t>(*v)) info.ino = *ino;
      break;
    }
  }
  if (live != nullptr) {
    if (auto node = table_->Find(info.ino); node && UsableUpper(*node, st)) {
      *live = std::move(node);
      return info;
    }
  }
  if (S_ISREG(st.st_mode) &&
      (has(both[0].MetaCopy()) || has(both[1].MetaCopy()))) {
    for (const UpperFormat& f : both) {
      STRATA_ASSIGN_OR_RETURN(auto v, get(f.LowerData()));
      if (!v) continue;
      STRATA_ASSIGN_OR_RETURN(auto data, LowerByPath(*v));
      if (data && S_ISREG(data->st.st_mode)) {
        info.lower = data;
        info.lower_path = *v;
        info.metacopy = true;
      }
      break;
    }
    if (!info.metacopy)
      return Error(EIO, "lookup",
                   "upper " + std::string(name) +
                       ": metacopy file whose lower data is missing");
  }
  if (st.st_nlink > 1 && index_fd_.valid()) {
    // A hardlink group (from the lower tree, or made by link()) has an
    // index entry, which is its stable name; a regular file's holds the
    // union nlink.
    STRATA_ASSIGN_OR_RETURN(auto ist,
                            host::StatAt(index_fd_.get(), IndexKey(info.ino)));
    info.indexed = ist && ist->st_ino == st.st_ino;
    for (const UpperFormat& f : both) {
      if (!info.indexed || !S_ISREG(st.st_mode)) break;
      STRATA_ASSIGN_OR_RETURN(auto v, get(f.Nlink()));
      if (v) {
        info.group_nlink =
            static_cast<uint32_t>(ParseNumber<uint64_t>(*v).value_or(1));
        break;
      }
    }
  }
  if (has(kOverrideStat)) {
    STRATA_ASSIGN_OR_RETURN(auto v, host::GetXattr(path, kOverrideStat));
    if (v) info.override = ParseOverrideStat(*v, st.st_mode & S_IFMT);
  }
  return info;
}

Result<std::shared_ptr<Inode>> UnionFs::FromUpper(
    const std::shared_ptr<Inode>& dir, std::string_view name,
    const struct stat& st) {
  std::shared_ptr<Inode> live;
  STRATA_ASSIGN_OR_RETURN(UpperInfo info, ResolveUpper(*dir, name, st, &live));
  if (live) return live;
  if (auto found = table_->Find(info.ino); found && UsableUpper(*found, st))
    return found;
  auto node = std::make_shared<Inode>(info.ino, st.st_mode & S_IFMT);
  node->has_upper = true;
  if (S_ISDIR(st.st_mode)) {
    STRATA_ASSIGN_OR_RETURN(node->upper,
                            host::OpenAt(dir->upper.get(), name,
                                         O_PATH | O_DIRECTORY | O_NOFOLLOW));
  }
  node->parent = dir;
  node->name = std::string(name);
  node->opaque = info.opaque;
  node->xattr_whiteouts = info.xattr_whiteouts;
  if (info.lower) {
    node->lower = info.lower->ref;
    node->lower_path = info.lower_path;
    node->lower_nlink = static_cast<uint32_t>(info.lower->st.st_nlink);
    node->lower_blocks = info.lower->st.st_blocks;
  }
  node->metacopy = info.metacopy;
  node->override = info.override;
  node->indexed = info.indexed;
  node->group_nlink = info.group_nlink;
  return table_->FindOrInsert(std::move(node));
}

Result<std::shared_ptr<Inode>> UnionFs::FromNewUpper(
    const std::shared_ptr<Inode>& dir, std::string_view name,
    const struct stat& st, UniqueFd dirfd, bool opaque) {
  uint64_t ino = UpperOnlyIno(st);
  if (auto found = table_->Find(ino); found && UsableUpper(*found, st))
    return found;
  auto node = std::make_shared<Inode>(ino, st.st_mode & S_IFMT);
  node->has_upper = true;
  node->upper = std::move(dirfd);
  node->parent = dir;
  node->name = std::string(name);
  node->opaque = opaque;
  return table_->FindOrInsert(std::move(node));
}

Result<std::shared_ptr<Inode>> UnionFs::FromLower(
    const std::shared_ptr<Inode>& dir, std::string_view name,
    const LowerEntry& le) {
  if (auto live = table_->Find(le.st.st_ino)) {
    if (!live->unlinked) return live;
  }
  auto node = std::make_shared<Inode>(le.st.st_ino, le.st.st_mode & S_IFMT);
  node->lower = le.ref;
  node->lower_path = JoinLower(dir->lower_path, name);
  node->lower_nlink = static_cast<uint32_t>(le.st.st_nlink);
  node->lower_blocks = le.st.st_blocks;
  node->parent = dir;
  node->name = std::string(name);
  if (S_ISREG(le.st.st_mode) && le.st.st_nlink > 1 && index_fd_.valid()) {
    // A lower hardlink group some member of which was copied up: the index
    // entry is the group's one upper inode.
    STRATA_ASSIGN_OR_RETURN(
        auto ist, host::StatAt(index_fd_.get(), IndexKey(le.st.st_ino)));
    if (ist) {
      node->has_upper = true;
      node->indexed = true;
      STRATA_ASSIGN_OR_RETURN(
          auto v, host::GetXattr(UpperPath(*node), format_.Nlink()));
      node->group_nlink =
          v ? static_cast<uint32_t>(ParseNumber<uint64_t>(*v).value_or(1)) : 1;
    }
  }
  return table_->FindOrInsert(std::move(node));
}

Result<std::shared_ptr<Inode>> UnionFs::LookupChild(
    const std::shared_ptr<Inode>& dir, std::string_view name,
    std::optional<struct stat>* lower_st, ChildProbe* probe) {
  if (!dir->is_dir()) return Error(ENOTDIR, "lookup", std::string(name));
  if (name.size() > 255)
    return Error(ENAMETOOLONG, "lookup", std::string(name));
  if (dir->upper.valid()) {
    STRATA_ASSIGN_OR_RETURN(auto st, host::StatAt(dir->upper.get(), name));
    if (st) {
      if (probe != nullptr) probe->upper_entry = true;
      STRATA_ASSIGN_OR_RETURN(bool wh, IsUpperWhiteout(*dir, name, *st));
      if (wh) return std::shared_ptr<Inode>();
      return FromUpper(dir, name, *st);
    }
  }
  STRATA_ASSIGN_OR_RETURN(auto le, LowerChild(*dir, name));
  if (probe != nullptr) probe->in_lower = le.has_value();
  if (!le) return std::shared_ptr<Inode>();
  if (dir->upper.valid()) {
    // The .wh.NAME form (written where mknod is refused, or by other tools).
    STRATA_ASSIGN_OR_RETURN(
        auto wh, host::StatAt(dir->upper.get(),
                              std::string(kWhPrefix) + std::string(name)));
    if (wh) return std::shared_ptr<Inode>();
  }
  STRATA_ASSIGN_OR_RETURN(auto node, FromLower(dir, name, *le));
  if (lower_st != nullptr && !node->has_upper) *lower_st = le->st;
  return node;
}

Result<struct stat> UnionFs::StatOf(Inode& node) {
  struct stat st {};
  if (node.has_upper) {
    STRATA_ASSIGN_OR_RETURN(st, UpperStat(node));
    if (node.metacopy) st.st_blocks = node.lower_blocks;
    if (node.override) {
      st.st_uid = node.override->uid;
      st.st_gid = node.override->gid;
      st.st_mode = node.override->mode;
      if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        st.st_rdev = node.override->rdev;
        st.st_size = 0;
      }
    }
    if (node.is_dir() && node.lower && !node.opaque) {
      int64_t n = node.dir_nlink.load();
      if (n < 0) {
        STRATA_ASSIGN_OR_RETURN(auto items, MergedListing(node));
        n = 2;
        for (const auto& it : items)
          n += it.type == S_IFDIR ? 1 : 0;
        node.dir_nlink.store(n);
      }
      st.st_nlink = static_cast<nlink_t>(n);
    } else if (node.indexed && node.group_nlink) {
      st.st_nlink = *node.group_nlink;
    } else if (node.indexed) {
      st.st_nlink =
          st.st_nlink > 1 ? st.st_nlink - 1 : 1;  // not the index link
    }
  } else if (node.lower) {
    STRATA_ASSIGN_OR_RETURN(st, lower_->GetAttr(*node.lower));
  } else {
    return Error(ENOENT, "getattr", node.name);
  }
  st.st_ino = node.st_ino;
  if (node.unlinked && !node.is_dir()) st.st_nlink = 0;
  return st;
}

Result<struct stat> UnionFs::OwnerOf(const Inode& dir) const {
  STRATA_ASSIGN_OR_RETURN(struct stat st, UpperStat(dir));
  if (dir.override) {
    st.st_uid = dir.override->uid;
    st.st_gid = dir.override->gid;
    st.st_mode = dir.override->mode;
  }
  return st;
}

Result<EntryOut> UnionFs::Reply(const std::shared_ptr<Inode>& node) {
  EntryOut out;
  STRATA_ASSIGN_OR_RETURN(out.st, StatOf(*node));
  out.nodeid = table_->Ref(node);
  return out;
}

Result<EntryOut> UnionFs::Lookup(uint64_t parent, std::string_view name) {
  std::shared_lock lock(ns_mutex_);
  auto dir = table_->GetShared(parent);
  if (!dir) return Error(ESTALE, "lookup", std::string(name));
  std::optional<struct stat> lower_st;
  STRATA_ASSIGN_OR_RETURN(auto node, LookupChild(dir, name, &lower_st));
  if (!node) return EntryOut{};  // negative entry, cached by the kernel
  if (!lower_st || node->unlinked || node->is_dir()) return Reply(node);
  // A lower non-directory: its record was just read (StatOf would read it
  // again). Directories compute nlink from their merged listing.
  EntryOut out;
  out.st = *lower_st;
  out.st.st_ino = node->st_ino;
  out.nodeid = table_->Ref(node);
  return out;
}

Result<struct stat> UnionFs::GetAttr(uint64_t nodeid) {
  std::shared_lock lock(ns_mutex_);
  return StatOf(table_->Get(nodeid));
}

Result<std::string> UnionFs::ReadLink(uint64_t nodeid) {
  std::shared_lock lock(ns_mutex_);
  Inode& node = table_->Get(nodeid);
  if (node.has_upper) {
    std::string buf(4096, '\0');
    std::string path = UpperPath(node);
    ssize_t n = host::IsFdLink(path)
                    ? ::readlinkat(node.upper.get(), "", buf.data(), buf.size())
                    : ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) return Error::FromErrno("readlink", node.name);
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
  if (!node.lower) return Error(ENOENT, "readlink", node.name);
  return lower_->ReadLink(*node.lower);
}

}  // namespace strata::fs
