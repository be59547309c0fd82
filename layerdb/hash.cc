#include "layerdb/hash.h"

#include <nettle/sha2.h>

#include <new>

#include <xxhash.h>

namespace strata::layerdb {

Xxh128::Xxh128() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  XXH3_128bits_reset(state_);
}

Xxh128::~Xxh128() {
  if (state_ != nullptr) XXH3_freeState(state_);
}

void Xxh128::Update(const void* data, size_t len) {
  XXH3_128bits_update(state_, data, len);
}

namespace {
BlobKey FromHash(XXH128_hash_t h) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  BlobKey k;
  static_assert(sizeof c.digest == 16);
  for (size_t i = 0; i < 16; ++i)
    k.hash[i] = c.digest[i];
  return k;
}
}  // namespace

BlobKey Xxh128::Finish() {
  return FromHash(XXH3_128bits_digest(state_));
}

BlobKey Xxh128::Of(std::string_view data) {
  return FromHash(XXH3_128bits(data.data(), data.size()));
}

Sha256::Sha256() : ctx_(std::make_unique<sha256_ctx>()) {
  sha256_init(ctx_.get());
}

Sha256::~Sha256() = default;

void Sha256::Update(const void* data, size_t len) {
  sha256_update(ctx_.get(), len, static_cast<const uint8_t*>(data));
}

std::string Sha256::FinishDigest() {
  uint8_t md[SHA256_DIGEST_SIZE];
  sha256_digest(ctx_.get(), sizeof md, md);
  return "sha256:" + HexEncode(md, sizeof md);
}

std::string Sha256::Of(std::string_view data) {
  Sha256 h;
  h.Update(data.data(), data.size());
  return h.FinishDigest();
}

}  // namespace strata::layerdb
