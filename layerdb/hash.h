#pragma once

// Streaming hashers: XXH3-128 (blob content addresses) and SHA-256 (OCI
// digests). Thin RAII wrappers over libxxhash and Nettle. Nettle rather
// than OpenSSL's libcrypto: linked into every `strata` command, libcrypto's
// 15,000 relocations and its CPU probing at load took about 0.4 ms of each
// start (a container start, a mount); Nettle's SHA-256 (SHA-NI where the CPU
// has it) ran at 1.5 GB/s here against libcrypto's 1.7, far above what
// decompressing a layer feeds it.
// Thread-safety: one hasher per thread.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "layerdb/base/digest.h"

struct XXH3_state_s;
struct sha256_ctx;

namespace strata::layerdb {

class Xxh128 {
 public:
  Xxh128();
  ~Xxh128();
  Xxh128(const Xxh128&) = delete;
  Xxh128& operator=(const Xxh128&) = delete;
  Xxh128(Xxh128&& o) noexcept : state_(o.state_) { o.state_ = nullptr; }
  Xxh128& operator=(Xxh128&&) = delete;

  void Update(const void* data, size_t len);
  // Returns the key with variant 0.
  BlobKey Finish();

  static BlobKey Of(std::string_view data);

 private:
  XXH3_state_s* state_;
};

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t len);
  // "sha256:<64 hex>"
  std::string FinishDigest();

  static std::string Of(std::string_view data);

 private:
  std::unique_ptr<sha256_ctx> ctx_;
};

}  // namespace strata::layerdb
