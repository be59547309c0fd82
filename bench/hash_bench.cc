// Content hashing: XXH3-128 (blob addresses, layerdb/hash.h) at 4 KiB,
// 64 KiB and 1 MiB, with SHA-256 (OCI digests, and the dedup confirmation
// considered in field-notes §6) beside it for comparison.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include <benchmark/benchmark.h>

#include "layerdb/hash.h"

namespace strata::bench {
namespace {

std::string Data(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u;
  for (char& c : s) {  // xorshift: incompressible, not all zeros
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

void BM_Xxh3_128(benchmark::State& state) {
  const std::string data = Data(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    BlobKey k = layerdb::Xxh128::Of(data);
    benchmark::DoNotOptimize(k);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Xxh3_128)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);

// The streaming form BlobStore::Writer uses (64 KiB updates).
void BM_Xxh3_128Streaming(benchmark::State& state) {
  const std::string data = Data(static_cast<size_t>(state.range(0)));
  constexpr size_t kChunk = 64 << 10;
  for (auto _ : state) {
    layerdb::Xxh128 h;
    for (size_t off = 0; off < data.size(); off += kChunk)
      h.Update(data.data() + off, std::min(kChunk, data.size() - off));
    BlobKey k = h.Finish();
    benchmark::DoNotOptimize(k);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Xxh3_128Streaming)->Arg(1 << 20);

void BM_Sha256(benchmark::State& state) {
  const std::string data = Data(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    layerdb::Sha256 h;
    h.Update(data.data(), data.size());
    std::string d = h.FinishDigest();
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Sha256)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);

}  // namespace
}  // namespace strata::bench
