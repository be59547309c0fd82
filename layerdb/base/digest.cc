#include "layerdb/base/digest.h"

#include <charconv>

namespace strata {

std::string HexEncode(const uint8_t* data, size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

std::string BlobKey::ToHex() const {
  std::string s = HexEncode(hash.data(), hash.size());
  if (variant != 0) s += "." + std::to_string(variant);
  return s;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
}  // namespace

std::optional<BlobKey> BlobKey::FromHex(std::string_view hex) {
  if (hex.size() < 32) return std::nullopt;
  BlobKey k;
  for (size_t i = 0; i < 16; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    k.hash[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  std::string_view rest = hex.substr(32);
  if (rest.empty()) return k;
  if (rest.size() < 2 || rest[0] != '.') return std::nullopt;
  rest.remove_prefix(1);
  auto [p, ec] =
      std::from_chars(rest.data(), rest.data() + rest.size(), k.variant);
  if (ec != std::errc() || p != rest.data() + rest.size() || k.variant == 0)
    return std::nullopt;
  return k;
}

}  // namespace strata
