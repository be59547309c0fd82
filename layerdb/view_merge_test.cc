#include "layerdb/view_merge.h"

#include <sys/stat.h>

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "layerdb/layer_builder.h"

namespace strata::layerdb {
namespace {

Node File(std::string data, uint32_t perm = 0644) {
  Node n;
  n.attr.mode = S_IFREG | perm;
  n.attr.size = data.size();
  n.flags = kFlagInline;
  n.inline_data = std::move(data);
  return n;
}

Node Dir(uint32_t perm = 0755, uint32_t uid = 0, int64_t mtime_ns = 0) {
  Node n;
  n.attr.mode = S_IFDIR | perm;
  n.attr.uid = uid;
  n.attr.mtime_ns = mtime_ns;
  return n;
}

Node Whiteout() {
  return File("");
}  // content is ignored for ".wh." names

const TreeNode* Find(const TreeNodePtr& root, std::string_view path) {
  return FindNode(*root, path);
}

std::vector<std::string> Names(const TreeNodePtr& root, std::string_view dir) {
  std::vector<std::string> out;
  const TreeNode* d = Find(root, dir);
  if (d == nullptr) return out;
  for (const auto& [name, child] : d->children)
    out.push_back(name);
  return out;
}

std::string Content(const TreeNodePtr& root, std::string_view path) {
  const TreeNode* n = Find(root, path);
  return n == nullptr ? "<missing>" : n->node.inline_data;
}

using NameList = std::vector<std::string>;

class ViewMergeTest : public ::testing::Test {
 protected:
  // Adds a fresh layer builder on top of the stack and returns it.
  LayerBuilder& Layer(bool allow_external_links = false) {
    layers_.emplace_back(allow_external_links);
    return layers_.back();
  }

  // Merges the stack bottom to top; the result as MergeLayers returns it.
  Result<TreeNodePtr> TryMerge() const {
    std::vector<TreeNodePtr> roots;
    for (const LayerBuilder& b : layers_)
      roots.push_back(b.root());
    return MergeLayers(roots);
  }

  TreeNodePtr Merge() const {
    auto view = TryMerge();
    EXPECT_TRUE(view) << view.error().ToString();
    return view ? *view : MakeDirNode(0755, 0);
  }

  static void Add(LayerBuilder& b, std::string_view path, Node node) {
    Status s = b.Add(path, std::move(node));
    ASSERT_TRUE(s) << path << ": " << s.error().ToString();
  }
  static void Link(LayerBuilder& b, std::string_view path,
                   std::string_view target) {
    Status s = b.AddHardlink(path, target);
    ASSERT_TRUE(s) << path << ": " << s.error().ToString();
  }

  std::deque<LayerBuilder> layers_;  // stable references
};

TEST_F(ViewMergeTest, WhiteoutRemovesLowerFile) {
  auto& l1 = Layer();
  Add(l1, "a/f", File("f"));
  Add(l1, "a/g", File("g"));
  Add(Layer(), "a/.wh.f", Whiteout());
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "a"), NameList({"g"}));
}

TEST_F(ViewMergeTest, WhiteoutRemovesLowerDirectoryWithItsTree) {
  auto& l1 = Layer();
  Add(l1, "d/x/y", File("y"));
  Add(l1, "keep", File("k"));
  Add(Layer(), ".wh.d", Whiteout());
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, ""), NameList({"keep"}));
}

TEST_F(ViewMergeTest, WhiteoutLeavesTheSameLayersEntryWhateverTheOrder) {
  Add(Layer(), "f", File("v1"));
  auto& l2 = Layer();
  Add(l2, "f", File("v2"));
  Add(l2, ".wh.f", Whiteout());
  Add(l2, ".wh.g", Whiteout());
  Add(l2, "g", File("g2"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Content(v, "f"), "v2");
  EXPECT_EQ(Content(v, "g"), "g2");
  EXPECT_EQ(Names(v, ""), NameList({"f", "g"}));
}

TEST_F(ViewMergeTest, WhiteoutOfAMissingNameIsHarmless) {
  Add(Layer(), "a", File("a"));
  Add(Layer(), ".wh.nothing", Whiteout());
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, ""), NameList({"a"}));
}

