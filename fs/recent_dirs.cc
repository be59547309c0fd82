#include "fs/recent_dirs.h"

namespace strata::fs {

Result<std::shared_ptr<const UniqueFd>> RecentDirs::Get(
    uint32_t layer, const std::string& rel,
    FunctionRef<Result<UniqueFd>()> open) {
  {
    std::lock_guard lock(mu_);
    for (const Slot& s : slots_)
      if (s.fd && s.layer == layer && s.rel == rel) return s.fd;
  }
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, open());
  auto shared = std::make_shared<const UniqueFd>(std::move(fd));
  std::lock_guard lock(mu_);
  slots_[next_] = {layer, rel, shared};
  next_ = (next_ + 1) % slots_.size();
  return shared;
}

}  // namespace strata::fs
