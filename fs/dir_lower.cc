#include "fs/dir_lower.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "layerdb/base/sys.h"

namespace strata::fs {

// The layer an object comes from and where; `details` and `listing` are
// filled on first use (they cost syscalls) and then never change.
struct DirLowerSource::Node {
  uint32_t layer = 0;  // index into layers_ of the layer that supplies it
  std::string rel;     // path from that layer's root; "." for the root
  uint32_t type = 0;   // S_IFMT bits
  uint64_t ino = 0;    // st_ino as presented
  // Directories: the same-named directories that may merge into this one,
  // top first, starting with (layer, rel). Opaque directories cut this list
  // when `details` is resolved.
  std::vector<DirLayer> candidates;
  std::shared_ptr<const Details> details;  // guarded by mu_
  std::shared_ptr<const Listing> listing;  // guarded by mu_
};

struct DirLowerSource::Details {
  struct stat st {};           // st_ino, st_dev, times fixed; nlink raw
  std::vector<DirLayer> dirs;  // directories: the layers that merge, top first
};

struct DirLowerSource::Listing {
  struct Entry {
    std::string name;
    LowerRef ref = 0;
    uint64_t ino = 0;
    uint32_t type = 0;
  };
  std::vector<Entry> entries;  // sorted by name, byte order
  nlink_t subdirs = 0;
};

// A merged listing being built, one layer at a time from the top.
struct DirLowerSource::MergeState {
  struct Pending {
    std::string name;
    uint32_t pos = 0;  // index into Details::dirs of the supplying layer
    uint32_t type = 0;
    uint64_t ino = 0;
    std::vector<uint32_t> dir_pos;  // directories: layers that may merge
    bool closed = false;            // no lower layer can merge any more
  };
  std::vector<Pending> entries;
  std::unordered_map<std::string, size_t> index;  // name -> entries
  std::unordered_set<std::string> hidden;         // whited out above

  // Adds `name`, found at Details::dirs[pos], below what is merged so far.
  // Kernel rule (ovl_lookup_single): a non-directory under a directory
  // ends the merge of that name.
  void Add(std::string name, uint32_t pos, uint32_t type, uint64_t ino) {
    bool is_dir = type == S_IFDIR;
    auto [it, fresh] = index.try_emplace(name, entries.size());
    if (fresh) {
      entries.push_back({std::move(name), pos, type, ino, {}, !is_dir});
      if (is_dir) entries.back().dir_pos.push_back(pos);
      return;
    }
    Pending& above = entries[it->second];
    if (!above.closed && is_dir)
      above.dir_pos.push_back(pos);
    else
      above.closed = true;
  }