TEST_F(ViewMergeTest, OpaqueDirectoryHidesLowerChildren) {
  auto& l1 = Layer();
  Add(l1, "d/a", File("a"));
  Add(l1, "d/sub/b", File("b"));
  auto& l2 = Layer();
  Add(l2, "d", Dir());
  Add(l2, "d/.wh..wh..opq", Whiteout());
  Add(l2, "d/c", File("c"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "d"), NameList({"c"}));
}

TEST_F(ViewMergeTest, OpaqueMarkerAfterSiblingsStillHidesOnlyLowerChildren) {
  auto& l1 = Layer();
  Add(l1, "d/a", File("a"));
  Add(l1, "d/z", File("z"));
  auto& l2 = Layer();
  Add(l2, "d", Dir(0700));
  Add(l2, "d/c", File("c"));
  Add(l2, "d/sub/e", File("e"));
  Add(l2, "d/.wh..wh..opq", Whiteout());  // last in the stream
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "d"), NameList({"c", "sub"}));
  EXPECT_EQ(Find(v, "d")->node.attr.mode, S_IFDIR | 0700u);
}

TEST_F(ViewMergeTest, OpaqueRootHidesEveryLowerName) {
  Add(Layer(), "old/x", File("x"));
  auto& l2 = Layer();
  Add(l2, "new", File("n"));
  Add(l2, ".wh..wh..opq", Whiteout());
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, ""), NameList({"new"}));
}

TEST_F(ViewMergeTest, OpaqueMarkerWithoutDirEntryKeepsLowerAttrs) {
  // "d/" itself is not in the upper layer: extracting it keeps the lower
  // directory (and its attributes) and empties it.
  auto& l1 = Layer();
  Add(l1, "d", Dir(0700, 1000, 42));
  Add(l1, "d/old", File("o"));
  auto& l2 = Layer();
  Add(l2, "d/.wh..wh..opq", Whiteout());
  Add(l2, "d/new", File("n"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "d"), NameList({"new"}));
  const TreeNode* d = Find(v, "d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->node.attr.mode, S_IFDIR | 0700u);
  EXPECT_EQ(d->node.attr.uid, 1000u);
  EXPECT_EQ(d->node.attr.mtime_ns, 42);
}

TEST_F(ViewMergeTest, WhiteoutThenChildRecreatesAnEmptyDirectory) {
  auto& l1 = Layer();
  Add(l1, "d", Dir(0700, 1000));
  Add(l1, "d/old", File("o"));
  auto& l2 = Layer();
  Add(l2, ".wh.d", Whiteout());
  Add(l2, "d/new", File("n"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "d"), NameList({"new"}));
  // The lower directory was deleted; the new one is made as a parent would
  // be on extraction, not with the deleted directory's attributes.
  EXPECT_EQ(Find(v, "d")->node.attr.uid, 0u);
  EXPECT_EQ(Find(v, "d")->node.attr.mode, S_IFDIR | 0755u);
}

TEST_F(ViewMergeTest, ChildThenWhiteoutRecreatesAnEmptyDirectory) {
  auto& l1 = Layer();
  Add(l1, "d", Dir(0700, 1000));
  Add(l1, "d/old", File("o"));
  auto& l2 = Layer();
  Add(l2, "d/new", File("n"));
  Add(l2, ".wh.d", Whiteout());
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "d"), NameList({"new"}));
  EXPECT_EQ(Find(v, "d")->node.attr.uid, 0u);
}

TEST_F(ViewMergeTest, WhiteoutThenDirEntryIsOpaqueWithNewAttrs) {
  auto& l1 = Layer();
  Add(l1, "d/old", File("o"));
  auto& l2 = Layer();
  Add(l2, ".wh.d", Whiteout());
  Add(l2, "d", Dir(0711, 7));
  TreeNodePtr v = Merge();
  EXPECT_TRUE(Names(v, "d").empty());
  EXPECT_EQ(Find(v, "d")->node.attr.mode, S_IFDIR | 0711u);
  EXPECT_EQ(Find(v, "d")->node.attr.uid, 7u);
}

