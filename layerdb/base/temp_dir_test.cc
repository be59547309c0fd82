#include "layerdb/base/temp_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <utility>

#include <gtest/gtest.h>

namespace strata {
namespace {

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

TEST(TempDirTest, IsMadeAndRemovedWithItsContents) {
  std::string path;
  {
    auto d = TempDir::Make("/tmp/strata-temp-dir-test.");
    ASSERT_TRUE(d) << d.error().ToString();
    path = d->path();
    EXPECT_EQ(path.rfind("/tmp/strata-temp-dir-test.", 0), 0u);
    ASSERT_EQ(::mkdir((path + "/sub").c_str(), 0700), 0);
    std::ofstream(path + "/sub/file") << "x";
    TempDir moved = std::move(*d);
    EXPECT_EQ(moved.path(), path);
    EXPECT_TRUE(Exists(path + "/sub/file"));
  }
  EXPECT_FALSE(Exists(path));
}

TEST(TempDirTest, ReportsWhereItCannotBeMade) {
  auto d = TempDir::Make("/nonexistent-parent/strata.");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ENOENT);
}

}  // namespace
}  // namespace strata
