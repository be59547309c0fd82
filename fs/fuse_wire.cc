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

// Protocol 7.40 (Linux 6.9), newer than Debian 12's <linux/fuse.h>.
constexpr uint32_t kPassthroughFlags2 = 1u << (37 - 32);  // FUSE_PASSTHROUGH
constexpr uint32_t kOpenPassthrough = 1u << 7;            // FOPEN_PASSTHROUGH
// fuse_init_out's max_stack_depth: the first of 6.1's unused words.
constexpr size_t kMaxStackDepthAt = offsetof(fuse_init_out, unused);
// fuse_open_out's backing_id: 6.1's padding.
constexpr size_t kBackingIdAt = offsetof(fuse_open_out, padding);

std::atomic<uint64_t> init_unique{0};  // the INIT request, until answered
std::atomic<bool> v2_offered{false};
std::atomic<bool> v2_negotiated{false};
std::atomic<bool> passthrough_offered{false};
std::atomic<bool> passthrough_wanted{false};
thread_local bool kill_privs = false;
// The OPEN or CREATE this thread processes, and the backing for its reply.
thread_local uint64_t open_unique = 0;
thread_local int open_backing = 0;

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
  open_unique = 0;
  open_backing = 0;
  fuse_in_header h{};
  if (n < static_cast<ssize_t>(sizeof(h))) return;
  std::memcpy(&h, buf, sizeof(h));
  if (h.opcode == FUSE_OPEN || h.opcode == FUSE_CREATE) open_unique = h.unique;
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
      if (have >= offsetof(fuse_init_in, flags2) + sizeof(in.flags2))
        passthrough_offered = (in.flags & FUSE_INIT_EXT) != 0 &&
                              (in.flags2 & kPassthroughFlags2) != 0;
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

namespace {

// libfuse's INIT reply with our flags added.
ssize_t WriteInitReply(int fd, struct iovec* iov) {
  init_unique = 0;
  bool v2 = v2_offered.load();
  bool passthrough = passthrough_wanted.load() &&
                     iov[1].iov_len >= kMaxStackDepthAt + sizeof(uint32_t);
  if (!v2 && !passthrough) return ::writev(fd, iov, 2);
  fuse_init_out out{};
  std::memcpy(&out, iov[1].iov_base, iov[1].iov_len);
  if (v2) out.flags |= FUSE_HANDLE_KILLPRIV_V2;
  if (passthrough) {
    out.flags |= FUSE_INIT_EXT;
    out.flags2 |= kPassthroughFlags2;
    uint32_t depth = 1;
    std::memcpy(reinterpret_cast<char*>(&out) + kMaxStackDepthAt, &depth,
                sizeof depth);
  }
  struct iovec patched[2] = {iov[0], {&out, iov[1].iov_len}};
  ssize_t n = ::writev(fd, patched, 2);
  if (n >= 0 && v2) v2_negotiated = true;
  return n;
}

// An OPEN reply (fuse_open_out) or a CREATE one (fuse_entry_out, then
// fuse_open_out) with FOPEN_PASSTHROUGH and the backing id.
ssize_t WriteOpenReply(int fd, struct iovec* iov, int count) {
  int backing = open_backing;
  open_backing = 0;
  if (count != 2 || iov[1].iov_len < sizeof(fuse_open_out) ||
      iov[1].iov_len > sizeof(fuse_entry_out) + sizeof(fuse_open_out))
    return ::writev(fd, iov, count);
  char body[sizeof(fuse_entry_out) + sizeof(fuse_open_out)];
  std::memcpy(body, iov[1].iov_base, iov[1].iov_len);
  char* open_out = body + iov[1].iov_len - sizeof(fuse_open_out);
  uint32_t flags = 0;
  std::memcpy(&flags, open_out + offsetof(fuse_open_out, open_flags),
              sizeof flags);
  // The kernel refuses (EIO) a passthrough open with other flags than
  // these (fs/fuse/iomode.c, FOPEN_PASSTHROUGH_MASK). FOPEN_KEEP_CACHE has
  // no meaning without a page cache of our own; FOPEN_DIRECT_IO is the
  // backing file's business.
  flags = (flags & FOPEN_NOFLUSH) | kOpenPassthrough;
  std::memcpy(open_out + offsetof(fuse_open_out, open_flags), &flags,
              sizeof flags);
  std::memcpy(open_out + kBackingIdAt, &backing, sizeof backing);
  struct iovec patched[2] = {iov[0], {body, iov[1].iov_len}};
  return ::writev(fd, patched, 2);
}

}  // namespace

ssize_t Writev(int fd, struct iovec* iov, int count, void*) {
  fuse_out_header h{};
  if (count < 2 || iov[0].iov_len < sizeof(h)) return ::writev(fd, iov, count);
  std::memcpy(&h, iov[0].iov_base, sizeof(h));
  if (h.error != 0) return ::writev(fd, iov, count);
  if (open_backing != 0 && h.unique == open_unique)
    return WriteOpenReply(fd, iov, count);
  uint64_t init = init_unique.load();
  constexpr size_t kFlagsEnd =
      offsetof(fuse_init_out, flags) + sizeof(fuse_init_out::flags);
  if (init != 0 && h.unique == init && count == 2 &&
      iov[1].iov_len >= kFlagsEnd && iov[1].iov_len <= sizeof(fuse_init_out))
    return WriteInitReply(fd, iov);
  return ::writev(fd, iov, count);
}

ssize_t SpliceSend(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                   unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

bool PassthroughOffered() {
  return passthrough_offered.load();
}

void WantPassthrough() {
  passthrough_wanted = true;
}

void AnswerWithBacking(int backing_id) {
  open_backing = backing_id;
}

bool RequestKillsPrivs() {
  return kill_privs && v2_negotiated.load(std::memory_order_relaxed);
}

}  // namespace strata::fs::wire
