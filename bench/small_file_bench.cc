// Small regular files: inline in the index vs a blob file. This measurement
// sets layerdb/node.h kInlineMaxBytes.
//
//  BM_SmallFileInline   one read txn + node get + copy of the inline bytes
//  BM_SmallFileBlob     open + read + close of the blob file
//  BM_OpenContent*      the filesystem's whole open path through
//                       TreeReader::OpenContent (txn + get, then a copy of
//                       the inline bytes, or open + pread + close of the blob)
//  BM_GetAttrInlineLoad getattr over 10,000 files that each carry N inline
//                       bytes: what inlining costs every metadata probe
//                       (bigger records, fewer per B-tree page); the
//                       counter index_bytes_per_file is what one file adds
//                       to the index (its layer record plus its view record)
//
// Each size has 256 distinct files, visited round robin, all warm in the
// page cache (the steady state of a running container).

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/bench_store.h"

namespace strata::bench {
namespace {

using layerdb::TreeReader;

constexpr int kFilesPerSize = 256;
constexpr std::array<int64_t, 4> kSizes = {256, 1024, 4096, 16384};

std::string Content(size_t size, int seed) {
  std::string s(size, '\0');
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

struct SmallFileFixture {
  struct Files {
    std::vector<uint64_t> inline_inos;
    std::vector<uint64_t> blob_inos;
    std::vector<BlobKey> blob_keys;
  };

  SmallFileFixture() {
    layerdb::LayerBuilder b;
    for (int64_t size : kSizes) {
      for (int i = 0; i < kFilesPerSize; ++i) {
        std::string data = Content(static_cast<size_t>(size), i);
        layerdb::Node in;
        in.attr.mode = S_IFREG | 0644;
        in.attr.size = data.size();
        in.flags = layerdb::kFlagInline;
        in.inline_data = data;
        Add(b, Name("inline", size, i), std::move(in));
        layerdb::Node bl;
        bl.attr.mode = S_IFREG | 0644;
        bl.attr.size = data.size();
        bl.flags = layerdb::kFlagBlob;
        bl.blob = Check(store.store().blobs().Put(data), "put");
        files[size].blob_keys.push_back(bl.blob);
        Add(b, Name("blob", size, i), std::move(bl));
      }
    }
    view = store.View({store.Commit(b)});
    TreeReader r = store.Reader();
    for (int64_t size : kSizes) {
      for (int i = 0; i < kFilesPerSize; ++i) {
        files[size].inline_inos.push_back(Resolve(r, Name("inline", size, i)));
        files[size].blob_inos.push_back(Resolve(r, Name("blob", size, i)));
      }
    }
  }

  static std::string Name(const char* kind, int64_t size, int i) {
    return std::string(kind) + "/" + std::to_string(size) + "/" +
           Numbered("f", i);
  }
  uint64_t Resolve(const TreeReader& r, const std::string& path) const {
    uint64_t ino = layerdb::kRootIno;
    for (auto comp : Check(layerdb::SplitMemberPath(path), "split"))
      ino = Check(r.Lookup(view, ino, comp), "lookup")->ino;
    return ino;
  }

  TempStore store;
  layerdb::TreeId view = 0;
  std::map<int64_t, Files> files;
};

SmallFileFixture& Fixture() {
  static SmallFileFixture f;
  return f;
}

void BM_SmallFileInline(benchmark::State& state) {
  SmallFileFixture& f = Fixture();
  const auto& inos = f.files[state.range(0)].inline_inos;
  std::vector<char> buf(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    TreeReader r = f.store.Reader();
    auto node = r.GetNode(f.view, inos[i++ % inos.size()]);
    if (!node || !*node) {
      state.SkipWithError("get failed");
      break;
    }
    std::string_view data = (*node)->inline_data();
    std::memcpy(buf.data(), data.data(), data.size());
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_SmallFileBlob(benchmark::State& state) {
  SmallFileFixture& f = Fixture();
  const auto& keys = f.files[state.range(0)].blob_keys;
  std::vector<std::byte> buf(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    auto fd = f.store.store().blobs().OpenBlob(keys[i++ % keys.size()]);
    if (!fd) {
      state.SkipWithError("open failed");
      break;
    }
    auto n = sys::ReadFull(fd->get(), buf);
    if (!n || *n != buf.size()) {
      state.SkipWithError("short read");
      break;
    }
    benchmark::DoNotOptimize(buf.data());
  }  // close
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_OpenContentInline(benchmark::State& state) {
  SmallFileFixture& f = Fixture();
  const auto& inos = f.files[state.range(0)].inline_inos;
  std::vector<char> buf(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    TreeReader r = f.store.Reader();
    auto c = r.OpenContent(f.view, inos[i++ % inos.size()]);
    if (!c || c->in_blob()) {
      state.SkipWithError("open failed");
      break;
    }
    std::memcpy(buf.data(), c->inline_data.data(), c->inline_data.size());
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_OpenContentBlob(benchmark::State& state) {
  SmallFileFixture& f = Fixture();
  const auto& inos = f.files[state.range(0)].blob_inos;
  std::vector<std::byte> buf(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    TreeReader r = f.store.Reader();
    auto c = r.OpenContent(f.view, inos[i++ % inos.size()]);
    if (!c || !c->in_blob()) {
      state.SkipWithError("open failed");
      break;
    }
    auto n = sys::PreadFull(c->fd.get(), buf, 0);
    if (!n || *n != buf.size()) {
      state.SkipWithError("short read");
      break;
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void SizeArgs(benchmark::internal::Benchmark* b) {
  for (int64_t size : kSizes)
    b->Arg(size);
}
BENCHMARK(BM_SmallFileInline)->Apply(SizeArgs);
BENCHMARK(BM_SmallFileBlob)->Apply(SizeArgs);
BENCHMARK(BM_OpenContentInline)->Apply(SizeArgs);
BENCHMARK(BM_OpenContentBlob)->Apply(SizeArgs);

// getattr over 10,000 files carrying N inline bytes each.
struct LoadFixture {
  explicit LoadFixture(int64_t inline_bytes) {
    const std::string mdb = store.dir() + "/index/data.mdb";
    const auto before = Check(sys::Lstat(mdb), "stat").st_size;
    layerdb::LayerBuilder b;
    for (int i = 0; i < kFiles; ++i) {
      layerdb::Node n;
      n.attr.mode = S_IFREG | 0644;
      if (inline_bytes > 0) {
        n.flags = layerdb::kFlagInline;
        n.inline_data = Content(static_cast<size_t>(inline_bytes), i);
        n.attr.size = n.inline_data.size();
      }
      Add(b, Numbered("d/f", i), std::move(n));
    }
    view = store.View({store.Commit(b)});
    const auto after = Check(sys::Lstat(mdb), "stat").st_size;
    bytes_per_file = static_cast<double>(after - before) / kFiles;
    TreeReader r = store.Reader();
    uint64_t d = Check(r.Lookup(view, layerdb::kRootIno, "d"), "lookup")->ino;
    Check(r.ReadDir(view, d, 0,
                    [&](const layerdb::DirEntry& e) {
                      inos.push_back(e.ino);
                      return true;
                    }),
          "readdir");
    std::mt19937 rng(7);
    std::shuffle(inos.begin(), inos.end(), rng);
  }

  static constexpr int kFiles = 10000;
  TempStore store;
  layerdb::TreeId view = 0;
  std::vector<uint64_t> inos;
  double bytes_per_file = 0;
};

void BM_GetAttrInlineLoad(benchmark::State& state) {
  static std::map<int64_t, std::unique_ptr<LoadFixture>> fixtures;
  auto& f = fixtures[state.range(0)];
  if (!f) f = std::make_unique<LoadFixture>(state.range(0));
  TreeReader r = f->store.Reader();
  size_t i = 0;
  for (auto _ : state) {
    auto a = r.GetAttr(f->view, f->inos[i++ % f->inos.size()]);
    if (!a || !*a) {
      state.SkipWithError("getattr missed");
      break;
    }
    benchmark::DoNotOptimize(a);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["index_bytes_per_file"] = f->bytes_per_file;
}
BENCHMARK(BM_GetAttrInlineLoad)
    ->Arg(0)
    ->Arg(512)
    ->Arg(1024)
    ->Arg(1536)
    ->Arg(1900)
    ->Arg(2048)
    ->Arg(4096);

}  // namespace
}  // namespace strata::bench
