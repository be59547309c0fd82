#include "layerdb/blob_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "layerdb/base/sys.h"
#include "layerdb/base/temp_dir.h"

namespace strata::layerdb {
namespace {

constexpr size_t kSparseSize = 16u << 20;

// 16 MiB with 64 KiB of data: 16 blocks of 4 KiB, some aligned, some not
// (those dirty two blocks), and the last bytes non-zero.
std::string SparseContent() {
  std::string data(kSparseSize, '\0');
  for (size_t i = 0; i < 16; ++i) {
    size_t at = i * (1u << 20) + (i % 2 == 0 ? 0 : 1000);
    if (i == 15) at = kSparseSize - 4096;
    for (size_t j = 0; j < 4096; ++j)
      data[at + j] = static_cast<char>('a' + (i + j) % 26);
  }
  return data;
}

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = TempDir::Make("/tmp/blob_store_test.");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    dir_ = scratch_->path();
    auto blobs = BlobStore::Open(dir_ + "/blobs");
    ASSERT_TRUE(blobs) << blobs.error().ToString();
    blobs_.emplace(std::move(*blobs));
  }
  void TearDown() override {
    blobs_.reset();
    scratch_.reset();
  }

  // False where the test directory's filesystem fills holes in.
  bool KeepsHoles() {
    std::string probe = dir_ + "/hole-probe";
    auto fd = sys::Open(probe, O_RDWR | O_CREAT, 0644);
    if (!fd || ::ftruncate(fd->get(), 1 << 20) != 0) return false;
    auto st = sys::Fstat(fd->get());
    ::unlink(probe.c_str());
    return st && st->st_blocks == 0;
  }

  // Bytes the blob takes on disk, and its content.
  uint64_t DiskBytes(const BlobKey& key) {
    struct stat st {};
    EXPECT_EQ(::stat(blobs_->PathOf(key).c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  std::string Content(const BlobKey& key) {
    auto data = sys::ReadFile(blobs_->PathOf(key));
    EXPECT_TRUE(data) << data.error().ToString();
    return data ? *data : "";
  }

  std::optional<TempDir> scratch_;
  std::string dir_;
  std::optional<BlobStore> blobs_;
};

TEST_F(BlobStoreTest, PutLeavesZeroBlocksAsHoles) {
  if (!KeepsHoles()) GTEST_SKIP() << "no sparse files on " << dir_;
  const std::string data = SparseContent();
  auto key = blobs_->Put(data);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ(*key, Xxh128::Of(data));
  EXPECT_LT(DiskBytes(*key), 1u << 20);
  EXPECT_EQ(Content(*key), data);
}

TEST_F(BlobStoreTest, WriterLeavesHolesWhateverThePieces) {
  if (!KeepsHoles()) GTEST_SKIP() << "no sparse files on " << dir_;
  const std::string data = SparseContent();
  auto w = blobs_->NewWriter();
  ASSERT_TRUE(w) << w.error().ToString();
  // Pieces that straddle block boundaries: 1, 4095, 4097, 100000, ...
  const size_t pieces[] = {1, 4095, 4097, 100000, 3, 1 << 20};
  std::string_view rest = data;
  for (size_t i = 0; !rest.empty(); ++i) {
    size_t n = std::min(pieces[i % std::size(pieces)], rest.size());
    ASSERT_TRUE(w->Write(rest.substr(0, n)));
    rest.remove_prefix(n);
  }
  EXPECT_EQ(w->size(), data.size());
  auto key = w->Commit();
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ(*key, Xxh128::Of(data));
  EXPECT_LT(DiskBytes(*key), 1u << 20);
  EXPECT_EQ(Content(*key), data);

  // The same bytes again dedup onto the sparse blob after a byte compare.
  auto again = blobs_->Put(data);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(*again, *key);
  EXPECT_EQ(again->variant, 0u);
}

TEST_F(BlobStoreTest, TrailingZerosKeepTheSize) {
  // A data block, then zeros to an odd size: the end is a hole that only
  // ftruncate makes part of the file.
  std::string data(3 * 4096 + 123, '\0');
  data.replace(0, 5, "start");
  auto put = blobs_->Put(data);
  ASSERT_TRUE(put) << put.error().ToString();
  EXPECT_EQ(Content(*put), data);

  std::string streamed = data + std::string(1 << 20, '\0');
  auto w = blobs_->NewWriter();
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write(streamed.substr(0, 7)));
  ASSERT_TRUE(w->Write(streamed.substr(7)));
  auto key = w->Commit();
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ(Content(*key), streamed);

  std::string zeros(10000, '\0');
  auto z = blobs_->Put(zeros);
  ASSERT_TRUE(z);
  EXPECT_EQ(Content(*z), zeros);
}

TEST_F(BlobStoreTest, DenseContentReadsBack) {
  std::string data;
  for (size_t i = 0; i < 3 * 4096 + 17; ++i)
    data.push_back(static_cast<char>(i % 251 + 1));
  auto key = blobs_->Put(data);
  ASSERT_TRUE(key);
  EXPECT_EQ(Content(*key), data);
  auto w = blobs_->NewWriter();
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write(data));
  auto again = w->Commit();
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *key);
}

}  // namespace
}  // namespace strata::layerdb
