#pragma once

// Key encodings of the index (internal to layerdb; docs/format.md).
// Integers in keys are big-endian so that LMDB's byte order sorts them
// numerically and a directory's entries are contiguous.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace strata::layerdb::keys {

inline void PutBE64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i)
    out.push_back(static_cast<char>(v >> (i * 8)));
}
inline void PutBE32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i)
    out.push_back(static_cast<char>(v >> (i * 8)));
}
inline uint64_t GetBE64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = v << 8 | static_cast<uint8_t>(in[i]);
  return v;
}
inline uint32_t GetBE32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v = v << 8 | static_cast<uint8_t>(in[i]);
  return v;
}

// A key built on the stack, for the read path: a std::string key of 16 bytes
// or more does not fit the small-string buffer and would allocate. Capacity:
// tree ‖ parent ‖ name (255 bytes, kMaxNameLen) or tree ‖ parent ‖ seq.
class KeyBuf {
 public:
  static constexpr size_t kCapacity = 16 + 255;

  void PutBE64(uint64_t v) {
    for (int i = 7; i >= 0; --i)
      buf_[len_++] = static_cast<char>(v >> (i * 8));
  }
  void PutBE32(uint32_t v) {
    for (int i = 3; i >= 0; --i)
      buf_[len_++] = static_cast<char>(v >> (i * 8));
  }
  // REQUIRES: s.size() <= room().
  void Append(std::string_view s) {
    std::memcpy(buf_.data() + len_, s.data(), s.size());
    len_ += s.size();
  }
  size_t room() const { return kCapacity - len_; }
  std::string_view view() const { return std::string_view(buf_.data(), len_); }

 private:
  std::array<char, kCapacity> buf_{};
  size_t len_ = 0;
};

// layers, views: tree id
inline std::string Id(uint64_t id) {
  std::string k;
  PutBE64(k, id);
  return k;
}

// view_by_stack: the layer ids of a stack, bottom first
inline std::string Stack(const std::vector<uint64_t>& layers) {
  std::string k;
  for (uint64_t id : layers)
    PutBE64(k, id);
  return k;
}

// nodes: tree ‖ ino
inline std::string Node(uint64_t tree, uint64_t ino) {
  std::string k;
  k.reserve(16);
  PutBE64(k, tree);
  PutBE64(k, ino);
  return k;
}

// dirents: tree ‖ parent ‖ name  →  DirentValue
inline std::string Dirent(uint64_t tree, uint64_t parent,
                          std::string_view name) {
  std::string k;
  k.reserve(16 + name.size());
  PutBE64(k, tree);
  PutBE64(k, parent);
  k.append(name);
  return k;
}

// dirseq (views only): tree ‖ parent ‖ seq  →  DirentValue ‖ name
inline std::string DirSeq(uint64_t tree, uint64_t parent, uint32_t seq) {
  std::string k;
  k.reserve(20);
  PutBE64(k, tree);
  PutBE64(k, parent);
  PutBE32(k, seq);
  return k;
}

// Prefix shared by every key of one tree (nodes, dirents, dirseq).
inline std::string Tree(uint64_t tree) {
  std::string k;
  PutBE64(k, tree);
  return k;
}

// A dirent value: ino (u64 LE) then the S_IFMT type >> 12 (u8).
inline std::string DirentValue(uint64_t ino, uint32_t mode_type) {
  std::string v(9, '\0');
  for (int i = 0; i < 8; ++i)
    v[i] = static_cast<char>(ino >> (i * 8));
  v[8] = static_cast<char>(mode_type >> 12);
  return v;
}
inline uint64_t DirentIno(std::string_view v) {
  uint64_t ino = 0;
  for (int i = 7; i >= 0; --i)
    ino = ino << 8 | static_cast<uint8_t>(v[i]);
  return ino;
}
inline uint32_t DirentType(std::string_view v) {
  return static_cast<uint32_t>(static_cast<uint8_t>(v[8])) << 12;
}

}  // namespace strata::layerdb::keys
