#include "layerdb/hash.h"

#include <new>

#include <openssl/evp.h>
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

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) throw std::bad_alloc();
  EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}

void Sha256::Update(const void* data, size_t len) {
  EVP_DigestUpdate(ctx_, data, len);
}

std::string Sha256::FinishDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  return "sha256:" + HexEncode(md, len);
}

std::string Sha256::Of(std::string_view data) {
  Sha256 h;
  h.Update(data.data(), data.size());
  return h.FinishDigest();
}

}  // namespace strata::layerdb
