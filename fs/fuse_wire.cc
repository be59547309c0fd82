#include "fs/fuse_wire.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace strata::fs::wire {

namespace {

std::atomic<uint64_t> init_unique{0};  // the INIT request, until answered
std::atomic<bool> v2_offered{false};
std::atomic<bool> v2_negotiated{false};
thread_local bool kill_privs = false;

template <class T>
bool Body(const void* buf, ssize_t n, T* out) {
  if (n < static_cast<ssize_t>(sizeof(fuse_in_header) + sizeof(T)))
    return false;
  std::memcpy(out, static_cast<const char*>(buf) + sizeof(fuse_in_header),
              sizeof(T));
  return true;
}

void Inspect(const void* buf, ssize_t n) {
  kill_privs = false;
  fuse_in_header h{};
  if (n < static_cast<ssize_t>(sizeof(h))) return;
  std::memcpy(&h, buf, sizeof(h));
  switch (h.opcode) {
    case FUSE_WRITE: {
      fuse_write_in w{};
      kill_privs =
          Body(buf, n, &w) && (w.write_flags & FUSE_WRITE_KILL_SUIDGID);
      break;
    }
    case FUSE_OPEN: {
      fuse_open_in o{};
      kill_privs = Body(buf, n, &o) && (o.open_flags & FUSE_OPEN_KILL_SUIDGID);
      break;
    }
    case FUSE_CREATE: {
      fuse_create_in c{};
      kill_privs = Body(buf, n, &c) && (c.open_flags & FUSE_OPEN_KILL_SUIDGID);
      break;
    }
    case FUSE_INIT: {
      // The first 16 bytes (major, minor, max_readahead, flags) are the
      // same in every protocol version.
      fuse_init_in in{};
      size_t have = static_cast<size_t>(n) - sizeof(h);
      std::memcpy(&in, static_cast<const char*>(buf) + sizeof(h),
                  std::min(have, sizeof(in)));
      if (have >= offsetof(fuse_init_in, flags) + sizeof(in.flags))
        v2_offered = (in.flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
      init_unique = h.unique;
      break;
    }
    default:
      break;
  }
}

}  // namespace

ssize_t Read(int fd, void* buf, size_t len, void*) {
  ssize_t n = ::read(fd, buf, len);
  if (n > 0) Inspect(buf, n);
  return n;
}

ssize_t Writev(int fd, struct iovec* iov, int count, void*) {
  uint64_t init = init_unique.load();
  fuse_out_header h{};
  if (init == 0 || count < 2 || iov[0].iov_len < sizeof(h))
    return ::writev(fd, iov, count);
  std::memcpy(&h, iov[0].iov_base, sizeof(h));
  constexpr size_t kFlagsEnd =
      offsetof(fuse_init_out, flags) + sizeof(fuse_init_out::flags);
  if (h.unique != init || h.error != 0 || iov[1].iov_len < kFlagsEnd ||
      iov[1].iov_len > sizeof(fuse_init_out))
    return ::writev(fd, iov, count);
  init_unique = 0;
  if (!v2_offered.load()) return ::writev(fd, iov, count);
  // A copy of libfuse's INIT reply with one more flag.
  fuse_init_out out{};
  std::memcpy(&out, iov[1].iov_base, iov[1].iov_len);
  out.flags |= FUSE_HANDLE_KILLPRIV_V2;
  struct iovec patched[2] = {iov[0], {&out, iov[1].iov_len}};
  ssize_t n = ::writev(fd, patched, 2);
  if (n >= 0) v2_negotiated = true;
  return n;
}

ssize_t SpliceSend(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                   unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

bool RequestKillsPrivs() {
  return kill_privs && v2_negotiated.load(std::memory_order_relaxed);
}

}  // namespace strata::fs::wire
