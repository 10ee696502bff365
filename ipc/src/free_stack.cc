#include "taskring/ipc/free_stack.h"

#include "taskring/base/assert.h"

namespace taskring::ipc {
namespace {
constexpr std::uint64_t pack(std::uint32_t tag, std::uint32_t index) noexcept {
  return (std::uint64_t{tag} << 32) | index;
}
constexpr std::uint32_t tag_of(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }
constexpr std::uint32_t index_of(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w); }
}  // namespace

void FreeStack::format_empty(FreeStackHead* head) noexcept {
  // Relaxed: published by the creator's release store of the ready flag.
  head->word.store(pack(0, kNilIndex), std::memory_order_relaxed);
}

void FreeStack::format(std::uint32_t first, std::uint32_t n) noexcept {
  TASKRING_ASSERT(n == 0 || std::uint64_t{first} + n <= count_);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint32_t next = i + 1 < n ? first + i + 1 : kNilIndex;
    link(first + i).store(next, std::memory_order_relaxed);  // published by the ready flag
  }
  head_->word.store(pack(0, n == 0 ? kNilIndex : first), std::memory_order_relaxed);
}

FreeStack::PopResult FreeStack::pop(std::uint32_t& out) noexcept {
  // [A1] seq_cst (acquire part): pairs with [R1] in push, so the link of the
  // top element, written before it was pushed, is visible. seq_cst because a
  // producer waiting for a free slot re-checks with this load after
  // announcing itself (Dekker pairing with the pusher's notify).
  std::uint64_t w = head_->word.load(std::memory_order_seq_cst);
  for (;;) {
    const std::uint32_t index = index_of(w);
    if (index == kNilIndex) return PopResult::kEmpty;
    if (index >= count_) return PopResult::kCorrupt;
    // Relaxed: if another process popped `index` meanwhile, the value may be
    // stale, but then the tag moved and the CAS below fails (Invariant 1).
    const std::uint32_t next = link(index).load(std::memory_order_relaxed);
    // acquire on success and failure, as [A1], for the next iteration or
    // for the caller's use of the element.
    if (head_->word.compare_exchange_weak(w, pack(tag_of(w) + 1, next), std::memory_order_acquire,
                                          std::memory_order_acquire)) {
      out = index;
      return PopResult::kOk;
    }
  }
}

void FreeStack::push(std::uint32_t index) noexcept {
  TASKRING_ASSERT(index < count_);
  std::uint64_t w = head_->word.load(std::memory_order_relaxed);  // the CAS validates it
  for (;;) {
    // Relaxed: published by the release CAS below.
    link(index).store(index_of(w), std::memory_order_relaxed);
    // [R1] seq_cst (release part): publishes the link and the element's
    // contents; pairs with [A1]; seq_cst for the waiters' Dekker pairing.
    if (head_->word.compare_exchange_weak(w, pack(tag_of(w) + 1, index), std::memory_order_seq_cst,
                                          std::memory_order_relaxed)) {
      return;
    }
  }
}

std::uint64_t FreeStack::size_quiescent() const noexcept {
  std::uint64_t n = 0;
  // Acquire: a quiescent walk after other threads' pushes.
  std::uint32_t i = index_of(head_->word.load(std::memory_order_acquire));
  while (i != kNilIndex) {
    if (i >= count_ || n > count_) return std::uint64_t{count_} + 1;
    ++n;
    i = link(i).load(std::memory_order_relaxed);  // quiescent: nothing races
  }
  return n;
}

std::uint64_t FreeStack::head_word_approx() const noexcept {
  return head_->word.load(std::memory_order_acquire);  // acquire: as [A1], before walking links
}

bool FreeStack::members_if_unchanged(std::vector<std::uint8_t>& member, std::uint64_t& head_word) const {
  head_word = head_word_approx();
  std::uint32_t i = index_of(head_word);
  std::uint64_t n = 0;
  while (i != kNilIndex) {
    if (i >= count_ || n++ > count_ || member[i] != 0) return false;  // corrupt, cyclic, or changed under us
    member[i] = 1;
    // Relaxed: links change only for elements being pushed; the head
    // re-read below (acquire, with the seq_cst CAS of every push and pop)
    // tells whether any push or pop happened during the walk.
    i = link(i).load(std::memory_order_relaxed);
  }
  return head_word_approx() == head_word;
}

}  // namespace taskring::ipc
