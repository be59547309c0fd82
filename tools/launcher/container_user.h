#pragma once

// The user a container's command runs as: "" (root), or USER[:GROUP] with
// names looked up in the container's own /etc/passwd and /etc/group (read
// after pivot_root; the host's databases do not apply) or numbers.

#include <sys/types.h>

#include <string>
#include <vector>

#include "layerdb/base/error.h"

namespace strata::launcher {

struct ContainerUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary, from /etc/group
  std::string home = "/";
};

// Errors: ENOENT for a name that the container's passwd/group lacks.
Result<ContainerUser> ResolveUser(const std::string& spec,
                                  const std::string& passwd_text,
                                  const std::string& group_text);

}  // namespace strata::launcher
