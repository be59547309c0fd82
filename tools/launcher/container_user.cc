#include "tools/launcher/container_user.h"

#include <sstream>

#include "layerdb/base/number.h"

namespace strata::launcher {

namespace {

bool IsNumber(const std::string& s, uint32_t& v) {
  auto n = ParseNumber<uint32_t>(s);
  if (n) v = *n;
  return n.has_value();
}

std::vector<std::string> Fields(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ss(line);
  std::string x;
  while (std::getline(ss, x, ':'))
    f.push_back(x);
  if (!line.empty() && line.back() == ':') f.emplace_back();
  return f;
}

}  // namespace

Result<ContainerUser> ResolveUser(const std::string& spec,
                                  const std::string& passwd_text,
                                  const std::string& group_text) {
  ContainerUser u;
  if (spec.empty()) {
    u.home = "/root";
    return u;
  }
  std::string user = spec.substr(0, spec.find(':'));
  std::string group = spec.find(':') == std::string::npos
                          ? ""
                          : spec.substr(spec.find(':') + 1);
  std::string name;
  uint32_t num = 0;
  bool found = false;
  std::istringstream pw(passwd_text);
  for (std::string line; std::getline(pw, line);) {
    auto f = Fields(line);
    if (f.size() < 7) continue;
    uint32_t uid = 0, gid = 0;
    if (!IsNumber(f[2], uid) || !IsNumber(f[3], gid)) continue;
    if (f[0] == user || (IsNumber(user, num) && uid == num)) {
      u.uid = uid;
      u.gid = gid;
      u.home = f[5];
      name = f[0];
      found = true;
      break;
    }
  }
  if (!found) {
    if (!IsNumber(user, num))
      return Error(ENOENT, "run",
                   "user " + user + " is not in the image's /etc/passwd");
    u.uid = num;
    u.gid = num;
  }
  std::istringstream gr(group_text);
  for (std::string line; std::getline(gr, line);) {
    auto f = Fields(line);
    if (f.size() < 4) continue;
    uint32_t gid = 0;
    if (!IsNumber(f[2], gid)) continue;
    if (!group.empty() &&
        (f[0] == group || (IsNumber(group, num) && gid == num))) {
      u.gid = gid;
      group.clear();
    }
    if (!name.empty()) {
      std::stringstream members(f[3]);
      for (std::string m; std::getline(members, m, ',');)
        if (m == name) u.groups.push_back(gid);
    }
  }
  if (!group.empty()) {
    if (!IsNumber(group, num))
      return Error(ENOENT, "run",
                   "group " + group + " is not in the image's /etc/group");
    u.gid = num;
  }
  return u;
}

}  // namespace strata::launcher
