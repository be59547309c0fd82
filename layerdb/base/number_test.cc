#include "layerdb/base/number.h"

#include <sys/types.h>

#include <cstdint>

#include <gtest/gtest.h>

namespace strata {
namespace {

TEST(ParseNumberTest, TakesTheWholeStringOrNothing) {
  EXPECT_EQ(ParseNumber<uint64_t>("65536"), 65536u);
  EXPECT_EQ(ParseNumber<unsigned>("755", 8), 0755u);
  EXPECT_EQ(ParseNumber<pid_t>("42"), 42);
  EXPECT_FALSE(ParseNumber<uint64_t>(""));
  EXPECT_FALSE(ParseNumber<uint64_t>("12x"));
  EXPECT_FALSE(ParseNumber<uint64_t>(" 12"));
  EXPECT_FALSE(ParseNumber<uint64_t>("12\n"));
  EXPECT_FALSE(ParseNumber<uint32_t>("4294967296"));  // out of range
  EXPECT_FALSE(ParseNumber<unsigned>("-1"));
}

}  // namespace
}  // namespace strata
