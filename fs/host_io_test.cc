#include "fs/host_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "layerdb/base/temp_dir.h"

namespace strata::fs::host {
namespace {

// A scratch directory on disk (direct I/O needs a filesystem that has it:
// /var/tmp rather than a tmpfs /tmp).
class CopyDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = TempDir::Make("/var/tmp/strata-host-io-");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    dir_ = scratch_->path();
  }

  UniqueFd Make(const std::string& name, const std::string& bytes, off_t at) {
    auto fd = OpenAt(AT_FDCWD, dir_ + "/" + name, O_CREAT | O_RDWR, 0600);
    EXPECT_TRUE(fd);
    EXPECT_EQ(::pwrite(fd->get(), bytes.data(), bytes.size(), at),
              static_cast<ssize_t>(bytes.size()));
    return std::move(*fd);
  }

  std::string ReadAll(int fd, size_t size) {
    std::string out(size, '\0');
    EXPECT_EQ(::pread(fd, out.data(), size, 0), static_cast<ssize_t>(size));
    return out;
  }

  std::optional<TempDir> scratch_;
  std::string dir_;
};

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

// Aligned blocks by direct I/O, an unaligned tail through the page cache,
// and a hole in the middle: the copy reads back byte for byte, both ways.
TEST_F(CopyDataTest, DurableAndPlainCopiesAreExact) {
  const std::string head = Pattern((1 << 20) + 4096 * 3);
  const std::string tail = Pattern(12345);
  const off_t tail_at = 8 << 20;  // a hole between head and tail
  UniqueFd src = Make("src", head, 0);
  ASSERT_EQ(::pwrite(src.get(), tail.data(), tail.size(), tail_at),
            static_cast<ssize_t>(tail.size()));
  const size_t size = static_cast<size_t>(tail_at) + tail.size();
  std::string want = head + std::string(tail_at - head.size(), '\0') + tail;
  for (bool durable : {true, false}) {
    std::string name = durable ? "durable" : "plain";
    UniqueFd dst = Make(name, "", 0);
    ASSERT_TRUE(CopyData(src.get(), dst.get(), size, durable)) << name;
    EXPECT_TRUE(ReadAll(dst.get(), size) == want) << name;
    // The target fd is left as it was given (no O_DIRECT).
    EXPECT_EQ(::fcntl(dst.get(), F_GETFL) & O_DIRECT, 0) << name;
  }
}

}  // namespace
}  // namespace strata::fs::host
