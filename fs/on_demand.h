#pragma once

// OnDemand<T>: a member made on its first use, for state most objects never
// need. An Inode exists for every name the kernel holds (a walk of an image
// keeps one per file), so a mutex-guarded field that only written files or
// listed directories use costs 8 bytes here instead of its size (the daemon
// memory target of docs/benchmarks.md). Concurrent first uses agree on one
// object (the loser frees its own).

#include <atomic>
#include <memory>

namespace strata::fs {

template <class T>
class OnDemand {
 public:
  OnDemand() = default;
  OnDemand(const OnDemand&) = delete;
  OnDemand& operator=(const OnDemand&) = delete;
  ~OnDemand() { delete p_.load(std::memory_order_acquire); }

  T& get() {
    T* p = p_.load(std::memory_order_acquire);
    if (p != nullptr) return *p;
    auto fresh = std::make_unique<T>();
    if (p_.compare_exchange_strong(p, fresh.get(), std::memory_order_acq_rel))
      return *fresh.release();
    return *p;  // another thread made it first
  }

 private:
  std::atomic<T*> p_{nullptr};
};

}  // namespace strata::fs
