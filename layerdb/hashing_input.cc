#include "layerdb/hashing_input.h"

#include <errno.h>
#include <unistd.h>

namespace strata::layerdb {

la_ssize_t HashingRead(archive*, void* data, const void** out) {
  auto* in = static_cast<HashingInput*>(data);
  for (;;) {
    ssize_t n = ::read(in->fd, in->buf.data(), in->buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      in->error = errno;
      return -1;
    }
    in->digest.Update(in->buf.data(), static_cast<size_t>(n));
    in->done += static_cast<uint64_t>(n);
    if (in->opts->progress) in->opts->progress(in->done, in->total);
    *out = in->buf.data();
    return n;
  }
}

}  // namespace strata::layerdb
