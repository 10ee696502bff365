// Status and Result<T>: how every control-plane call in taskring reports
// failure. The OK case costs one null pointer; an error carries a code and a
// message that names the field, the value and what is accepted.
//
// Thread safety: a Status or Result is a value; distinct objects may be used
// from distinct threads freely, one object needs external synchronisation.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "taskring/base/assert.h"

namespace taskring {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,     // the caller passed a value outside what is accepted
  kNotFound,            // a named thing (segment, task id, queue) does not exist
  kAlreadyExists,       // creating something that is already there
  kFailedPrecondition,  // the system is not in a state where the call can work
  kPermissionDenied,    // another user's segment, or file mode forbids access
  kResourceExhausted,   // a bounded structure is full (ring, slots, payload area)
  kDeadlineExceeded,    // a timeout passed before the call could complete
  kUnavailable,         // transient: try again
  kDataLoss,            // a structure is corrupt or truncated
  kCancelled,           // the operation or task was cancelled
  kInternal,            // a system call failed unexpectedly
};

// Returns a stable lower-case name for `code`, e.g. "invalid argument".
std::string_view status_code_name(StatusCode code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(StatusCode code, std::string message)
      : rep_(code == StatusCode::kOk
                 ? nullptr
                 : std::make_shared<const Rep>(Rep{code, std::move(message)})) {}

  static Status ok() noexcept { return Status(); }

  bool is_ok() const noexcept { return rep_ == nullptr; }
  explicit operator bool() const noexcept { return is_ok(); }
  StatusCode code() const noexcept { return rep_ ? rep_->code : StatusCode::kOk; }
  // The message without the code name; empty for OK.
  const std::string& message() const noexcept {
    static const std::string kEmpty;
    return rep_ ? rep_->message : kEmpty;
  }
  // "<code name>: <message>", or "ok".
  std::string to_string() const;

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  // Shared so that copying an error is cheap; the Rep is immutable.
  std::shared_ptr<const Rep> rep_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status already_exists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status failed_precondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status permission_denied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
inline Status resource_exhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status deadline_exceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status data_loss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    TASKRING_ASSERT(!status_.is_ok());
  }

  bool is_ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return is_ok(); }
  const Status& status() const noexcept { return status_; }

  T& value() & { TASKRING_ASSERT(is_ok()); return *value_; }
  const T& value() const& { TASKRING_ASSERT(is_ok()); return *value_; }
  T&& value() && { TASKRING_ASSERT(is_ok()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace taskring

// Propagates a non-OK Status from the current function.
#define TASKRING_RETURN_IF_ERROR(expr)             \
  do {                                             \
    ::taskring::Status taskring_status_ = (expr);  \
    if (!taskring_status_.is_ok()) return taskring_status_; \
  } while (0)
