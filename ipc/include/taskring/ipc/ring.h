// Ring: a bounded lock-free MPMC queue of 32-bit values living in shared
// memory (a RingControl followed by its cells, see layout.h). The engine uses
// it for queue rings (values are task slot indices) and per-worker deques.
//
// Algorithm: Vyukov's bounded MPMC queue (per-cell sequence numbers), with the
// sequence ("turn") and the value fused into one 64-bit cell word so that a
// push or a pop is a single CAS on the cell. The head and tail indices are
// hints advanced cooperatively afterwards, as in Tsigas & Zhang's
// non-blocking array queue (SPAA 2001): any process may advance them, so a
// process killed at any instruction leaves at most a lagging hint that the
// next caller repairs. No cell is ever left reserved-but-unwritten.
//
// Cell word: [turn:32 | value:32]. For position p on a ring of capacity C,
// lap L = p / C; the cell p % C holds turn 2L while it waits for the producer
// of p ("empty for lap L") and 2L+1 while it holds p's value ("full for lap
// L"). A pop sets turn 2L+2, which is "empty for lap L+1", and keeps the old
// value bits (they are never read as a value again, but help post-mortems).
// Turns are compared by signed 32-bit difference, so they may wrap; a caller
// would have to stall for 2^31 laps between its load and its CAS for the
// comparison to alias.
//
// Invariants:
//   1. Every position below `tail` has been filled for its lap; every
//      position below `head` has been consumed for its lap. head and tail
//      only grow (raise_to), and head <= tail + 1 is never required: both
//      are hints, the cell words are the truth.
//   2. A cell changes only by CAS from "empty for L" to "full for L" (push)
//      or from "full for L" to "empty for L+1" (pop). So each position is
//      filled once and consumed once, in position order.
//   3. A push only fills the cell of position `tail` or later, and only
//      after every earlier position was filled (it saw them full, or saw
//      tail past them); so values leave in the order they were pushed, per
//      producer.
//   4. Nothing but the cell CAS changes what the ring holds: a process that
//      dies before it leaves no trace, one that dies after it leaves a
//      complete push or pop behind.
//
// Thread safety: every method may be called concurrently from any thread of
// any process mapping the segment. All methods are lock-free and never
// allocate; try_* never block.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "taskring/base/assert.h"
#include "taskring/ipc/layout.h"

namespace taskring::ipc {

class Ring {
 public:
  static constexpr std::uint64_t kMinCapacity = 2;
  static constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 24;

  Ring() = default;
  // `control` must be followed by `capacity` cells. `capacity` is a power of
  // two taken from the validated configuration, never read from the ring.
  Ring(RingControl* control, std::uint64_t capacity) noexcept
      : control_(control),
        cells_(reinterpret_cast<RingCell*>(control + 1)),
        mask_(capacity - 1),
        shift_(static_cast<std::uint32_t>(__builtin_ctzll(capacity))) {
    TASKRING_ASSERT(capacity >= kMinCapacity && capacity <= kMaxCapacity &&
                    (capacity & (capacity - 1)) == 0);
  }

  // Writes an empty ring of `capacity` cells at `control`. Only the creator
  // calls this, before the segment is marked ready.
  static void format(RingControl* control, std::uint64_t capacity) noexcept;

  // Pushes up to `n` values in order; returns how many were pushed (0 when
  // full). The pushed values are those at the front of `values`.
  // Lock-free. Never allocates.
  [[nodiscard]] std::size_t try_push_batch(const std::uint32_t* values, std::size_t n) noexcept;
  // Returns true if `value` was pushed, false if the ring was full.
  [[nodiscard]] bool try_push(std::uint32_t value) noexcept { return try_push_batch(&value, 1) == 1; }

  // Pops up to `n` values in FIFO order into `out`; returns how many (0 when
  // empty). Lock-free. Never allocates.
  [[nodiscard]] std::size_t try_pop_batch(std::uint32_t* out, std::size_t n) noexcept;
  // Returns true and sets `out` if a value was popped, false if empty.
  [[nodiscard]] bool try_pop(std::uint32_t& out) noexcept { return try_pop_batch(&out, 1) == 1; }

  // True if the cell at the head position holds a value. A racy observer;
  // with seq_cst ordering so that the park protocol (engine/src/engine.cc, notify_work) can
  // pair it with a producer's push.
  bool nonempty_approx() const noexcept;
  // Calls f(value) for every cell that holds a value at the moment it is
  // read, in cell order (not FIFO order). A racy observer for the recovery
  // audit: a value pushed or popped during the walk may be seen or missed.
  template <typename F>
  void for_each_value_approx(F&& f) const {
    for (std::uint64_t i = 0; i <= mask_; ++i) {
      // Relaxed: the audit acts only on what two walks, some time apart,
      // agree on, and re-validates with a CAS on the task's state word.
      const std::uint64_t word = cells_[i].word.load(std::memory_order_relaxed);
      if ((turn_of(word) & 1) != 0) f(value_of(word));  // odd turn: full for its lap
    }
  }
  // tail - head, clamped to [0, capacity]. A racy observer.
  std::uint64_t size_approx() const noexcept;
  std::uint64_t capacity() const noexcept { return mask_ + 1; }
  // Raw positions, for status tools and tests. Racy observers.
  std::uint64_t head_approx() const noexcept;
  std::uint64_t tail_approx() const noexcept;

 private:
  static constexpr std::uint64_t pack(std::uint32_t turn, std::uint32_t value) noexcept {
    return (std::uint64_t{turn} << 32) | value;
  }
  static constexpr std::uint32_t turn_of(std::uint64_t word) noexcept {
    return static_cast<std::uint32_t>(word >> 32);
  }
  static constexpr std::uint32_t value_of(std::uint64_t word) noexcept {
    return static_cast<std::uint32_t>(word);
  }
  // Turn of a cell that is empty and waiting for position `pos`.
  std::uint32_t empty_turn(std::uint64_t pos) const noexcept {
    return static_cast<std::uint32_t>((pos >> shift_) * 2);
  }
  // How far the cell's turn is ahead of "empty for pos": 0 empty for pos,
  // 1 full for pos, 2 consumed for pos, negative: still holds an older lap.
  std::int32_t distance(std::uint64_t word, std::uint64_t pos) const noexcept {
    return static_cast<std::int32_t>(turn_of(word) - empty_turn(pos));
  }
  static void raise_to(std::atomic<std::uint64_t>& index, std::uint64_t target) noexcept;

  RingControl* control_ = nullptr;
  RingCell* cells_ = nullptr;
  std::uint64_t mask_ = 0;
  std::uint32_t shift_ = 0;
};

}  // namespace taskring::ipc
