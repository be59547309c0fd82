#pragma once

// Node: the metadata record of one inode in a layer tree or a view tree, and
// its binary encoding in the index (docs/format.md, "node record").
//
// Node owns its bytes (used when building trees); NodeView parses an encoded
// record in place without allocating (used on the read path) and is valid only
// as long as the bytes it was parsed from (an LMDB read transaction).
//
// Thread-safety: plain values.

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layerdb/base/digest.h"
#include "layerdb/base/error.h"

namespace strata::layerdb {

// Record flags.
inline constexpr uint8_t kFlagOpaque = 1;     // layer dir hides lower children
inline constexpr uint8_t kFlagImplicit = 2;   // layer dir made only as a parent
inline constexpr uint8_t kFlagInline = 4;     // regular file bytes are inline
inline constexpr uint8_t kFlagBlob = 8;       // regular file bytes in a blob
inline constexpr uint8_t kFlagWhiteout = 16;  // layer: hides the lower name
inline constexpr uint8_t kFlagExtLink = 32;   // layer: hardlink to a lower path

// Files up to this size are stored inline in the index instead of as blobs.
// Measured by bench/small_file_bench.cc (warm caches, CPU time): an inline
// read (read txn + get + copy) takes ~0.3 us from 256 B to 4 KiB, a blob
// read (open + read + close) ~3 us, so inline always wins the read. The
// limit is set by the index instead:
//  - A record over ~2 KiB leaves the B-tree leaf for whole 4 KiB overflow
//    pages: 2 KiB inline costs 8.4 KB of index per file (its layer record
//    plus its view record), 4 KiB costs 16.6 KB, more than a blob file (one
//    4 KiB block plus an inode).
//  - Inline bytes are copied into every view holding the file; a blob is
//    shared. At 1 KiB a file costs 2.9 KB (layer + view), so up to three
//    trees holding it cost no more than one blob; at 1.5 KiB, 4.3 KB.
//  - Inline bytes dilute the node records every getattr reads: 10,000 files
//    with 1 KiB inline each ~0.4-0.5 us per getattr, ~0.26 us without,
//    ~0.5-0.6 us from 1.5 KiB up (BM_GetAttrInlineLoad).
inline constexpr uint64_t kInlineMaxBytes = 1024;

// Fixed-size attributes, as in struct stat. `mode` includes the S_IFMT bits.
struct Attr {
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 1;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t atime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t rdev = 0;

  uint32_t type() const { return mode & S_IFMT; }
  bool is_dir() const { return S_ISDIR(mode); }
  bool is_reg() const { return S_ISREG(mode); }
  bool is_symlink() const { return S_ISLNK(mode); }
};

struct Xattr {
  std::string name;
  std::string value;
  bool operator==(const Xattr&) const = default;
};

struct Node {
  Attr attr;
  uint8_t flags = 0;
  BlobKey blob;             // when flags & kFlagBlob
  std::string inline_data;  // when flags & kFlagInline
  std::string target;       // symlink target, or ext-link path (kFlagExtLink)
  std::vector<Xattr> xattrs;

  bool is_whiteout() const { return (flags & kFlagWhiteout) != 0; }
  bool is_opaque() const { return (flags & kFlagOpaque) != 0; }
};

std::string EncodeNode(const Node& node);
// Fails with EIO ("decode node") on a malformed record.
Result<Node> DecodeNode(std::string_view bytes);

// Zero-copy view of an encoded node.
class NodeView {
 public:
  static Result<NodeView> Parse(std::string_view bytes);

  const Attr& attr() const { return attr_; }
  uint8_t flags() const { return flags_; }
  const BlobKey& blob() const { return blob_; }
  std::string_view inline_data() const { return inline_data_; }
  std::string_view target() const { return target_; }
  uint32_t xattr_count() const { return xattr_count_; }
  // Calls fn(name, value) for each xattr; stops early when fn returns false.
  template <class Fn>
  void ForEachXattr(Fn&& fn) const;
  std::optional<std::string_view> GetXattr(std::string_view name) const;

 private:
  Attr attr_;
  uint8_t flags_ = 0;
  BlobKey blob_;
  std::string_view inline_data_;
  std::string_view target_;
  uint32_t xattr_count_ = 0;
  std::string_view xattrs_;  // encoded xattr list
};

namespace internal {
// Reads a varint-prefixed string from `in`, advancing it.
bool ReadString(std::string_view& in, std::string_view& out);
}  // namespace internal

template <class Fn>
void NodeView::ForEachXattr(Fn&& fn) const {
  std::string_view in = xattrs_;
  for (uint32_t i = 0; i < xattr_count_; ++i) {
    std::string_view name, value;
    if (!internal::ReadString(in, name) || !internal::ReadString(in, value))
      return;
    if (!fn(name, value)) return;
  }
}

}  // namespace strata::layerdb
