#pragma once

// Shared set-up for the layerdb benchmarks: a store in a temporary directory
// (removed at exit) and small helpers to fill it. Not a benchmark itself.
//
// Temp dirs go under $STRATA_BENCH_DIR, else /var/tmp (a disk, like a real
// store; /tmp may be tmpfs and flatter blob opens).

#include <stdlib.h>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerdb/base/sys.h"
#include "layerdb/layer_builder.h"
#include "layerdb/store.h"
#include "layerdb/tree_reader.h"

namespace strata::bench {

// Aborts the benchmark binary with a message; set-up failures are fatal.
template <class T>
T Check(Result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "bench set-up failed: %s: %s\n", what,
                 r.error().ToString().c_str());
    std::abort();
  }
  return std::move(*r);
}
inline void Check(const Status& s, const char* what) {
  if (!s) {
    std::fprintf(stderr, "bench set-up failed: %s: %s\n", what,
                 s.error().ToString().c_str());
    std::abort();
  }
}

class TempStore {
 public:
  TempStore() {
    const char* base = std::getenv("STRATA_BENCH_DIR");
    std::string tmpl = std::string(base != nullptr ? base : "/var/tmp") +
                       "/strata-bench.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir_ = buf.data();
    store_ = Check(layerdb::Store::Open(dir_, layerdb::Store::Mode::kReadWrite),
                   "open");
  }
  ~TempStore() {
    store_.reset();
    (void)sys::RemoveTree(dir_);
  }
  TempStore(const TempStore&) = delete;
  TempStore& operator=(const TempStore&) = delete;
  TempStore(TempStore&&) = delete;
  TempStore& operator=(TempStore&&) = delete;

  layerdb::Store& store() { return *store_; }
  const std::string& dir() const { return dir_; }

  layerdb::TreeId Commit(const layerdb::LayerBuilder& b) {
    return Check(store_->CommitLayer(b, layerdb::LayerInfo{}), "commit").id;
  }
  layerdb::TreeId View(const std::vector<layerdb::TreeId>& layers,
                       std::string_view name = "bench:1") {
    return Check(store_->CreateImage(name, layers, nlohmann::json::object()),
                 "create image")
        .view;
  }
  layerdb::TreeReader Reader() const {
    return Check(layerdb::TreeReader::Begin(*store_), "begin");
  }

 private:
  std::string dir_;
  std::unique_ptr<layerdb::Store> store_;
};

inline layerdb::Node FileNode(uint64_t size, uint32_t seed) {
  layerdb::Node n;
  n.attr.mode = S_IFREG | 0644;
  n.attr.size = size;
  n.attr.mtime_ns = 1700000000000000000 + seed;
  // A blob reference the benchmarks never open: only the record matters.
  n.flags = layerdb::kFlagBlob;
  n.blob.hash[0] = static_cast<uint8_t>(seed);
  n.blob.hash[1] = static_cast<uint8_t>(seed >> 8);
  n.blob.hash[2] = static_cast<uint8_t>(seed >> 16);
  return n;
}

inline layerdb::Node DirNode() {
  layerdb::Node n;
  n.attr.mode = S_IFDIR | 0755;
  return n;
}

inline void Add(layerdb::LayerBuilder& b, std::string_view path,
                layerdb::Node n) {
  Check(b.Add(path, std::move(n)), "add");
}

// "prefix%05d"
inline std::string Numbered(std::string_view prefix, int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%05d", i);
  return std::string(prefix) + buf;
}

}  // namespace strata::bench