TEST_F(ViewMergeTest, NestedOpaqueRecreationDoesNotExposeLowerEntries) {
  // fuse-overlayfs #478: re-creating a directory inside a re-created
  // directory must not bring the lowest layer's entries back.
  auto& l1 = Layer();
  Add(l1, "a/b/old", File("o"));
  Add(l1, "a/keep", File("k"));
  auto& l2 = Layer();
  Add(l2, ".wh.a", Whiteout());
  Add(l2, "a/b/mid", File("m"));
  auto& l3 = Layer();
  Add(l3, "a/b/.wh..wh..opq", Whiteout());
  Add(l3, "a/b/top", File("t"));
  Add(l3, "a/c/x", File("x"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "a"), NameList({"b", "c"}));
  EXPECT_EQ(Names(v, "a/b"), NameList({"top"}));
}

TEST_F(ViewMergeTest, FileOverDirectoryShadowsIt) {
  Add(Layer(), "d/x", File("x"));
  Add(Layer(), "d", File("now a file"));
  TreeNodePtr v = Merge();
  ASSERT_NE(Find(v, "d"), nullptr);
  EXPECT_TRUE(Find(v, "d")->node.attr.is_reg());
  EXPECT_EQ(Content(v, "d"), "now a file");
}

TEST_F(ViewMergeTest, DirectoryOverFileShadowsIt) {
  Add(Layer(), "f", File("was a file"));
  auto& l2 = Layer();
  Add(l2, "f", Dir(0750));
  Add(l2, "f/y", File("y"));
  TreeNodePtr v = Merge();
  const TreeNode* f = Find(v, "f");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->node.attr.mode, S_IFDIR | 0750u);
  EXPECT_TRUE(f->node.inline_data.empty());
  EXPECT_EQ(Names(v, "f"), NameList({"y"}));
}

