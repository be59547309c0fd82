// Known answers for the hashers: a library swap (Nettle for libcrypto) or a
// streaming mistake must not change a digest that images are named by.

#include "layerdb/hash.h"

#include <algorithm>
#include <string>

#include <gtest/gtest.h>

namespace strata::layerdb {
namespace {

TEST(Sha256Test, KnownAnswers) {  // FIPS 180-2 examples
  EXPECT_EQ(Sha256::Of(""),
            "sha256:"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::Of("abc"),
            "sha256:"
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, PiecesGiveTheWholeDigest) {
  std::string data(1 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 131 + (i >> 9));
  Sha256 h;
  for (size_t off = 0, step = 1; off < data.size();
       off += step, step = step * 3 + 1)
    h.Update(data.data() + off, std::min(step, data.size() - off));
  EXPECT_EQ(h.FinishDigest(), Sha256::Of(data));
}

TEST(Xxh128Test, PiecesGiveTheWholeKey) {
  std::string data(100000, 'x');
  Xxh128 h;
  h.Update(data.data(), 4096);
  h.Update(data.data() + 4096, data.size() - 4096);
  EXPECT_EQ(h.Finish(), Xxh128::Of(data));
}

}  // namespace
}  // namespace strata::layerdb
