#pragma once

// HashingInput: the raw bytes of an import source, for a libarchive reader
// (archive_read_open with HashingRead), hashed on the way: the sha256 of a
// layer file as given is its OCI blob digest. Internal to layerdb; used by
// the tar importer and the OCI importer's verification pass.

#include <cstdint>
#include <vector>

#include <archive.h>

#include "layerdb/hash.h"
#include "layerdb/importers.h"

namespace strata::layerdb {

struct HashingInput {
  HashingInput(int f, const ImportOptions* o, uint64_t t)
      : fd(f), opts(o), total(t) {}

  int fd;
  const ImportOptions* opts;
  uint64_t total;  // for progress; 0 if unknown
  uint64_t done = 0;
  Sha256 digest;
  std::vector<char> buf = std::vector<char>(size_t{1} << 20);
  int error = 0;  // errno of a failed read(2), so callers report it exactly
};

// libarchive read callback; `data` is a HashingInput.
la_ssize_t HashingRead(archive* a, void* data, const void** out);

}  // namespace strata::layerdb
