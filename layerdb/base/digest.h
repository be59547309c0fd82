#pragma once

// BlobKey: the content address of a blob, the XXH3-128 of its bytes plus a
// collision variant. XXH3 is not collision-resistant against crafted input,
// so a second blob whose hash matches an existing one but whose bytes differ
// is stored under the next free variant (see BlobStore). Variant 0 is the
// normal case. Hashing itself lives in layerdb (hash.h); this is the value.
//
// Thread-safety: a plain value.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strata {

struct BlobKey {
  std::array<uint8_t, 16> hash{};  // XXH3-128, big-endian canonical form
  uint32_t variant = 0;

  // 32 lowercase hex digits, then ".N" when variant != 0.
  std::string ToHex() const;
  static std::optional<BlobKey> FromHex(std::string_view hex);

  auto operator<=>(const BlobKey&) const = default;
};

struct BlobKeyHash {
  size_t operator()(const BlobKey& k) const {
    size_t h;
    static_assert(sizeof h <= sizeof k.hash);
    __builtin_memcpy(&h, k.hash.data(), sizeof h);
    return h ^ k.variant;
  }
};

// Lowercase hex of arbitrary bytes.
std::string HexEncode(const uint8_t* data, size_t len);

}  // namespace strata
