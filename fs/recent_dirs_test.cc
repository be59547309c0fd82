#include "fs/recent_dirs.h"

#include <fcntl.h>

#include <string>

#include <gtest/gtest.h>

namespace strata::fs {
namespace {

Result<UniqueFd> OpenRoot(int* opens) {
  ++*opens;
  return UniqueFd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
}

TEST(RecentDirsTest, OpensADirectoryOnceWhileItIsRecent) {
  RecentDirs dirs;
  int opens = 0;
  auto a = dirs.Get(0, "usr/bin", [&] { return OpenRoot(&opens); });
  auto b = dirs.Get(0, "usr/bin", [&] { return OpenRoot(&opens); });
  ASSERT_TRUE(a && b);
  EXPECT_EQ(opens, 1);
  EXPECT_EQ(a->get(), b->get());
  // Another layer's directory of the same path is another directory.
  auto c = dirs.Get(1, "usr/bin", [&] { return OpenRoot(&opens); });
  ASSERT_TRUE(c);
  EXPECT_EQ(opens, 2);
}

TEST(RecentDirsTest, EvictedFdsStayValidForTheirHolders) {
  RecentDirs dirs;
  int opens = 0;
  auto first = dirs.Get(0, "d0", [&] { return OpenRoot(&opens); });
  ASSERT_TRUE(first);
  for (int i = 1; i <= 8; ++i)
    ASSERT_TRUE(
        dirs.Get(0, "d" + std::to_string(i), [&] { return OpenRoot(&opens); }));
  EXPECT_EQ(opens, 9);
  EXPECT_GE(::fcntl((*first)->get(), F_GETFD), 0);  // still open
  ASSERT_TRUE(dirs.Get(0, "d0", [&] { return OpenRoot(&opens); }));
  EXPECT_EQ(opens, 10);  // evicted, opened again
}

TEST(RecentDirsTest, AFailedOpenIsReturnedAndNotKept) {
  RecentDirs dirs;
  int calls = 0;
  auto fail = [&]() -> Result<UniqueFd> {
    ++calls;
    return Error(ENOENT, "openat2", "layer 0/gone");
  };
  auto r = dirs.Get(0, "gone", fail);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
  EXPECT_FALSE(dirs.Get(0, "gone", fail));
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace strata::fs