  // Hides `names` in every layer below; a whiteout also ends the merge of
  // a directory above it.
  void HideBelow(std::vector<std::string>& names) {
    for (std::string& name : names) {
      if (auto it = index.find(name); it != index.end())
        entries[it->second].closed = true;
      hidden.insert(std::move(name));
    }
  }
};

namespace {

constexpr int kInoBits = 48;
constexpr uint64_t kInoMask = (uint64_t{1} << kInoBits) - 1;
// (layer index + 1) << 48 must stay below kUpperInoBase = 1 << 62.
constexpr size_t kMaxLayers = (size_t{1} << (62 - kInoBits)) - 1;
constexpr size_t kMaxName = 255;

constexpr std::string_view kWhiteoutPrefix = ".wh.";
// .wh..wh..opq, and aufs's .wh..wh.plnk/.wh..wh.orph: metadata, not whiteouts.
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr const char* kOpaqueMarker = ".wh..wh..opq";
constexpr std::array<const char*, 2> kOpaqueXattrs = {"trusted.overlay.opaque",
                                                      "user.overlay.opaque"};
constexpr std::array<const char*, 2> kWhiteoutXattrs = {
    "trusted.overlay.whiteout", "user.overlay.whiteout"};

bool IsOverlayPrivate(std::string_view xattr) {
  return xattr.starts_with("trusted.overlay.") ||
         xattr.starts_with("user.overlay.");
}

// splitmix64's finalizer: spreads (dev, ino) over all 64 bits before masking.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string Join(const std::string& rel, std::string_view name) {
  if (rel == ".") return std::string(name);
  std::string out;
  out.reserve(rel.size() + 1 + name.size());
  out.append(rel).append("/").append(name);
  return out;
}

// (parent, base) of a relative path; the root is (".", ".").
std::pair<std::string, std::string> SplitRel(const std::string& rel) {
  size_t slash = rel.rfind('/');
  if (slash == std::string::npos) return {".", rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

// `name` in the directory open as `dirfd`, as a path the *xattr calls take.
// Through the fd, no component is resolved again from the layer root; the
// l*xattr calls then act on `name` itself, even a symlink (on
// "/proc/self/fd/N" alone they would act on the magic link).
std::string ProcPath(int dirfd, std::string_view name) {
  std::string out = "/proc/self/fd/" + std::to_string(dirfd);
  out.append("/").append(name);
  return out;
}

// Kernels before 5.6 and seccomp filters older than openat2 refuse it: then
// walk one component at a time with O_NOFOLLOW. That is as safe here,
// because our relative paths hold no "..", "." or empty components: they
// are joined from names read out of the layers.
Result<UniqueFd> WalkNoFollow(int root, const std::string& rel, int flags) {
  UniqueFd dir;
  int cur = root;
  size_t start = 0;
  for (;;) {
    size_t slash = rel.find('/', start);
    bool last = slash == std::string::npos;
    std::string comp = rel.substr(start, last ? rel.npos : slash - start);
    int comp_flags = last ? flags : O_PATH | O_DIRECTORY;
    int fd = ::openat(cur, comp.c_str(), comp_flags | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Error::FromErrno("openat");
    if (last) return UniqueFd(fd);
    dir.Reset(fd);
    cur = fd;
    start = slash + 1;
  }
}

// The value of xattr `name` of `path` (not followed); nullopt when unset or
// where the filesystem has no xattrs.
Result<std::optional<std::string>> GetXattr(const std::string& path,
                                            const char* name) {
  auto v = sys::ReadSized(
      [&](char* buf, size_t size) {
        return ::lgetxattr(path.c_str(), name, buf, size);
      },
      "lgetxattr", path);
  if (v) return std::optional<std::string>(std::move(*v));
  int code = v.error().code();
  if (code == ENODATA || code == ENOTSUP) return std::optional<std::string>();
  return v.error().WithContext(name);
}

// The names in the open directory `fd`, without "." and "..", unsorted.
// getdents64 rather than readdir(3), which clang-tidy's mt-unsafe list has.
struct DirName {
  std::string name;
  unsigned char type;  // d_type
  uint64_t ino;        // d_ino
};

Result<std::vector<DirName>> ReadNames(int fd) {
  std::vector<DirName> names;
  alignas(struct dirent64) char buf[32768];
  for (;;) {
    ssize_t n = ::getdents64(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::FromErrno("getdents64");
    if (n == 0) return names;
    for (size_t pos = 0; pos < static_cast<size_t>(n);) {
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast)
      const auto* d = reinterpret_cast<const struct dirent64*>(buf + pos);
      std::string_view name = d->d_name;
      if (name != "." && name != "..")
        names.push_back({std::string(name), d->d_type, d->d_ino});
      pos += d->d_reclen;
    }
  }
}

// Time fields the contract wants non-zero: mtime stands in for the others.
void FillTimes(struct stat& st) {
  auto zero = [](const struct timespec& t) {
    return t.tv_sec == 0 && t.tv_nsec == 0;
  };
  if (zero(st.st_atim)) st.st_atim = st.st_mtim;
  if (zero(st.st_ctim)) st.st_ctim = st.st_mtim;
}

}  // namespace

// ---------------------------------------------------------------------------
// Opening

DirLowerSource::~DirLowerSource() = default;

Result<std::unique_ptr<DirLowerSource>> DirLowerSource::Open(
    const std::vector<std::string>& dirs) {
  if (dirs.empty()) return Error(EINVAL, "open lowerdir", "no directories");
  if (dirs.size() > kMaxLayers)
    return Error(EINVAL, "open lowerdir",
                 std::to_string(dirs.size()) + " layers, at most " +
                     std::to_string(kMaxLayers));
  std::unique_ptr<DirLowerSource> src(new DirLowerSource());
  auto root = std::make_unique<Node>();
  root->rel = ".";
  root->type = S_IFDIR;
  for (const std::string& dir : dirs) {
    int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Error::FromErrno("open lowerdir", dir);
    Layer layer{dir, UniqueFd(fd), 0};
    struct stat st {};
    if (::fstat(fd, &st) != 0) return Error::FromErrno("fstat", dir);
    layer.dev = st.st_dev;
    struct statfs sfs {};
    constexpr decltype(sfs.f_type) kOverlayMagic = 0x794c7630;
    layer.dino_is_ino = ::fstatfs(fd, &sfs) == 0 && sfs.f_type != kOverlayMagic;
    root->candidates.push_back(
        {static_cast<uint32_t>(src->layers_.size()), ".", false});
    src->layers_.push_back(std::move(layer));
    if (src->layers_.size() == 1) root->ino = src->Ino(0, st);
  }
  src->nodes_.push_back(std::move(root));
  // The root's attributes now, so that Root() cannot fail.
  STRATA_ASSIGN_OR_RETURN(struct stat st, src->StatOf(*src->nodes_[0]));
  src->root_ = LowerEntry{0, st};
  return src;
}

// ---------------------------------------------------------------------------
// Host access: every path is resolved beneath a layer root, symlinks refused.

Result<UniqueFd> DirLowerSource::OpenBeneath(uint32_t layer,
                                             const std::string& rel,
                                             int flags) const {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC);
  // RESOLVE_NO_SYMLINKS still returns the symlink itself for a last
  // component opened O_PATH | O_NOFOLLOW (openat2(2)).
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
  int64_t fd = ::syscall(SYS_openat2, layers_[layer].root.get(), rel.c_str(),
                         &how, sizeof how);
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  if (errno != ENOSYS && errno != EPERM)
    return Error::FromErrno("openat2", Describe(layer, rel));
  auto walked = WalkNoFollow(layers_[layer].root.get(), rel, flags);
  if (!walked) return walked.error().WithContext(Describe(layer, rel));
  return walked;
}

std::string DirLowerSource::Describe(uint32_t layer,
                                     const std::string& rel) const {
  if (rel == ".") return layers_[layer].path;
  return layers_[layer].path + "/" + rel;
}

// The real st_ino fits in 48 bits on ext4, xfs, btrfs and tmpfs in practice.
// When it does not, or the object sits on another filesystem mounted inside
// the layer (whose numbers could repeat the layer's own), (st_dev, st_ino) is
// hashed into 48 bits instead: still stable across remounts, and a collision
// with another object of the layer is about N / 2^48 for N objects.
uint64_t DirLowerSource::Ino(uint32_t layer, const struct stat& st) const {
  return Ino(layer, st.st_ino, st.st_dev);
}

uint64_t DirLowerSource::Ino(uint32_t layer, uint64_t ino, dev_t dev) const {
  uint64_t real = ino;
  if (real > kInoMask || dev != layers_[layer].dev)
    real = Mix64(Mix64(dev) ^ ino) & kInoMask;
  return ((uint64_t{layer} + 1) << kInoBits) | real;
}

// ---------------------------------------------------------------------------
// The node table

Result<DirLowerSource::Node*> DirLowerSource::FindNode(LowerRef ref) const {
  std::shared_lock lock(mu_);
  if (ref >= nodes_.size())
    return Error(ENOENT, "lower ref", "no object " + std::to_string(ref));
  return nodes_[ref].get();
}

Result<std::shared_ptr<const DirLowerSource::Details>>
DirLowerSource::GetDetails(Node& node) {
  {
    std::shared_lock lock(mu_);
    if (node.details) return node.details;
  }
  STRATA_ASSIGN_OR_RETURN(auto details, ResolveDetails(node));
  std::unique_lock lock(mu_);
  if (!node.details) node.details = std::move(details);
  return node.details;
}

Result<std::shared_ptr<const DirLowerSource::Listing>>
DirLowerSource::GetListing(Node& node) {
  {
    std::shared_lock lock(mu_);
    if (node.listing) return node.listing;
  }
  STRATA_ASSIGN_OR_RETURN(auto details, GetDetails(node));
  MergeState state;
  for (size_t pos = 0; pos < details->dirs.size(); ++pos) {
    STRATA_RETURN_IF_ERROR(
        MergeLayer(details->dirs[pos], static_cast<uint32_t>(pos), state));
  }
  return InstallListing(node, *details, std::move(state));
}

// A directory's st_nlink is 2 + the subdirectories of its MERGED listing
// (what kernel overlayfs reports, and what find(1) relies on to skip stats).
Result<struct stat> DirLowerSource::StatOf(Node& node) {
  STRATA_ASSIGN_OR_RETURN(auto details, GetDetails(node));
  struct stat st = details->st;
  if (node.type != S_IFDIR) return st;
  STRATA_ASSIGN_OR_RETURN(auto listing, GetListing(node));
  st.st_nlink = 2 + listing->subdirs;
  return st;
}

Result<std::shared_ptr<const DirLowerSource::Details>>
DirLowerSource::ResolveDetails(const Node& node) {
  auto details = std::make_shared<Details>();
  STRATA_RETURN_IF_ERROR(StatBeneath(node, details->st));
  details->st.st_ino = node.ino;
  details->st.st_dev = 0;
  FillTimes(details->st);
  for (const DirLayer& candidate : node.candidates) {
    DirLayer dir = candidate;
    STRATA_ASSIGN_OR_RETURN(bool opaque, IsOpaque(dir, &dir.xwhiteouts));
    details->dirs.push_back(std::move(dir));
    if (opaque) break;
  }
  return std::shared_ptr<const Details>(std::move(details));
}

// A non-directory is statted from its directory's fd (RecentDirs): its name
// is one component, not followed if a symlink, so it stays beneath the
// layer root as the directory's own openat2 did.
Status DirLowerSource::StatBeneath(const Node& node, struct stat& st) {
  if (node.type != S_IFDIR && node.rel != ".") {
    auto [dir, name] = SplitRel(node.rel);
    STRATA_ASSIGN_OR_RETURN(auto dirfd, recent_dirs_.Get(node.layer, dir, [&] {
      return OpenBeneath(node.layer, dir, O_PATH | O_DIRECTORY);
    }));
    if (::fstatat(dirfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return Error::FromErrno("fstatat", Describe(node.layer, node.rel));
    return Ok();
  }
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd,
                          OpenBeneath(node.layer, node.rel, O_PATH));
  if (::fstat(fd.get(), &st) != 0)
    return Error::FromErrno("fstat", Describe(node.layer, node.rel));
  return Ok();
}

// Whether `dir` hides the same-named directories below it. A layer root
// never does: the kernel stacks every lower root (ovl_get_root) whatever
// their xattrs, and reads an "x" there only as the xattr-whiteout marker.
Result<bool> DirLowerSource::IsOpaque(const DirLayer& dir,
                                      bool* xwhiteouts) const {
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd, OpenBeneath(dir.layer, dir.rel, O_PATH | O_DIRECTORY));
  std::string self = ProcPath(fd.get(), ".");
  bool opaque = false;
  for (const char* xattr : kOpaqueXattrs) {
    auto value = GetXattr(self, xattr);
    if (!value) return value.error().WithContext(Describe(dir.layer, dir.rel));
    if (*value == "y") opaque = true;
    if (*value == "x") *xwhiteouts = true;
  }
  struct stat st {};
  if (::fstatat(fd.get(), kOpaqueMarker, &st, AT_SYMLINK_NOFOLLOW) == 0)
    opaque = true;
  else if (errno != ENOENT)
    return Error::FromErrno("fstatat",
                            Describe(dir.layer, dir.rel) + "/" + kOpaqueMarker);
  return opaque && dir.rel != ".";
}

// ---------------------------------------------------------------------------
// Merging a directory listing

// Adds the names of one layer's directory, below those already merged.
// OCI rule: `.wh.NAME` hides NAME only in lower layers, so this layer's
// whiteouts take effect after the whole layer is read.
Status DirLowerSource::MergeLayer(const DirLayer& dir, uint32_t pos,
                                  MergeState& state) const {
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd, OpenBeneath(dir.layer, dir.rel, O_RDONLY | O_DIRECTORY));
  auto names = ReadNames(fd.get());
  if (!names) return names.error().WithContext(Describe(dir.layer, dir.rel));
  std::vector<std::string> whiteouts;
  const Layer& layer = layers_[dir.layer];
  for (DirName& entry : *names) {
    std::string& name = entry.name;
    if (name.starts_with(kWhiteoutMetaPrefix)) continue;
    if (name.starts_with(kWhiteoutPrefix)) {
      whiteouts.push_back(name.substr(kWhiteoutPrefix.size()));
      continue;
    }
    if (state.hidden.contains(name)) continue;
    // The entry's type and inode number come with the listing: stat only
    // what may be a whiteout (character devices; empty files in an "x"
    // directory), directories (mount points change st_ino), and what the
    // listing leaves unknown. Kernel overlayfs reads listings the same way.
    bool need_stat = !layer.dino_is_ino || entry.type == DT_UNKNOWN ||
                     entry.type == DT_DIR || entry.type == DT_CHR ||
                     (entry.type == DT_REG && dir.xwhiteouts);
    if (!need_stat) {
      state.Add(std::move(name), pos, DTTOIF(entry.type),
                Ino(dir.layer, entry.ino, layer.dev));
      continue;
    }
    struct stat st {};
    if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // gone since getdents
      return Error::FromErrno("fstatat",
                              Describe(dir.layer, dir.rel) + "/" + name);
    }
    STRATA_ASSIGN_OR_RETURN(bool whiteout,
                            IsWhiteout(dir, fd.get(), name.c_str(), st));
    if (whiteout) {
      whiteouts.push_back(std::move(name));
      continue;
    }
    uint32_t type = st.st_mode & S_IFMT;
    state.Add(std::move(name), pos, type, Ino(dir.layer, st));
  }
  state.HideBelow(whiteouts);
  return Ok();
}

