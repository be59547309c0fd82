#include "layerdb/base/error.h"

#include <string.h>

namespace strata {

Error Error::WithContext(const std::string& what) const {
  return Error(code_, op_, detail_.empty() ? what : what + ": " + detail_);
}

std::string Error::ToString() const {
  std::string s = op_;
  if (!detail_.empty()) s += ": " + detail_;
  const char* desc = strerrordesc_np(code_);
  s += ": ";
  s += desc != nullptr ? desc : "unknown error";
  return s;
}

}  // namespace strata
