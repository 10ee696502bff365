#include "taskring/ipc/ring.h"

#include <algorithm>

namespace taskring::ipc {

void Ring::format(RingControl* control, std::uint64_t capacity) noexcept {
  // Relaxed: the segment is not yet marked ready; the creator's release
  // store of SegmentHeader::ready publishes these words.
  control->head.store(0, std::memory_order_relaxed);
  control->tail.store(0, std::memory_order_relaxed);
  control->capacity = capacity;
  auto* cells = reinterpret_cast<RingCell*>(control + 1);
  for (std::uint64_t i = 0; i < capacity; ++i) cells[i].word.store(0, std::memory_order_relaxed);
}

void Ring::raise_to(std::atomic<std::uint64_t>& index, std::uint64_t target) noexcept {
  // Relaxed: head and tail are hints; no data is published through them, the
  // cell words carry all ordering (Invariant 1).
  std::uint64_t cur = index.load(std::memory_order_relaxed);
  while (cur < target &&
         !index.compare_exchange_weak(cur, target, std::memory_order_relaxed,
                                      std::memory_order_relaxed)) {
  }
}

std::size_t Ring::try_push_batch(const std::uint32_t* values, std::size_t n) noexcept {
  if (n == 0) return 0;
  // Relaxed: a stale tail only costs extra iterations; the cell word decides.
  std::uint64_t pos = control_->tail.load(std::memory_order_relaxed);
  std::size_t pushed = 0;
  while (pushed < n) {
    RingCell& cell = cells_[pos & mask_];
    // [A2] seq_cst (acquire part): pairs with [R2] in try_pop_batch, so the
    // consumer that emptied this cell has finished with its value. seq_cst
    // because a producer waiting for room re-checks with this load after
    // announcing itself (engine/src/client.cc [S4]).
    std::uint64_t word = cell.word.load(std::memory_order_seq_cst);
    const std::int32_t d = distance(word, pos);
    if (d == 0) {
      // [R1] seq_cst (release part): publishes everything the producer wrote
      // before the push (the task slot); pairs with [A1] in try_pop_batch.
      // seq_cst rather than release because the wake protocol
      // (engine/src/engine.cc, notify_work) orders this store before the load of the parked
      // count, Dekker-style. On x86 a locked CAS is a full barrier anyway.
      if (cell.word.compare_exchange_strong(word, pack(empty_turn(pos) + 1, values[pushed]),
                                            std::memory_order_seq_cst,
                                            std::memory_order_acquire)) {
        ++pushed;
        ++pos;
      }
      // On failure another producer filled the cell: re-read it.
    } else if (d == 1 || d == 2) {
      // Already filled (or even consumed) for this lap by someone else: the
      // tail hint lags; step over it.
      ++pos;
    } else if (d < 0) {
      // The cell still holds a value from an earlier lap: the ring is full
      // unless our position is stale, which a fresh tail tells.
      const std::uint64_t tail = control_->tail.load(std::memory_order_relaxed);
      if (tail <= pos) break;
      pos = tail;
    } else {
      // d > 2: our position is at least a lap behind; resynchronise.
      pos = std::max(pos + 1, control_->tail.load(std::memory_order_relaxed));
    }
  }
  raise_to(control_->tail, pos);
  return pushed;
}

std::size_t Ring::try_pop_batch(std::uint32_t* out, std::size_t n) noexcept {
  if (n == 0) return 0;
  std::uint64_t pos = control_->head.load(std::memory_order_relaxed);  // a hint, see raise_to
  std::size_t popped = 0;
  while (popped < n) {
    RingCell& cell = cells_[pos & mask_];
    // [A1] seq_cst (acquire part): pairs with [R1]; the value's referent is
    // visible. seq_cst so that a worker's re-check after announcing itself
    // parked cannot miss a push (engine/src/engine.cc, notify_work).
    std::uint64_t word = cell.word.load(std::memory_order_seq_cst);
    const std::int32_t d = distance(word, pos);
    if (d == 1) {
      // [R2] seq_cst (release part): our use of the value happens before a
      // producer overwrites the cell; pairs with [A2]. seq_cst so that the
      // room it makes is seen by the Dekker pairing of notify_space ([S3]).
      // Failure: acquire, as [A1].
      if (cell.word.compare_exchange_strong(word, pack(empty_turn(pos) + 2, value_of(word)),
                                            std::memory_order_seq_cst,
                                            std::memory_order_acquire)) {
        out[popped++] = value_of(word);
        ++pos;
      }
    } else if (d == 2) {
      ++pos;  // consumed by someone else for this lap: the head hint lags
    } else if (d == 0 || d < 0) {
      break;  // empty: no producer has filled this position yet
    } else {
      pos = std::max(pos + 1, control_->head.load(std::memory_order_relaxed));
    }
  }
  raise_to(control_->head, pos);
  return popped;
}

bool Ring::nonempty_approx() const noexcept {
  std::uint64_t pos = control_->head.load(std::memory_order_relaxed);  // a hint
  // A bounded walk over cells that were consumed but not yet passed by head.
  for (std::uint64_t i = 0; i <= mask_; ++i, ++pos) {
    // seq_cst: the parked worker's re-check, see [A1].
    const std::int32_t d = distance(cells_[pos & mask_].word.load(std::memory_order_seq_cst), pos);
    // Odd: full for `pos` or, when head lags a lap or more behind a consumer
    // that has not advanced it yet, full for a later lap of this cell.
    if (d > 0 && d % 2 == 1) return true;
    if (d <= 0) return false;  // empty for pos: nothing was pushed beyond it
  }
  return false;
}

std::uint64_t Ring::head_approx() const noexcept {
  return control_->head.load(std::memory_order_relaxed);  // an observer's snapshot
}

std::uint64_t Ring::tail_approx() const noexcept {
  return control_->tail.load(std::memory_order_relaxed);  // an observer's snapshot
}

std::uint64_t Ring::size_approx() const noexcept {
  const std::uint64_t head = head_approx();
  const std::uint64_t tail = tail_approx();
  if (tail <= head) return 0;
  return std::min(tail - head, capacity());
}

}  // namespace taskring::ipc