// A 0/0 character device anywhere; a zero-size regular file carrying
// overlay.whiteout inside a directory marked opaque "x" (kernel 6.7+: the
// form that can be escaped and nested, and that needs no mknod).
Result<bool> DirLowerSource::IsWhiteout(const DirLayer& dir, int dirfd,
                                        const char* name,
                                        const struct stat& st) const {
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) return true;
  if (!dir.xwhiteouts || !S_ISREG(st.st_mode) || st.st_size != 0) return false;
  std::string path = ProcPath(dirfd, name);
  for (const char* xattr : kWhiteoutXattrs) {
    auto value = GetXattr(path, xattr);
    if (!value)
      return value.error().WithContext(
          Describe(dir.layer, Join(dir.rel, name)));
    if (value->has_value()) return true;
  }
  return false;
}

// Sorts the merged names and gives each a node, all in one step so that a
// name keeps one ref whichever thread listed or looked it up first.
Result<std::shared_ptr<const DirLowerSource::Listing>>
DirLowerSource::InstallListing(Node& node, const Details& details,
                               MergeState state) {
  std::sort(state.entries.begin(), state.entries.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  if (state.entries.size() >= UINT32_MAX)  // offsets must stay below 2^32
    return Error(EOVERFLOW, "readdir", Describe(node.layer, node.rel));
  auto listing = std::make_shared<Listing>();
  std::vector<std::unique_ptr<Node>> children;
  listing->entries.reserve(state.entries.size());
  children.reserve(state.entries.size());
  for (MergeState::Pending& p : state.entries) {
    auto child = std::make_unique<Node>();
    const DirLayer& home = details.dirs[p.pos];
    child->layer = home.layer;
    child->rel = Join(home.rel, p.name);
    child->type = p.type;
    child->ino = p.ino;
    for (uint32_t pos : p.dir_pos) {
      const DirLayer& d = details.dirs[pos];
      child->candidates.push_back({d.layer, Join(d.rel, p.name), false});
    }
    if (p.type == S_IFDIR) ++listing->subdirs;
    listing->entries.push_back({std::move(p.name), 0, p.ino, p.type});
    children.push_back(std::move(child));
  }
  std::unique_lock lock(mu_);
  if (node.listing) return node.listing;  // another thread was first
  for (size_t i = 0; i < children.size(); ++i) {
    listing->entries[i].ref = nodes_.size();
    nodes_.push_back(std::move(children[i]));
  }
  node.listing = listing;
  return node.listing;
}

// ---------------------------------------------------------------------------
// LowerSource

LowerEntry DirLowerSource::Root() const {
  return root_;
}

Result<std::optional<LowerEntry>> DirLowerSource::Lookup(
    LowerRef dir, std::string_view name) {
  if (name.size() > kMaxName)
    return Error(ENAMETOOLONG, "lookup", std::string(name.substr(0, 64)));
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != name.npos)
    return Error(EINVAL, "lookup", std::string(name));
  STRATA_ASSIGN_OR_RETURN(Node * parent, FindNode(dir));
  if (parent->type != S_IFDIR) return std::optional<LowerEntry>();
  STRATA_ASSIGN_OR_RETURN(auto listing, GetListing(*parent));
  const auto& entries = listing->entries;
  auto it = std::lower_bound(
      entries.begin(), entries.end(), name,
      [](const Listing::Entry& e, std::string_view n) { return e.name < n; });
  if (it == entries.end() || it->name != name)
    return std::optional<LowerEntry>();
  STRATA_ASSIGN_OR_RETURN(Node * child, FindNode(it->ref));
  STRATA_ASSIGN_OR_RETURN(struct stat st, StatOf(*child));
  return std::optional<LowerEntry>(LowerEntry{it->ref, st});
}

