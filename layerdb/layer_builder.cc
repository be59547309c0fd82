#include "layerdb/layer_builder.h"

#include <sys/stat.h>

namespace strata::layerdb {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

Error MemberError(int code, std::string_view path, std::string_view why) {
  return Error(
      code, "member",
      "\"" + std::string(path.substr(0, 200)) + "\": " + std::string(why));
}

}  // namespace

LayerBuilder::LayerBuilder(bool allow_external_links)
    : root_(MakeDirNode(0755, kFlagImplicit)),
      allow_external_links_(allow_external_links) {}

Result<TreeNode*> LayerBuilder::ParentFor(
    const std::vector<std::string_view>& parts, std::string_view path) {
  TreeNode* dir = root_.get();
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto it = dir->children.find(parts[i]);
    if (it == dir->children.end()) {
      it = dir->children
               .emplace(std::string(parts[i]), MakeDirNode(0755, kFlagImplicit))
               .first;
    } else if (it->second->node.is_whiteout()) {
      // Deleted, then re-created by a member below it: an opaque directory.
      // Not implicit: the lower directory is gone, so its attributes must
      // not show through (extraction would mkdir it with defaults).
      it->second = MakeDirNode(0755, kFlagOpaque);
    } else if (!it->second->node.attr.is_dir()) {
      return MemberError(ENOTDIR, path,
                         it->second->node.attr.is_symlink()
                             ? "parent is a symlink in the same layer"
                             : "parent is not a directory");
    }
    dir = it->second.get();
  }
  return dir;
}

Status LayerBuilder::Insert(TreeNode& parent, std::string_view name,
                            TreeNodePtr child) {
  auto it = parent.children.find(name);
  if (it == parent.children.end()) {
    parent.children.emplace(std::string(name), std::move(child));
    return Ok();
  }
  TreeNode& old = *it->second;
  if (old.node.attr.is_dir() && child->node.attr.is_dir()) {
    // Directory over directory: new attributes, same children.
    uint8_t keep = old.node.flags & kFlagOpaque;
    old.node = std::move(child->node);
    old.node.flags =
        static_cast<uint8_t>((old.node.flags & ~kFlagImplicit) | keep);
    return Ok();
  }
  // A directory replacing a whiteout or a non-directory (a duplicate path)
  // starts empty: the earlier member deleted whatever was below.
  if (child->node.attr.is_dir()) child->node.flags |= kFlagOpaque;
  it->second = std::move(child);
  return Ok();
}

Status LayerBuilder::Add(std::string_view path, Node node) {
  STRATA_ASSIGN_OR_RETURN(auto parts, SplitMemberPath(path));
  ++members_;
  if (parts.empty()) {
    if (!node.attr.is_dir())
      return MemberError(EINVAL, path, "root is not a directory");
    node.flags =
        static_cast<uint8_t>(node.flags | (root_->node.flags & kFlagOpaque));
    root_->node = std::move(node);
    return Ok();
  }
  STRATA_ASSIGN_OR_RETURN(TreeNode * parent, ParentFor(parts, path));
  std::string_view name = parts.back();
  if (name == kOpaqueMarker) {
    parent->node.flags |= kFlagOpaque;
    return Ok();
  }
  if (name.starts_with(kWhiteoutPrefix)) {
    std::string_view hidden = name.substr(kWhiteoutPrefix.size());
    if (hidden.empty() || hidden == "." || hidden == ".." ||
        hidden.starts_with(kWhiteoutPrefix))
      return MemberError(EINVAL, path, "invalid whiteout name");
    auto it = parent->children.find(hidden);
    if (it != parent->children.end()) {
      // The whiteout applies to lower layers only; this layer's entry stays.
      // A directory only implied by its children is then a new, empty one
      // (not the lower directory with its attributes).
      if (it->second->node.attr.is_dir())
        it->second->node.flags = static_cast<uint8_t>(
            (it->second->node.flags | kFlagOpaque) & ~kFlagImplicit);
      return Ok();
    }
    auto wh = std::make_shared<TreeNode>();
    wh->node.attr.mode = S_IFCHR;
    wh->node.flags = kFlagWhiteout;
    parent->children.emplace(std::string(hidden), std::move(wh));
    return Ok();
  }
  auto child = std::make_shared<TreeNode>();
  child->node = std::move(node);
  if (child->node.attr.is_dir()) child->node.attr.nlink = 2;
  return Insert(*parent, name, std::move(child));
}

Status LayerBuilder::AddHardlink(std::string_view path,
                                 std::string_view target) {
  STRATA_ASSIGN_OR_RETURN(auto parts, SplitMemberPath(path));
  STRATA_ASSIGN_OR_RETURN(auto tparts, SplitMemberPath(target));
  ++members_;
  if (parts.empty()) return MemberError(EINVAL, path, "hardlink at the root");
  TreeNode* t = root_.get();
  for (std::string_view comp : tparts) {
    if (t == nullptr || !t->node.attr.is_dir()) {
      t = nullptr;
      break;
    }
    auto it = t->children.find(comp);
    t = it == t->children.end() ? nullptr : it->second.get();
  }
  if (t != nullptr && t->node.is_whiteout()) t = nullptr;
  if (t != nullptr && t->node.attr.is_dir())
    return MemberError(EPERM, path, "hardlink to a directory");
  STRATA_ASSIGN_OR_RETURN(TreeNode * parent, ParentFor(parts, path));
  if (t != nullptr) {
    // Find the shared_ptr that owns `t` to share it.
    TreeNode* tdir = root_.get();
    for (size_t i = 0; i + 1 < tparts.size(); ++i)
      tdir = tdir->children.find(tparts[i])->second.get();
    TreeNodePtr shared = tdir->children.find(tparts.back())->second;
    auto self = parent->children.find(parts.back());
    if (self != parent->children.end() && self->second == shared)
      return Ok();  // a link to itself
    return Insert(*parent, parts.back(), std::move(shared));
  }
  if (!allow_external_links_)
    return MemberError(ENOENT, path,
                       "hardlink target \"" +
                           std::string(target.substr(0, 200)) +
                           "\" is not in the layer");
  auto ext = std::make_shared<TreeNode>();
  ext->node.attr.mode = S_IFREG;
  ext->node.flags = kFlagExtLink;
  for (size_t i = 0; i < tparts.size(); ++i) {
    if (i) ext->node.target += '/';
    ext->node.target += tparts[i];
  }
  return Insert(*parent, parts.back(), std::move(ext));
}

}  // namespace strata::layerdb
