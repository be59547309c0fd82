#pragma once

// DirLowerSource: plain host directories (the `lowerdir=A:B:C` of kernel
// overlayfs and fuse-overlayfs) served as one merged, read-only lower tree.
// The FIRST directory is the TOPMOST layer, as in overlayfs.
//
// Merge rules are kernel overlayfs's (Documentation/filesystems/overlayfs.rst):
// a name in a higher layer hides the same name below, except that two
// directories merge unless the higher one is opaque. Every whiteout and
// opaque form is read in every layer:
//   whiteout  a 0/0 character device; an OCI `.wh.NAME` file; a zero-size
//             regular file with `trusted.`/`user.overlay.whiteout` in a
//             directory whose `overlay.opaque` is "x" (kernel 6.7+)
//   opaque    `trusted.`/`user.overlay.opaque` = "y"; an OCI `.wh..wh..opq`
//             ("x" only marks a directory holding xattr whiteouts)
// A `.wh.NAME` hides NAME in the layers below only, never a NAME beside it
// (OCI image-spec layer.md). Layer roots always merge, as the kernel's root
// does (ovl_get_root stacks every lower root). Names starting with `.wh.`
// are never shown, nor are `trusted.overlay.*`/`user.overlay.*` xattrs.
// Redirects and metacopy in lowers (overlay.redirect/metacopy) are not
// followed.
//
// Identity: st_ino = ((layer index + 1) << 48) | the object's st_ino in the
// layer that supplies it (the topmost one for a merged directory), layer 0
// being the topmost. So hardlinks within a layer share st_ino, and the
// numbers are stable across remounts of the same directories.
//
// Safety: no symlink inside a layer is ever followed. Every path is resolved
// from the layer root fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
// (a component-by-component O_NOFOLLOW walk where openat2 is unavailable),
// and xattrs are read through /proc/self/fd, which must be mounted.
//
// Caching: the layers must not change while mounted (overlayfs says the
// same: "undefined"). Each directory's merged listing is built once, on
// first use, and kept with its nlink and the refs of its entries; refs are
// never freed, so memory grows with the number of objects looked up or
// listed.
//
// Thread-safety: every method may be called from many threads at once. One
// reader-writer lock guards the node table and is never held across a
// syscall; two threads may both build the same listing, and the first one
// installed wins.

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/lower_source.h"
#include "fs/recent_dirs.h"
#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"

namespace strata::fs {

class DirLowerSource final : public LowerSource {
 public:
  // Opens every layer root (the first is the topmost) and lists the merged
  // root. Errors: EINVAL (no layers, or more than (1 << 14) - 1), and the
  // errno of open/fstat/listing with the directory named in the detail
  // (ENOENT missing, ENOTDIR not a directory, EACCES).
  static Result<std::unique_ptr<DirLowerSource>> Open(
      const std::vector<std::string>& dirs);

  ~DirLowerSource() override;
  DirLowerSource(const DirLowerSource&) = delete;
  DirLowerSource& operator=(const DirLowerSource&) = delete;
  DirLowerSource(DirLowerSource&&) = delete;
  DirLowerSource& operator=(DirLowerSource&&) = delete;

  LowerEntry Root() const override;
  // Also: EINVAL for "", ".", ".." or a name with '/'; ENAMETOOLONG over 255
  // bytes; ENOENT for an unknown `dir`.
  Result<std::optional<LowerEntry>> Lookup(LowerRef dir,
                                           std::string_view name) override;
  Result<struct stat> GetAttr(LowerRef ref) override;
  Status ReadDir(LowerRef dir, uint64_t offset,
                 FunctionRef<bool(const LowerDirEntry&)> fn) override;
  Result<std::string> ReadLink(LowerRef ref) override;
  Result<std::vector<std::pair<std::string, std::string>>> Xattrs(
      LowerRef ref) override;
  Result<layerdb::FileContent> OpenContent(LowerRef ref) override;
  Result<struct statvfs> StatFs() override;

 private:
  struct Layer {
    std::string path;  // as given, for error details
    UniqueFd root;     // O_PATH | O_DIRECTORY
    dev_t dev = 0;     // st_dev of the root
    // d_ino is st_ino for entries that are not mount points (not so on an
    // overlayfs without xino): the listing may skip their fstatat.
    bool dino_is_ino = true;
  };
  // One layer's directory that is part of a merged directory.
  struct DirLayer {
    uint32_t layer = 0;
    std::string rel;          // relative to the layer root; "." is the root
    bool xwhiteouts = false;  // overlay.opaque = "x": holds xattr whiteouts
  };
  struct Node;
  struct Details;
  struct Listing;
  struct MergeState;

  DirLowerSource() = default;

  // The node of `ref`, stable for the life of the source. Errors: ENOENT.
  Result<Node*> FindNode(LowerRef ref) const;
  // Lazily computed parts of a node (see Node in the .cc).
  Result<std::shared_ptr<const Details>> GetDetails(Node& node);
  Result<std::shared_ptr<const Listing>> GetListing(Node& node);
  Result<struct stat> StatOf(Node& node);

  Result<std::shared_ptr<const Details>> ResolveDetails(const Node& node);
  Status StatBeneath(const Node& node, struct stat& st);
  Result<bool> IsOpaque(const DirLayer& dir, bool* xwhiteouts) const;
  Result<std::shared_ptr<const Listing>> InstallListing(Node& node,
                                                        const Details& details,
                                                        MergeState state);
  Status MergeLayer(const DirLayer& dir, uint32_t pos, MergeState& state) const;
  Result<bool> IsWhiteout(const DirLayer& dir, int dirfd, const char* name,
                          const struct stat& st) const;

  // openat2 beneath the root of `layer`, never following a symlink.
  Result<UniqueFd> OpenBeneath(uint32_t layer, const std::string& rel,
                               int flags) const;
  // "layer dir/rel", for error details.
  std::string Describe(uint32_t layer, const std::string& rel) const;
  // The persistent st_ino of an object found in `layer` (see above).
  uint64_t Ino(uint32_t layer, uint64_t ino, dev_t dev) const;
  uint64_t Ino(uint32_t layer, const struct stat& st) const;

  std::vector<Layer> layers_;
  LowerEntry root_;

  // Guards nodes_ (never shrinks; a ref is an index into it) and the lazily
  // set `details` and `listing` of every node. The only lock; never held
  // across a syscall.
  mutable std::shared_mutex mu_;
  RecentDirs recent_dirs_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

}  // namespace strata::fs
