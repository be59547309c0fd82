#include "layerdb/lifecycle.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "layerdb/base/sys.h"
#include "layerdb/base/temp_dir.h"
#include "layerdb/index.h"
#include "layerdb/keys.h"
#include "layerdb/layer_builder.h"
#include "layerdb/store.h"

namespace strata::layerdb {
namespace {

namespace fs = std::filesystem;

struct File {
  std::string path;
  std::string content;
  bool inline_data = false;
};

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = TempDir::Make("/tmp/strata-lifecycle-test.");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    dir_ = scratch_->path();
    auto s = Store::Open(dir_, Store::Mode::kReadWrite);
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    scratch_.reset();
  }

  // Commits a layer of regular files, blob-backed unless `inline_data`.
  LayerInfo AddLayer(const std::vector<File>& files,
                     const std::string& diff_id) {
    LayerBuilder b;
    for (const File& f : files) {
      Node n;
      n.attr.mode = S_IFREG | 0644;
      n.attr.size = f.content.size();
      if (f.inline_data) {
        n.flags |= kFlagInline;
        n.inline_data = f.content;
      } else {
        auto key = store_->blobs().Put(f.content);
        EXPECT_TRUE(key) << key.error().ToString();
        if (!key) return {};
        n.flags |= kFlagBlob;
        n.blob = *key;
      }
      Status s = b.Add(f.path, std::move(n));
      EXPECT_TRUE(s) << s.error().ToString();
    }
    LayerInfo meta;
    meta.diff_id = diff_id;
    auto l = store_->CommitLayer(b, meta);
    EXPECT_TRUE(l) << l.error().ToString();
    return l ? *l : LayerInfo{};
  }

  ImageInfo AddImage(const std::string& name,
                     const std::vector<TreeId>& layers) {
    auto img = store_->CreateImage(name, layers,
                                   nlohmann::json::object({{"n", name}}));
    EXPECT_TRUE(img) << img.error().ToString();
    return img ? *img : ImageInfo{};
  }

  std::string BlobPath(std::string_view content) {
    return store_->blobs().PathOf(Xxh128::Of(content));
  }

  GcReport Gc() {
    auto r = CollectGarbage(*store_);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : GcReport{};
  }

  FsckReport Fsck(bool repair) {
    auto r = CheckStore(*store_, repair);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : FsckReport{};
  }

  void WritePin(const std::string& name, TreeId id) {
    fs::create_directories(dir_ + "/pins");
    std::ofstream(dir_ + "/pins/" + name) << id << "\n";
  }

  std::optional<TempDir> scratch_;
  std::string dir_;
  std::unique_ptr<Store> store_;
};

