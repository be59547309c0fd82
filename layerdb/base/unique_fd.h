#pragma once

// UniqueFd: sole owner of one file descriptor. Move-only. The destructor
// ignores close errors; call Close() where durability matters.
// Thread-safety: none; like an int.

#include <unistd.h>

#include <utility>

#include "layerdb/base/error.h"

namespace strata {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    Reset(o.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  Status Close() {
    int fd = Release();
    if (fd >= 0 && ::close(fd) != 0) return Error::FromErrno("close");
    return Ok();
  }

 private:
  int fd_ = -1;
};

}  // namespace strata