Result<struct stat> DirLowerSource::GetAttr(LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Node * node, FindNode(ref));
  return StatOf(*node);
}

Status DirLowerSource::ReadDir(LowerRef dir, uint64_t offset,
                               FunctionRef<bool(const LowerDirEntry&)> fn) {
  STRATA_ASSIGN_OR_RETURN(Node * node, FindNode(dir));
  if (node->type != S_IFDIR)
    return Error(ENOTDIR, "readdir", Describe(node->layer, node->rel));
  STRATA_ASSIGN_OR_RETURN(auto listing, GetListing(*node));
  // Offsets are positions + 1 in a listing that never changes: stable for
  // the life of the source, as seekdir/telldir want.
  for (uint64_t i = offset; i < listing->entries.size(); ++i) {
    const Listing::Entry& e = listing->entries[i];
    if (!fn(LowerDirEntry{e.name, e.ref, e.ino, e.type, i + 1})) break;
  }
  return Ok();
}

Result<std::string> DirLowerSource::ReadLink(LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Node * node, FindNode(ref));
  if (node->type != S_IFLNK)
    return Error(EINVAL, "readlink", Describe(node->layer, node->rel));
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd,
                          OpenBeneath(node->layer, node->rel, O_PATH));
  // An empty path reads the symlink the O_PATH fd refers to (readlinkat(2)).
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(fd.get(), "", buf.data(), buf.size());
    if (n < 0)
      return Error::FromErrno("readlinkat", Describe(node->layer, node->rel));
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);  // possibly truncated: retry larger
  }
}

