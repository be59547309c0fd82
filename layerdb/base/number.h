#pragma once

// ParseNumber: all of a string as one unsigned or signed integer, or
// nothing — no sign, space, prefix or trailing text accepted (what
// std::from_chars alone lets through: a valid prefix). For ids, counts and
// pids read from files, xattrs and command lines.

#include <charconv>
#include <optional>
#include <string_view>
#include <system_error>

namespace strata {

template <class T>
std::optional<T> ParseNumber(std::string_view s, int base = 10) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

}  // namespace strata
