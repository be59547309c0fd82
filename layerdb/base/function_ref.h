#pragma once

// FunctionRef<R(Args...)>: a non-owning reference to a callable, for callbacks
// on hot paths (readdir, xattr lists). Unlike std::function it never
// allocates and is two pointers wide; calling it is one indirect call.
//
// Lifetime: it refers to the callable it was made from, which must outlive
// every call. Pass it by value as a parameter and do not store it; binding
// one to a temporary lambda is fine for the duration of the call that takes
// it, which is the intended use:
//
//   Status ForEach(FunctionRef<bool(std::string_view)> fn);
//   ForEach([&](std::string_view name) { names.push_back(name); return true;
//   });
//
// Thread-safety: as safe as the callable it refers to.

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace strata {

namespace internal {
// What a FunctionRef<R(Args...)> may refer to: a callable object other than
// a FunctionRef itself (whose copy constructor applies instead).
template <class F, class Self, class R, class... Args>
concept FunctionRefTarget = !std::is_same_v<std::remove_cvref_t<F>, Self> &&
                            std::is_object_v<std::remove_reference_t<F>> &&
                            std::is_invocable_r_v<R, F&, Args...>;
}  // namespace internal

template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  // Implicit, so that a lambda can be passed where a FunctionRef is taken.
  template <internal::FunctionRefTarget<FunctionRef, R, Args...> F>
  // NOLINTNEXTLINE(google-explicit-constructor,bugprone-forwarding-reference-overload)
  FunctionRef(F&& f) noexcept
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_(&Call<std::remove_reference_t<F>>) {}

  FunctionRef(const FunctionRef&) noexcept = default;
  FunctionRef& operator=(const FunctionRef&) noexcept = default;
  FunctionRef(FunctionRef&&) noexcept = default;
  FunctionRef& operator=(FunctionRef&&) noexcept = default;
  ~FunctionRef() = default;

  R operator()(Args... args) const {
    return call_(obj_, std::forward<Args>(args)...);
  }

 private:
  template <class F>
  static R Call(void* obj, Args... args) {
    if constexpr (std::is_void_v<R>) {
      std::invoke(*static_cast<F*>(obj), std::forward<Args>(args)...);
    } else {
      return std::invoke(*static_cast<F*>(obj), std::forward<Args>(args)...);
    }
  }

  void* obj_;
  R (*call_)(void*, Args...);
};

}  // namespace strata
