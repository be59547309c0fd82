#include "layerdb/base/function_ref.h"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace strata {
namespace {

int Twice(FunctionRef<int(int)> fn, int x) {
  return fn(fn(x));
}

void Each(FunctionRef<bool(std::string_view)> fn) {
  for (std::string_view s : {"a", "b", "c"})
    if (!fn(s)) return;
}

int AddOne(int x) {
  return x + 1;
}

TEST(FunctionRefTest, CallsALambdaWithState) {
  int calls = 0;
  auto add = [&](int x) {
    ++calls;
    return x + 10;
  };
  EXPECT_EQ(Twice(add, 1), 21);
  EXPECT_EQ(calls, 2);
}

TEST(FunctionRefTest, BindsATemporaryForTheCall) {
  std::vector<std::string> seen;
  Each([&](std::string_view s) {
    seen.emplace_back(s);
    return s != "b";
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
}

TEST(FunctionRefTest, CallsAFunctionPointerAndConstCallable) {
  EXPECT_EQ(Twice(&AddOne, 1), 3);
  const auto times3 = [](int x) { return x * 3; };
  EXPECT_EQ(Twice(times3, 1), 9);
}

TEST(FunctionRefTest, VoidResultDiscardsTheCallablesValue) {
  int n = 0;
  auto inc = [&] { return ++n; };
  FunctionRef<void()> fn(inc);
  fn();
  fn();
  EXPECT_EQ(n, 2);
}

TEST(FunctionRefTest, CopiesReferToTheSameCallable) {
  int n = 0;
  auto inc = [&](int by) { return n += by; };
  FunctionRef<int(int)> a(inc);
  FunctionRef<int(int)> b = a;
  a(1);
  b(2);
  EXPECT_EQ(n, 3);
}

}  // namespace
}  // namespace strata