TEST_F(ViewMergeTest, ImplicitDirectoryOverFileGetsDefaultAttrs) {
  Add(Layer(), "f", File("was a file", 0600));
  Add(Layer(), "f/y", File("y"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Find(v, "f")->node.attr.mode, S_IFDIR | 0755u);
  EXPECT_EQ(Names(v, "f"), NameList({"y"}));
}

TEST_F(ViewMergeTest, FileThenDirectoryInOneLayerHidesLowerChildren) {
  // A duplicate path (real images have them): the file member deleted the
  // lower directory, so the directory that replaces it starts empty.
  Add(Layer(), "d/old", File("o"));
  auto& l2 = Layer();
  Add(l2, "d", File("f"));
  Add(l2, "d", Dir(0755));
  Add(l2, "d/new", File("n"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, "d"), NameList({"new"}));
}

TEST_F(ViewMergeTest, ImplicitDirectoryKeepsLowerAttrs) {
  auto& l1 = Layer();
  Add(l1, "d", Dir(0700, 1000, 42));
  Add(l1, "d/a", File("a"));
  Add(Layer(), "d/b", File("b"));
  TreeNodePtr v = Merge();
  const TreeNode* d = Find(v, "d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->node.attr.mode, S_IFDIR | 0700u);
  EXPECT_EQ(d->node.attr.uid, 1000u);
  EXPECT_EQ(d->node.attr.mtime_ns, 42);
  EXPECT_EQ(Names(v, "d"), NameList({"a", "b"}));
}

TEST_F(ViewMergeTest, ExplicitDirectoryReplacesAttrsAndMerges) {
  auto& l1 = Layer();
  Add(l1, "d", Dir(0700, 1000, 42));
  Add(l1, "d/a", File("a"));
  auto& l2 = Layer();
  Add(l2, "d", Dir(0750, 5, 43));
  Add(l2, "d/b", File("b"));
  TreeNodePtr v = Merge();
  const TreeNode* d = Find(v, "d");
  EXPECT_EQ(d->node.attr.mode, S_IFDIR | 0750u);
  EXPECT_EQ(d->node.attr.uid, 5u);
  EXPECT_EQ(Names(v, "d"), NameList({"a", "b"}));
}

TEST_F(ViewMergeTest, ViewHasNoLayerFlags) {
  auto& l1 = Layer();
  Add(l1, "d/a", File("a"));
  auto& l2 = Layer();
  Add(l2, "d/.wh..wh..opq", Whiteout());
  Add(l2, "e/x", File("x"));
  TreeNodePtr v = Merge();
  for (const char* p : {"", "d", "e", "e/x"}) {
    const TreeNode* n = Find(v, p);
    ASSERT_NE(n, nullptr) << p;
    EXPECT_EQ(n->node.flags &
                  (kFlagOpaque | kFlagImplicit | kFlagWhiteout | kFlagExtLink),
              0)
        << p;
  }
}

TEST_F(ViewMergeTest, HardlinksInOneLayerShareOneNode) {
  auto& l1 = Layer();
  Add(l1, "bin/a", File("prog"));
  Link(l1, "bin/b", "bin/a");
  Link(l1, "sbin/c", "bin/a");
  TreeNodePtr v = Merge();
  const TreeNode* a = Find(v, "bin/a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(Find(v, "bin/b"), a);
  EXPECT_EQ(Find(v, "sbin/c"), a);
}

TEST_F(ViewMergeTest, ReplacingOneNameOfAGroupKeepsTheOtherOnTheOldNode) {
  auto& l1 = Layer();
  Add(l1, "a", File("old"));
  Link(l1, "b", "a");
  Link(l1, "c", "a");
  Add(Layer(), "a", File("new"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Content(v, "a"), "new");
  EXPECT_EQ(Content(v, "b"), "old");
  EXPECT_EQ(Find(v, "b"), Find(v, "c"));
  EXPECT_NE(Find(v, "a"), Find(v, "b"));
}

TEST_F(ViewMergeTest, WhiteoutOfOneNameKeepsTheOtherName) {
  auto& l1 = Layer();
  Add(l1, "a", File("data"));
  Link(l1, "b", "a");
  Add(Layer(), ".wh.a", Whiteout());
  TreeNodePtr v = Merge();
  EXPECT_EQ(Names(v, ""), NameList({"b"}));
  EXPECT_EQ(Content(v, "b"), "data");
}

TEST_F(ViewMergeTest, ExternalHardlinkJoinsTheLowerNode) {
  Add(Layer(), "usr/bin/a", File("prog"));
  auto& l2 = Layer(/*allow_external_links=*/true);
  Link(l2, "usr/bin/b", "usr/bin/a");
  TreeNodePtr v = Merge();
  const TreeNode* a = Find(v, "usr/bin/a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(Find(v, "usr/bin/b"), a);
  EXPECT_EQ(a->node.flags & kFlagExtLink, 0);
}

TEST_F(ViewMergeTest, ExternalHardlinkUsesTheLayersBelowWhateverTheOrder) {
  // "z/link" sorts after "b/f", which this layer replaces after the link was
  // made: the link still names the file of the layers below.
  Add(Layer(), "b/f", File("v1"));
  auto& l2 = Layer(/*allow_external_links=*/true);
  Link(l2, "z/link", "b/f");
  Add(l2, "b/f", File("v2"));
  Link(l2, "a/link", "b/f");  // the new b/f is in this layer: an inner link
  TreeNodePtr v = Merge();
  EXPECT_EQ(Content(v, "b/f"), "v2");
  EXPECT_EQ(Content(v, "z/link"), "v1");
  EXPECT_EQ(Find(v, "a/link"), Find(v, "b/f"));
}

TEST_F(ViewMergeTest, ExternalHardlinkToAMissingTargetIsEnoent) {
  Add(Layer(), "a", File("a"));
  auto& l2 = Layer(/*allow_external_links=*/true);
  Link(l2, "b", "missing");
  auto v = TryMerge();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ENOENT);
}

TEST_F(ViewMergeTest, ExternalHardlinkToAWhitedOutTargetIsEnoent) {
  Add(Layer(), "a", File("a"));
  Add(Layer(), ".wh.a", Whiteout());
  auto& l3 = Layer(/*allow_external_links=*/true);
  Link(l3, "b", "a");
  auto v = TryMerge();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ENOENT);
}

TEST_F(ViewMergeTest, LayersAreNotModified) {
  auto& l1 = Layer();
  Add(l1, "d/a", File("a"));
  Add(Layer(), "d/a", File("b"));
  TreeNodePtr v = Merge();
  EXPECT_EQ(Content(layers_[0].root(), "d/a"), "a");
  EXPECT_NE(Find(v, "d"), Find(layers_[0].root(), "d"));
}

}  // namespace
}  // namespace strata::layerdb
