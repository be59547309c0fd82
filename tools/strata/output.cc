#include "tools/strata/output.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <utility>

#include <fmt/core.h>

#include "layerdb/base/sys.h"

namespace strata::cli {

std::string HumanSize(uint64_t bytes) {
  static constexpr std::array<const char*, 6> kUnits = {"B",  "kB", "MB",
                                                        "GB", "TB", "PB"};
  if (bytes < 1000) return fmt::format("{}B", bytes);
  auto v = static_cast<double>(bytes);
  size_t unit = 0;
  // Move up a unit before rounding could print "1e+03".
  while (v >= 999.5 && unit + 1 < kUnits.size()) {
    v /= 1000;
    ++unit;
  }
  return fmt::format("{:.3g}{}", v, kUnits[unit]);
}

std::string HumanAge(int64_t unix_seconds) {
  if (unix_seconds <= 0) return "-";
  int64_t age = static_cast<int64_t>(::time(nullptr)) - unix_seconds;
  if (age < 60) return "just now";
  struct Step {
    int64_t seconds;
    const char* name;
  };
  static constexpr std::array<Step, 5> kSteps = {{{31536000, "year"},
                                                  {604800, "week"},
                                                  {86400, "day"},
                                                  {3600, "hour"},
                                                  {60, "minute"}}};
  for (const Step& s : kSteps) {
    int64_t n = age / s.seconds;
    if (n == 0) continue;
    return fmt::format("{} {}{} ago", n, s.name, n == 1 ? "" : "s");
  }
  return "just now";
}

std::string ShortDigest(std::string_view digest) {
  if (size_t colon = digest.find(':'); colon != std::string_view::npos)
    digest.remove_prefix(colon + 1);
  return std::string(digest.substr(0, 12));
}

Table::Table(std::vector<std::string> headers) {
  rows_.push_back(std::move(headers));
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(rows_.front().size());
  rows_.push_back(std::move(cells));
}

void Table::Print(std::FILE* out) const {
  std::vector<size_t> width(rows_.front().size(), 0);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 3, ' ');
    }
    fmt::print(out, "{}\n", line);
  }
}

void PrintJson(const nlohmann::json& value) {
  fmt::print("{}\n", value.dump(2));
}

Progress::Progress(std::string label)
    : label_(std::move(label)), enabled_(sys::IsTerminal(STDERR_FILENO)) {}

void Progress::Update(uint64_t done, uint64_t total) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  drawn_ = true;
  std::string line = label_ + "  " + HumanSize(done);
  if (total > 0) {
    uint64_t pct = std::min<uint64_t>(100, done * 100 / total);
    line += fmt::format(" / {}  {}%", HumanSize(total), pct);
  }
  // \r returns to the start; \x1b[K clears what a longer line left behind.
  fmt::print(stderr, "\r{}\x1b[K", line);
  std::fflush(stderr);
}

void Progress::Finish() {
  if (enabled_ && drawn_) {
    fmt::print(stderr, "\r\x1b[K");
    std::fflush(stderr);
  }
  enabled_ = false;
}

std::function<void(uint64_t, uint64_t)> Progress::Callback() {
  return [this](uint64_t done, uint64_t total) { Update(done, total); };
}

}  // namespace strata::cli
