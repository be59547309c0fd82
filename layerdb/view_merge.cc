#include "layerdb/view_merge.h"

#include <sys/stat.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace strata::layerdb {

namespace {

constexpr uint8_t kLayerOnlyFlags =
    kFlagOpaque | kFlagImplicit | kFlagWhiteout | kFlagExtLink;

class Merger {
 public:
  explicit Merger(TreeNodePtr root) : root_(std::move(root)) {}

  Status ApplyLayer(const TreeNode& layer_root) {
    copies_.clear();  // hardlink identity is per layer
    // External links name a path in the layers below: resolve them before
    // this layer changes the view (it may replace a target that sorts
    // before the link).
    STRATA_RETURN_IF_ERROR(ResolveExtLinks(layer_root));
    if (layer_root.node.is_opaque()) root_->children.clear();
    if (!(layer_root.node.flags & kFlagImplicit)) CopyAttrs(*root_, layer_root);
    return ApplyDir(*root_, layer_root);
  }

 private:
  static void CopyAttrs(TreeNode& to, const TreeNode& from) {
    to.node = from.node;
    to.node.flags &= static_cast<uint8_t>(~kLayerOnlyFlags);
  }

  // The view node for a non-directory layer node; names of one layer inode
  // map to one view node.
  TreeNodePtr CopyOf(const TreeNode& layer_node) {
    auto [it, inserted] = copies_.try_emplace(&layer_node);
    if (inserted) {
      it->second = std::make_shared<TreeNode>();
      CopyAttrs(*it->second, layer_node);
    }
    return it->second;
  }

  TreeNodePtr Resolve(const std::string& path) const {
    TreeNodePtr n = root_;
    size_t pos = 0;
    while (n && pos <= path.size()) {
      size_t slash = path.find('/', pos);
      std::string comp = path.substr(pos, slash - pos);
      if (!n->node.attr.is_dir()) return nullptr;
      auto it = n->children.find(comp);
      if (it == n->children.end()) return nullptr;
      n = it->second;
      if (slash == std::string::npos) break;
      pos = slash + 1;
    }
    return n;
  }

  Status ResolveExtLinks(const TreeNode& layer_root) {
    ext_targets_.clear();
    std::vector<const TreeNode*> dirs{&layer_root};
    while (!dirs.empty()) {
      const TreeNode* d = dirs.back();
      dirs.pop_back();
      for (const auto& [name, lchild] : d->children) {
        const Node& ln = lchild->node;
        if (ln.attr.is_dir()) dirs.push_back(lchild.get());
        if (!(ln.flags & kFlagExtLink) || ext_targets_.contains(lchild.get()))
          continue;
        TreeNodePtr target = Resolve(ln.target);
        if (!target || target->node.attr.is_dir())
          return Error(ENOENT, "build view",
                       "hardlink \"" + name + "\" to \"" + ln.target +
                           "\": target is not in the layers below");
        ext_targets_.emplace(lchild.get(), std::move(target));
      }
    }
    return Ok();
  }

  Status ApplyDir(TreeNode& view_dir, const TreeNode& layer_dir) {
    for (const auto& [name, lchild] : layer_dir.children) {
      const Node& ln = lchild->node;
      if (ln.is_whiteout()) {
        view_dir.children.erase(name);
        continue;
      }
      if (ln.flags & kFlagExtLink) {
        view_dir.children[name] = ext_targets_.at(lchild.get());
        continue;
      }
      if (!ln.attr.is_dir()) {
        view_dir.children[name] = CopyOf(*lchild);
        continue;
      }
      STRATA_RETURN_IF_ERROR(ApplySubdir(view_dir, name, *lchild));
    }
    return Ok();
  }

  Status ApplySubdir(TreeNode& view_dir, const std::string& name,
                     const TreeNode& ldir) {
    auto it = view_dir.children.find(name);
    const bool lower_dir =
        it != view_dir.children.end() && it->second->node.attr.is_dir();
    TreeNodePtr dir;
    if (lower_dir && !ldir.node.is_opaque()) {
      dir = it->second;  // merge in place: view directories are never shared
    } else {
      dir = MakeDirNode(0755, 0);
      // An implicit opaque directory (".wh..wh..opq" without an entry of
      // its own) is the lower directory emptied: it keeps its attributes.
      if (lower_dir) dir->node = it->second->node;
      view_dir.children[name] = dir;
    }
    if (!(ldir.node.flags & kFlagImplicit)) CopyAttrs(*dir, ldir);
    return ApplyDir(*dir, ldir);
  }

  TreeNodePtr root_;
  std::unordered_map<const TreeNode*, TreeNodePtr> copies_;
  // This layer's external links → their targets in the layers below.
  std::unordered_map<const TreeNode*, TreeNodePtr> ext_targets_;
};

}  // namespace

Result<TreeNodePtr> MergeLayers(const std::vector<TreeNodePtr>& layers) {
  TreeNodePtr root = MakeDirNode(0755, 0);
  Merger merger(root);
  for (const TreeNodePtr& layer : layers)
    STRATA_RETURN_IF_ERROR(merger.ApplyLayer(*layer));
  return root;
}

}  // namespace strata::layerdb
