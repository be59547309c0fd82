#pragma once

// FUSE passthrough (Linux 6.9): the kernel reads and writes an open file's
// backing host file itself, with no READ or WRITE round trip and no page
// cache of its own. libfuse 3.14 predates it: fuse_wire.h negotiates it,
// this class registers the backing files (FUSE_DEV_IOC_BACKING_OPEN) and
// counts who uses them.
//
// The upper's files are passed through, and on a read-only mount (no upper:
// nothing is ever copied up) the lower's. The kernel requires every
// open of an inode to use the one backing file while any is open, and no
// cached open beside a passthrough one (nor the reverse: the open fails
// with EIO). A lower file opened read-only must follow a later copy-up to
// the upper (kernel overlayfs does; UnionFs::ReadFd), which a lower backing
// could not; an upper file's data stays in one host file for good. So:
//  - an open that reads the lower of a writable union is cached;
//  - an upper open is passed through, with the inode's backing file if it
//    has one, unless the inode is open cached (a file opened before its
//    copy-up still is): then it is cached too, until those are released.
// The kernel registers backing files only for a daemon with CAP_SYS_ADMIN
// in the initial user namespace (root's `strata mount` and `strata run`,
// not rootless ones), and passthrough excludes the writeback cache.
//
// Privileges (suid, sgid, security.capability). A write by a caller
// without CAP_FSETID must remove them. Passed through, a write never
// reaches us, and under FUSE_HANDLE_KILLPRIV_V2 (fuse_wire.h) the kernel
// leaves that removal to us. So:
//  - a file that has privileges when first opened is cached: its WRITEs
//    come here and say when to remove them (as before passthrough);
//  - the backing files are registered with credentials without
//    CAP_FSETID, so a passed-through write removes them from the upper
//    file (the host filesystem's own rule), whoever the writer;
//  - while such a write may come (privileges added, by chmod, or a
//    privileged file opened for writing beside passthrough opens), the
//    kernel must not cache privileges the upper file may lose behind its
//    back (exec reads the cached mode): the session shows the file without
//    suid and sgid (HidesPrivileges) until the last passed-through writer
//    is released, then has the kernel ask again. A program that sets
//    suid on a file it still holds open for writing (install, dpkg) sees
//    the bit once it closes the file.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace strata::fs {

class BackingFiles {
 public:
  // `dev_fd`: the session's /dev/fuse.
  explicit BackingFiles(int dev_fd) : dev_fd_(dev_fd) {}

  // Whether this process may register backing files.
  static bool Permitted();

  // An open of `nodeid` (`writer`: for writing); `upper_fd` is its upper
  // file, or -1 when it reads the lower; `privileged`: the file has suid,
  // sgid or a capability. Returns the backing id to answer with (wire::
  // AnswerWithBacking), or 0 for a cached open.
  int Open(uint64_t nodeid, int upper_fd, bool writer, bool privileged);

  // The release of an open, with what Open returned for it. True when the
  // kernel's attributes of `nodeid` must be invalidated (privileges were
  // hidden and no longer are).
  [[nodiscard]] bool Release(uint64_t nodeid, int backing_id, bool writer);

  // After a chmod that gave `nodeid` suid or sgid.
  void PrivilegesAdded(uint64_t nodeid);

  // Whether the session must show `nodeid` without suid and sgid.
  bool HidesPrivileges(uint64_t nodeid);

 private:
  struct Opens {
    int backing_id = 0;
    unsigned passed = 0;  // opens passed through to backing_id
    unsigned passed_writers = 0;
    unsigned cached = 0;
    bool hides_privileges = false;
  };

  int Register(int upper_fd);  // a backing id, or 0 when refused

  const int dev_fd_;
  std::mutex mutex_;
  std::unordered_map<uint64_t, Opens> opens_;
  std::atomic<unsigned> hiding_{0};  // nodes that hide privileges
  bool refused_ = false;  // the kernel refused a backing file: none again
};

}  // namespace strata::fs
