// Errors as values. A Result<T> holds either a T or a positive errno.
// Used at every boundary inside stablefs; libfuse callbacks turn the errno
// into fuse_reply_err, so no exception ever crosses into C code.
#pragma once

#include <cassert>
#include <cerrno>
#include <utility>
#include <variant>

namespace stablefs {

struct Error {
  int code;  // positive errno value
};

inline Error err(int code) { return Error{code}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error e) : v_(e) { assert(e.code > 0); }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  int error() const { return ok() ? 0 : std::get<Error>(v_).code; }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

// Status is Result<void>: ok, or an errno.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : code_(e.code) { assert(e.code > 0); }  // NOLINT
  static Status Ok() { return Status(); }
  bool ok() const { return code_ == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return code_; }

 private:
  int code_ = 0;
};

// Propagate an error from an expression returning Status or Result<T>.
#define SFS_TRY(expr)                                              \
  do {                                                             \
    auto _sfs_r = (expr);                                          \
    if (!_sfs_r.ok()) return ::stablefs::Error{_sfs_r.error()};    \
  } while (0)

}  // namespace stablefs
