// FreeStack: a lock-free stack of 32-bit indices in shared memory (Treiber's
// stack), used for free task slots and free arena blocks. The links are
// atomic 32-bit words stored inside the elements themselves, at
// base + index * stride.
//
// Invariants:
//   1. The head word is [tag:32 | index:32]. Every successful push or pop
//      increments the tag, so a CAS prepared from a head that has since been
//      popped and pushed back (ABA) fails: the tag differs.
//   2. An index is on the stack at most once: only its owner pushes it, and
//      the owner got it from a pop (or from format).
//   3. Every index read from shared memory (head or link) is checked against
//      `count` before it is used; an out-of-range value is reported as
//      corruption, never dereferenced.
//
// A process killed inside pop or push either completed its CAS or did not; in
// neither case are other processes blocked. A process killed after a pop and
// before it records the index elsewhere leaks that element (recovery can find
// it by scanning, see docs/architecture.md).
//
// Thread safety: push and pop are lock-free and may run concurrently from any
// thread of any process. Never allocates.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "taskring/ipc/layout.h"

namespace taskring::ipc {

class FreeStack {
 public:
  FreeStack() = default;
  // `links` is the address of element 0's link word; element i's link is
  // `stride` bytes further per index. `count` bounds every index.
  FreeStack(FreeStackHead* head, std::byte* links, std::size_t stride, std::uint32_t count) noexcept
      : head_(head), links_(links), stride_(stride), count_(count) {}

  // Writes a stack holding indices [first, first + n) with `first` on top.
  // Only for the creator, before the segment is ready.
  void format(std::uint32_t first, std::uint32_t n) noexcept;
  // Writes an empty stack.
  static void format_empty(FreeStackHead* head) noexcept;

  enum class PopResult { kOk, kEmpty, kCorrupt };
  // Pops an index into `out`. kEmpty when empty, kCorrupt when the stack
  // holds an index >= count (nothing is popped then). Lock-free.
  [[nodiscard]] PopResult pop(std::uint32_t& out) noexcept;
  // Pushes `index`, which must be < count and owned by the caller. Lock-free.
  void push(std::uint32_t index) noexcept;

  // Walks the stack; returns the number of entries, or count+1 on a cycle or
  // a bad link. Only meaningful when nobody pushes or pops concurrently.
  std::uint64_t size_quiescent() const noexcept;
  // Marks member[i] = 1 for every element on the stack, walking it from the
  // head, and returns true if the walk is a true snapshot: the head word
  // (whose tag every push and pop changes) was the same before and after,
  // so nothing was pushed or popped meanwhile. Returns false, with `member`
  // unspecified, if the stack changed or a link is out of range or cyclic.
  // `member` must have count() elements. A racy observer for the recovery
  // audit; never writes the stack.
  bool members_if_unchanged(std::vector<std::uint8_t>& member, std::uint64_t& head_word) const;
  // The head word [tag:32 | index:32], for observers comparing snapshots.
  std::uint64_t head_word_approx() const noexcept;
  std::uint32_t count() const noexcept { return count_; }

 private:
  std::atomic<std::uint32_t>& link(std::uint32_t index) const noexcept {
    return *reinterpret_cast<std::atomic<std::uint32_t>*>(links_ + index * stride_);
  }

  FreeStackHead* head_ = nullptr;
  std::byte* links_ = nullptr;
  std::size_t stride_ = 0;
  std::uint32_t count_ = 0;
};

}  // namespace taskring::ipc
