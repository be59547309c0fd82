#pragma once

// Mount options shared by `strata mount` (also as `mount -t fuse.strata`) and
// `strata-overlay` (also as `mount -t fuse.strata-overlay`): what mount(8)
// and mount.fuse3 may pass, and what becomes of it.

#include <string>
#include <string_view>
#include <vector>

namespace strata::fs {

enum class MountOptionKind {
  kKernelFlag,  // given to the kernel: nosuid, nodev, noexec, noatime, ...
  kIgnored,     // generic options a FUSE union has no use for (rw, lazytime,
                // _netdev, overlayfs tuning such as index=on, ...)
  kOther,       // the caller's own (lowerdir=, upper=, ...) or unknown
};
MountOptionKind ClassifyMountOption(std::string_view key);

// Splits on `sep`; a backslash escapes the next character (kernel
// overlayfs's "\," and "\:").
std::vector<std::string> SplitEscaped(std::string_view s, char sep);

// `path` made absolute against the current directory (the daemon runs in
// "/"), in normal form without a trailing slash.
std::string AbsolutePath(const std::string& path);

}  // namespace strata::fs
