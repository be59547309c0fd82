#pragma once

// Output helpers of the strata CLI: results go to stdout (tables, or JSON
// with --json), progress and logs to stderr. Progress is drawn only when
// stderr is a terminal, so pipes and logs stay clean.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::cli {

// Decimal units with three significant digits, as docker prints sizes:
// 512B, 4.1kB, 12.3MB, 1.23GB.
std::string HumanSize(uint64_t bytes);

// "just now", "5 minutes ago", "3 days ago"; "-" for 0 (unknown).
std::string HumanAge(int64_t unix_seconds);

// The first 12 hex digits of a digest ("sha256:ab12…" → "ab12…").
std::string ShortDigest(std::string_view digest);

// A left-aligned text table, columns separated by three spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);
  void Print(std::FILE* out = stdout) const;

 private:
  std::vector<std::vector<std::string>> rows_;  // headers first
};

// Pretty-printed JSON and a newline, on stdout.
void PrintJson(const nlohmann::json& value);

// A one-line progress display on stderr ("label  12.3MB / 45.6MB  27%"),
// redrawn at most ten times a second; does nothing unless stderr is a tty.
class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress() { Finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  Progress(Progress&&) = delete;  // Callback() captures `this`
  Progress& operator=(Progress&&) = delete;

  // `total` 0 means unknown.
  void Update(uint64_t done, uint64_t total);
  // Erases the line; later updates are ignored.
  void Finish();
  // For ImportOptions::progress. REQUIRES: *this outlives the callback.
  std::function<void(uint64_t, uint64_t)> Callback();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace strata::cli
