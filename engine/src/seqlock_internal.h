// Seqlock-style readers of task slots that the reader does not own: the
// copy is kept only if the state word did not change meanwhile (the caller
// re-reads it). Used by Client::peek and try_get, and by the journal reader
// (the sidecar), which copies payloads and results of live tasks.
#pragma once

#include <cstring>
#include <string>

#include "engine_internal.h"

namespace taskring::detail {

// peek is a seqlock reader: it copies plain fields of a slot it does not
// own and keeps the copy only if the state word did not change meanwhile.
// A copy that raced with the slot's reuse is discarded, so the race is
// benign by design; these readers are left out of ThreadSanitizer's
// instrumentation (it cannot see the validation), and use volatile so the
// compiler reads each byte once and keeps no copy in registers.
#if defined(__SANITIZE_THREAD__)
#define TASKRING_SEQLOCK_READER __attribute__((no_sanitize("thread"), noinline))
#else
#define TASKRING_SEQLOCK_READER
#endif

template <typename T>
TASKRING_SEQLOCK_READER inline T racy_read(const T& field) {
  return *static_cast<const volatile T*>(&field);
}

TASKRING_SEQLOCK_READER inline void racy_copy(std::string& out, const void* src, std::size_t n) {
  out.resize(n);
#if defined(__SANITIZE_THREAD__)
  const auto* from = static_cast<const volatile char*>(src);
  for (std::size_t i = 0; i < n; ++i) out[i] = from[i];
#else
  // The bytes cannot tear in a way that matters: a copy the caller does not
  // validate is discarded. memcpy keeps large results fast.
  if (n != 0) std::memcpy(out.data(), src, n);
#endif
}

// The result (or, with `result` false, the payload) bytes of `s`, copied
// racily; false if the recorded length or block is out of bounds (then
// nothing is read).
inline bool racy_copy_bytes(const Engine& e, const TaskSlot& s, bool result, std::string& out) {
  const std::uint32_t len = racy_read(result ? s.result_len : s.payload_len);
  const std::uint32_t block = racy_read(result ? s.result_block : s.payload_block);
  if (block == detail::kNoBlock) {
    if (len > (result ? detail::kInlineResultBytes : detail::kInlineBytes)) return false;
    racy_copy(out, result ? s.inline_result : s.inline_payload, len);
    return true;
  }
  // A block's header is written once, when the block is first cut, before
  // any slot can name it: resolve never races with a header write.
  const std::span<std::byte> data = e.arena().resolve(block);
  if (data.empty() || len > data.size()) return false;
  racy_copy(out, data.data(), len);
  return true;
}
inline bool racy_copy_result(const Engine& e, const TaskSlot& s, std::string& out) {
  return racy_copy_bytes(e, s, true, out);
}

// Orders the racy reads before it ahead of the state word's re-read that
// validates them (an acquire load alone would not, on arm64). TSan does not
// model fences; under it the readers are not instrumented anyway.
inline void seqlock_fence() noexcept {
#if !defined(__SANITIZE_THREAD__)
  std::atomic_thread_fence(std::memory_order_acquire);
#endif
}

}  // namespace taskring::detail
