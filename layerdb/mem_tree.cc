#include "layerdb/mem_tree.h"

#include <sys/stat.h>

namespace strata::layerdb {

Result<std::vector<std::string_view>> SplitMemberPath(std::string_view path) {
  const std::string_view whole = path;
  auto fail = [whole](int code, const char* why) {
    std::string shown(whole.substr(0, 200));
    if (whole.size() > 200) shown += "...";
    return Error(code, "member name", "\"" + shown + "\": " + why);
  };
  if (path.size() > kMaxPathLen) return fail(ENAMETOOLONG, "path too long");
  if (!path.empty() && path.front() == '/')
    return fail(EINVAL, "absolute member name");
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view comp = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view()
                                           : path.substr(slash + 1);
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") return fail(EINVAL, "\"..\" in member name");
    if (comp.size() > kMaxNameLen) return fail(ENAMETOOLONG, "name too long");
    parts.push_back(comp);
  }
  return parts;
}

TreeNodePtr MakeDirNode(uint32_t mode, uint8_t flags) {
  auto n = std::make_shared<TreeNode>();
  n->node.attr.mode = S_IFDIR | (mode & 07777);
  n->node.attr.nlink = 2;
  n->node.flags = flags;
  return n;
}

const TreeNode* FindNode(const TreeNode& root, std::string_view path) {
  auto parts = SplitMemberPath(path);
  if (!parts) return nullptr;
  const TreeNode* n = &root;
  for (std::string_view comp : *parts) {
    if (!n->node.attr.is_dir()) return nullptr;
    auto it = n->children.find(comp);
    if (it == n->children.end()) return nullptr;
    n = it->second.get();
  }
  return n;
}

}  // namespace strata::layerdb