Result<std::vector<std::pair<std::string, std::string>>> DirLowerSource::Xattrs(
    LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Node * node, FindNode(ref));
  auto [parent, base] = SplitRel(node->rel);
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd, OpenBeneath(node->layer, parent, O_PATH | O_DIRECTORY));
  std::string path = ProcPath(fd.get(), base);
  std::vector<std::pair<std::string, std::string>> out;
  auto list = sys::ReadSized(
      [&](char* buf, size_t size) {
        return ::llistxattr(path.c_str(), buf, size);
      },
      "llistxattr", path);
  if (!list && list.error().code() == ENOTSUP) return out;
  if (!list) return list.error().WithContext(Describe(node->layer, node->rel));
  for (size_t pos = 0; pos < list->size();) {
    std::string name = list->c_str() + pos;
    pos += name.size() + 1;
    if (name.empty() || IsOverlayPrivate(name)) continue;
    auto value = GetXattr(path, name.c_str());
    if (!value)
      return value.error().WithContext(Describe(node->layer, node->rel));
    if (*value) out.emplace_back(std::move(name), std::move(**value));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<layerdb::FileContent> DirLowerSource::OpenContent(LowerRef ref) {
  STRATA_ASSIGN_OR_RETURN(Node * node, FindNode(ref));
  if (node->type == S_IFDIR)
    return Error(EISDIR, "open content", Describe(node->layer, node->rel));
  if (node->type != S_IFREG)
    return Error(EINVAL, "open content", Describe(node->layer, node->rel));
  STRATA_ASSIGN_OR_RETURN(
      UniqueFd fd, OpenBeneath(node->layer, node->rel, O_RDONLY | O_NOCTTY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return Error::FromErrno("fstat", Describe(node->layer, node->rel));
  layerdb::FileContent content;
  content.fd = std::move(fd);
  content.size = static_cast<uint64_t>(st.st_size);
  return content;
}

Result<struct statvfs> DirLowerSource::StatFs() {
  struct statvfs sv {};
  if (::fstatvfs(layers_[0].root.get(), &sv) != 0)
    return Error::FromErrno("fstatvfs", layers_[0].path);
  return sv;
}

}  // namespace strata::fs
