#pragma once

// The libfuse low-level operations table over a UnionFs: thin adapters that
// decode a request, call UnionFs, and reply exactly once.

#include <memory>

#include <fuse_lowlevel.h>

#include "fs/backing_files.h"
#include "fs/union_fs.h"

namespace strata::fs {

struct DaemonContext {
  UnionFs* fs = nullptr;
  double timeout = 86400.0;  // we are the only writer: cache for a day
  bool posix_acl = false;    // with default_permissions
  bool no_opendir = false;   // the kernel takes ENOSYS for "no opendir"
  bool writeback = false;    // the kernel caches writes (writeback cache)
  // Set when passthrough may be offered (fs/backing_files.h); used once
  // INIT negotiated it (`passthrough`).
  std::unique_ptr<BackingFiles> backing;
  bool passthrough = false;
  fuse_session* se = nullptr;  // for notifications (Prefetch)
};

const fuse_lowlevel_ops& UnionOps();

}  // namespace strata::fs
