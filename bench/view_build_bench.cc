// Building the merged view of an image (Store::CreateImage → EnsureView:
// load each layer tree, merge, write the view with readdir offsets, commit).
// Target: under a second for a 10,000-file, 5-layer image.
//
// Each iteration commits 5 fresh layers (untimed; a view is built once per
// distinct layer stack, so the same stack would hit the cache) and times
// CreateImage. The layers share 100 directories; each adds 2,000 files, and
// each layer above the first also replaces 100 files and whites out 20 of
// the layer below, so the view holds ~9,900 files. Real time: the commit
// includes an fsync. build_seconds is Store's own measurement (load, merge,
// write; no commit).

#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/bench_store.h"

namespace strata::bench {
namespace {

constexpr int kLayers = 5;
constexpr int kFilesPerLayer = 2000;
constexpr int kDirs = 100;

std::string FilePath(int layer, int i) {
  return Numbered("usr/share/d", i % kDirs) + "/" +
         Numbered("l" + std::to_string(layer) + "-f", i);
}

std::vector<layerdb::TreeId> CommitLayers(TempStore& s) {
  std::vector<layerdb::TreeId> ids;
  for (int l = 0; l < kLayers; ++l) {
    layerdb::LayerBuilder b;
    for (int i = 0; i < kFilesPerLayer; ++i)
      Add(b, FilePath(l, i),
          FileNode(static_cast<uint64_t>(i) * 100,
                   static_cast<uint32_t>(l * kFilesPerLayer + i)));
    if (l > 0) {
      for (int i = 0; i < 100; ++i)
        Add(b, FilePath(l - 1, i * 7), FileNode(1, static_cast<uint32_t>(i)));
      for (int i = 0; i < 20; ++i) {
        std::string p = FilePath(l - 1, i * 11 + 1);
        size_t slash = p.rfind('/');
        Add(b, p.substr(0, slash + 1) + ".wh." + p.substr(slash + 1),
            DirNode());
      }
    }
    ids.push_back(s.Commit(b));
  }
  return ids;
}

void BM_BuildView10kFiles5Layers(benchmark::State& state) {
  TempStore s;
  double build_seconds = 0;
  uint64_t inodes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<layerdb::TreeId> layers = CommitLayers(s);
    state.ResumeTiming();
    auto image =
        s.store().CreateImage("bench:1", layers, nlohmann::json::object());
    if (!image) {
      state.SkipWithError(image.error().ToString().c_str());
      break;
    }
    state.PauseTiming();
    auto view = Check(s.store().GetView(image->view), "get view");
    build_seconds += view->build_seconds;
    inodes = view->inodes;
    state.ResumeTiming();
  }
  state.counters["build_seconds"] =
      build_seconds / static_cast<double>(state.iterations());
  state.counters["view_inodes"] = static_cast<double>(inodes);
}
BENCHMARK(BM_BuildView10kFiles5Layers)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace
}  // namespace strata::bench