bool Mentions(const FsckReport& r, const std::string& text) {
  for (const FsckProblem& p : r.problems) {
    if (p.what.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string Lines(const FsckReport& r) {
  std::string s;
  for (const FsckProblem& p : r.problems)
    s += (p.repaired ? "[repaired] " : "") + p.what + "\n";
  return s;
}

TEST_F(LifecycleTest, GcKeepsReferencedAndRemovesAfterRmi) {
  LayerInfo l =
      AddLayer({{"etc/a", "alpha"}, {"bin/b", "bravo!"}}, "sha256:l1");
  ImageInfo img = AddImage("a:1", {l.id});

  GcReport kept = Gc();
  EXPECT_EQ(kept.layers_removed, 0u);
  EXPECT_EQ(kept.views_removed, 0u);
  EXPECT_EQ(kept.blobs_removed, 0u);
  EXPECT_TRUE(fs::exists(BlobPath("alpha")));

  ASSERT_TRUE(store_->RemoveImage("a:1"));
  GcReport gone = Gc();
  EXPECT_EQ(gone.layers_removed, 1u);
  EXPECT_EQ(gone.views_removed, 1u);
  EXPECT_EQ(gone.blobs_removed, 2u);
  EXPECT_EQ(gone.bytes_freed, 11u);
  EXPECT_FALSE(fs::exists(BlobPath("alpha")));
  EXPECT_FALSE(fs::exists(BlobPath("bravo!")));
  EXPECT_TRUE(store_->ListLayers()->empty());
  EXPECT_TRUE(store_->ListViews()->empty());
  EXPECT_FALSE(store_->LoadTree(l.id));
  EXPECT_FALSE(store_->LoadTree(img.view));
  // The diff_id index is swept with the layer: the same content imports anew.
  LayerInfo again = AddLayer({{"etc/a", "alpha"}}, "sha256:l1");
  EXPECT_NE(again.id, l.id);
}

TEST_F(LifecycleTest, GcRemovesBlobsOfAKilledImport) {
  LayerInfo l = AddLayer({{"kept", "kept content"}}, "sha256:l1");
  AddImage("a:1", {l.id});
  // A killed import: blobs stored, layer never committed, a temp left over.
  ASSERT_TRUE(store_->blobs().Put("written but never committed"));
  std::string temp = store_->blobs().dir() + "/tmp/blob.abcdef";
  std::ofstream(temp) << "partial";

  GcReport r = Gc();
  EXPECT_EQ(r.blobs_removed, 1u);
  EXPECT_EQ(r.layers_removed, 0u);
  EXPECT_FALSE(fs::exists(BlobPath("written but never committed")));
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(fs::exists(BlobPath("kept content")));
}

TEST_F(LifecycleTest, GcKeepsPinnedViewAndDropsStalePins) {
  LayerInfo l1 = AddLayer({{"one", "content one"}}, "sha256:l1");
  LayerInfo l2 = AddLayer({{"two", "content two"}}, "sha256:l2");
  ImageInfo a = AddImage("a:1", {l1.id});
  ImageInfo b = AddImage("b:1", {l2.id});
  // A live process (us) pins a's view; a dead one pinned b's.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  WritePin(std::to_string(getpid()), a.view);
  WritePin(std::to_string(child), b.view);
  ASSERT_TRUE(store_->RemoveImage("a:1"));
  ASSERT_TRUE(store_->RemoveImage("b:1"));

  GcReport r = Gc();
  EXPECT_EQ(r.views_removed, 1u);
  EXPECT_EQ(r.layers_removed, 1u);
  EXPECT_TRUE(store_->LoadTree(a.view));
  EXPECT_TRUE(*store_->GetLayer(l1.id));  // a pinned view keeps its stack
  EXPECT_TRUE(fs::exists(BlobPath("content one")));
  EXPECT_FALSE(store_->LoadTree(b.view));
  EXPECT_FALSE(fs::exists(BlobPath("content two")));
  EXPECT_FALSE(fs::exists(dir_ + "/pins/" + std::to_string(child)));
}

TEST_F(LifecycleTest, GcRefusesAnUnreadablePin) {
  LayerInfo l = AddLayer({{"one", "content one"}}, "sha256:l1");
  AddImage("a:1", {l.id});
  fs::create_directories(dir_ + "/pins");
  std::ofstream(dir_ + "/pins/container-x") << "12abc\n";
  ASSERT_TRUE(store_->RemoveImage("a:1"));
  auto r = CollectGarbage(*store_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_NE(r.error().ToString().find("container-x"), std::string::npos);
  EXPECT_TRUE(fs::exists(BlobPath("content one")));
}

TEST_F(LifecycleTest, FsckOfAHealthyStoreFindsNothing) {
  LayerInfo l = AddLayer({{"a", "aaa"}, {"b", "tiny", true}}, "sha256:l1");
  AddImage("a:1", {l.id});
  FsckReport r = Fsck(false);
  EXPECT_TRUE(r.problems.empty()) << Lines(r);
  EXPECT_EQ(r.blobs_checked, 1u);
  // Layer: root, a, b. View: the same three.
  EXPECT_EQ(r.nodes_checked, 6u);
}

TEST_F(LifecycleTest, FsckFindsCorruptBlobAndRepairRemovesIt) {
  LayerInfo bad = AddLayer({{"etc/passwd", "root:x:0:0"}}, "sha256:bad");
  LayerInfo good = AddLayer({{"etc/group", "root:x:0:"}}, "sha256:good");
  AddImage("a:1", {bad.id});
  AddImage("b:1", {good.id});
  std::string path = BlobPath("root:x:0:0");
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  std::ofstream(path, std::ios::trunc) << "evil:x:0:0";

  FsckReport found = Fsck(false);
  EXPECT_TRUE(Mentions(found, Xxh128::Of("root:x:0:0").ToHex() + ": content"))
      << Lines(found);
  EXPECT_TRUE(Mentions(found, "image a:1")) << Lines(found);
  EXPECT_FALSE(Mentions(found, "b:1")) << Lines(found);
  for (const FsckProblem& p : found.problems)
    EXPECT_FALSE(p.repaired);
  EXPECT_TRUE(fs::exists(path));

  FsckReport fixed = Fsck(true);
  ASSERT_FALSE(fixed.problems.empty());
  for (const FsckProblem& p : fixed.problems)
    EXPECT_TRUE(p.repaired) << p.what;
  EXPECT_TRUE(Mentions(fixed, "removed image a:1")) << Lines(fixed);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(*store_->FindImage("a:1"));
  EXPECT_FALSE(*store_->GetLayer(bad.id));
  EXPECT_TRUE(*store_->FindImage("b:1"));

  FsckReport after = Fsck(false);
  EXPECT_TRUE(after.problems.empty()) << Lines(after);
}

TEST_F(LifecycleTest, FsckFindsMissingBlobAndRepairRemovesTheImage) {
  LayerInfo l = AddLayer({{"x", "some bytes"}}, "sha256:l1");
  AddImage("a:1", {l.id});
  ASSERT_EQ(unlink(BlobPath("some bytes").c_str()), 0);
  FsckReport r = Fsck(false);
  EXPECT_TRUE(Mentions(
      r, "layer " + std::to_string(l.id) + " (l1): inode 2 uses missing blob"))
      << Lines(r);
  EXPECT_TRUE(Mentions(r, "image a:1")) << Lines(r);
  FsckReport fixed = Fsck(true);
  EXPECT_TRUE(Mentions(fixed, "removed image a:1")) << Lines(fixed);
  EXPECT_TRUE(Fsck(false).problems.empty());
}

TEST_F(LifecycleTest, FsckFindsAnImageWhoseLayerIsMissing) {
  LayerInfo l1 = AddLayer({{"x", "one"}}, "sha256:l1");
  LayerInfo l2 = AddLayer({{"y", "two"}}, "sha256:l2");
  AddImage("a:1", {l1.id, l2.id});
  {
    // What a bug or a hand-edited index could leave behind.
    auto txn = store_->index().BeginWrite();
    ASSERT_TRUE(txn);
    std::string key;
    keys::PutBE64(key, l2.id);
    ASSERT_TRUE(*txn->Del(store_->index().dbis().layers, key));
    ASSERT_TRUE(std::move(*txn).Commit());
  }
  FsckReport r = Fsck(false);
  EXPECT_TRUE(
      Mentions(r, "image a:1: layer " + std::to_string(l2.id) + " is missing"))
      << Lines(r);
  FsckReport fixed = Fsck(true);
  EXPECT_TRUE(Mentions(fixed, "removed image a:1")) << Lines(fixed);
  EXPECT_FALSE(*store_->FindImage("a:1"));
  // The layer's tree records, now orphans, went with the repair.
  FsckReport after = Fsck(false);
  EXPECT_TRUE(after.problems.empty()) << Lines(after);
}

TEST_F(LifecycleTest, FsckReportsStrayFilesWithoutRemovingThem) {
  std::string stray = store_->blobs().dir() + "/ab/not-a-blob";
  std::ofstream(stray) << "x";
  FsckReport r = Fsck(true);
  ASSERT_EQ(r.problems.size(), 1u) << Lines(r);
  EXPECT_NE(r.problems[0].what.find("not-a-blob"), std::string::npos);
  EXPECT_FALSE(r.problems[0].repaired);
  EXPECT_TRUE(fs::exists(stray));
}

TEST_F(LifecycleTest, DfCountsASharedBaseLayerOnce) {
  std::string base_bytes(2000, 'b'), top_bytes(3000, 't');
  LayerInfo base = AddLayer(
      {{"usr/base", base_bytes}, {"etc/hostname", "hi", true}}, "sha256:base");
  LayerInfo top = AddLayer({{"app/top", top_bytes}}, "sha256:top");
  AddImage("base:1", {base.id});
  AddImage("app:1", {base.id, top.id});

  auto du = MeasureDiskUsage(*store_);
  ASSERT_TRUE(du) << du.error().ToString();
  EXPECT_EQ(du->images, 2u);
  EXPECT_EQ(du->layers, 2u);
  EXPECT_EQ(du->blobs, 2u);
  EXPECT_EQ(du->logical_bytes, 2002u + 5002u);
  EXPECT_EQ(du->layer_bytes, 2002u + 3000u);
  EXPECT_EQ(du->blob_bytes, 5000u);
  EXPECT_EQ(du->inline_bytes, 2u);
  EXPECT_GT(du->index_bytes, 0u);
  EXPECT_EQ(du->stored_bytes, du->blob_bytes + du->index_bytes);
  EXPECT_EQ(du->dedup_saved, 7004u - 5000u - 2u);
}

TEST_F(LifecycleTest, StoreOfANewerFormatIsRefused) {
  store_.reset();
  {
    auto index = Index::Open(dir_ + "/index", true);
    ASSERT_TRUE(index) << index.error().ToString();
    auto txn = index->BeginWrite();
    ASSERT_TRUE(txn);
    std::string v;
    keys::PutBE32(v, 99);
    ASSERT_TRUE(txn->Put(index->dbis().meta, "format", v));
    ASSERT_TRUE(std::move(*txn).Commit());
  }
  for (auto mode : {Store::Mode::kReadOnly, Store::Mode::kReadWrite}) {
    auto s = Store::Open(dir_, mode);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code(), ENOTSUP);
    EXPECT_NE(s.error().ToString().find("format 99"), std::string::npos)
        << s.error().ToString();
  }
}

}  // namespace
}  // namespace strata::layerdb
