#pragma once

// Error, Result<T> and Status: the error vocabulary of every strata module.
//
// An Error is a positive errno plus a string literal naming the failing
// operation, and optionally a short detail (an object name: a path, a digest,
// a layer id) so that a CLI can print one line that names the object and the
// cause. Error is cheap to copy; the detail is only allocated on failure.
//
// Result<T> holds a T or an Error; its surface is the subset of std::expected
// we use (g++ 12 only has <expected> under -std=c++23). Status = Result<void>.
// "Absent" is a value, not an error: use Result<std::optional<T>>.
//
// Thread-safety: plain values; no shared state.

#include <errno.h>

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace strata {

class Error {
 public:
  Error(int code, const char* op) : code_(code), op_(op) {}
  Error(int code, const char* op, std::string detail)
      : code_(code), op_(op), detail_(std::move(detail)) {}

  // Captures errno; call it right after the failing call.
  static Error FromErrno(const char* op) { return Error(errno, op); }
  static Error FromErrno(const char* op, std::string detail) {
    return Error(errno, op, std::move(detail));
  }

  int code() const { return code_; }
  const char* op() const { return op_; }
  const std::string& detail() const { return detail_; }

  // Returns a copy with `what` prepended to the detail ("what: detail").
  Error WithContext(const std::string& what) const;

  // "op: detail: strerror" — one line, for logs and CLI errors.
  std::string ToString() const;

 private:
  int code_;
  const char* op_;
  std::string detail_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Error error)
      : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const {
    assert(!has_value());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const { assert(ok_); }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_{0, ""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() {
  return Status();
}

}  // namespace strata

#define STRATA_CONCAT_INNER_(a, b) a##b
#define STRATA_CONCAT_(a, b) STRATA_CONCAT_INNER_(a, b)

// Returns the error of `expr` (a Result or Status) from the enclosing function.
#define STRATA_RETURN_IF_ERROR(expr)                    \
  do {                                                  \
    auto&& strata_status_ = (expr);                     \
    if (!strata_status_) return strata_status_.error(); \
  } while (false)

// `lhs = value of expr`, or returns its error.
#define STRATA_ASSIGN_OR_RETURN(lhs, expr)                                     \
  STRATA_ASSIGN_OR_RETURN_IMPL_(STRATA_CONCAT_(strata_result_, __LINE__), lhs, \
                                expr)
#define STRATA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp) return tmp.error();                       \
  lhs = std::move(tmp).value()
