#include "taskring/ipc/journal.h"

#include <algorithm>

#include "taskring/ipc/futex.h"

namespace taskring::ipc {

void Journal::format(JournalControl* control, std::uint64_t capacity) noexcept {
  // Relaxed: the segment is not yet marked ready; the creator's release
  // store of SegmentHeader::ready publishes these words.
  control->tail.store(0, std::memory_order_relaxed);
  control->head.store(0, std::memory_order_relaxed);
  control->durable.store(0, std::memory_order_relaxed);
  control->capacity = capacity;
  auto* cells = reinterpret_cast<JournalCell*>(control + 1);
  for (std::uint64_t i = 0; i < capacity; ++i) cells[i].word.store(pack(0, kEmpty, 0), std::memory_order_relaxed);
}

bool Journal::try_reserve(std::uint32_t n, std::uint64_t& first) noexcept {
  TASKRING_ASSERT(n >= 1 && n <= capacity());
  // Relaxed: the CAS below decides; a stale value only costs a retry.
  std::uint64_t t = control_->tail.load(std::memory_order_relaxed);
  for (;;) {
    // Relaxed: the cached head is a lower bound of the real one (head only grows).
    std::atomic_ref<std::uint64_t> cache(head_cache_);
    std::uint64_t h = cache.load(std::memory_order_relaxed);
    if (t + n > h + capacity()) {
      // [A10] acquire: pairs with [R10] in release(); the reader stored the
      // freed cell words before head, so a position below head + C has its
      // cell free for its lap when we CAS it in write() (Invariant 1).
      h = control_->head.load(std::memory_order_acquire);
      cache.store(h, std::memory_order_relaxed);
      if (t + n > h + capacity()) return false;
    }
    // Relaxed: tail publishes nothing; each cell's word carries the ordering
    // (the acquire above covered the room we reserve).
    if (control_->tail.compare_exchange_weak(t, t + n, std::memory_order_relaxed, std::memory_order_relaxed)) {
      first = t;
      return true;
    }
  }
}

bool Journal::write(std::uint64_t pos, const void* body, std::size_t len) noexcept {
  TASKRING_ASSERT(len <= kJournalBodyBytes);
  JournalCell& c = cell(pos);
  const std::uint64_t l = lap(pos);
  std::uint64_t expect = pack(l, kEmpty, 0);
  // [A11] acquire: pairs with [R11] in release(), so the reader's copy of
  // the previous lap's body is done before we overwrite it. Fails only if
  // the reader skipped this position (Invariant 2).
  if (!c.word.compare_exchange_strong(expect, pack(l, kWriting, current_pid()), std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
    // Relaxed: a statistics counter.
    control_->lost.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::memcpy(c.body, body, len);
  if (len < kJournalBodyBytes) std::memset(c.body + len, 0, kJournalBodyBytes - len);
  expect = pack(l, kWriting, current_pid());
  // [R12] seq_cst: publishes the body (release part), pairs with [A12] in
  // peek(); seq_cst because the reader-park check below must not be ordered
  // before it (Dekker with [S12] in park_reader).
  if (!c.word.compare_exchange_strong(expect, pack(l, kCommitted, 0), std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
    // The reader found our pid dead (a pid reused by us?) and skipped it.
    control_->lost.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // seq_cst: the other half of the Dekker pairing with [S12].
  if (control_->reader_parked.load(std::memory_order_seq_cst) != 0) {
    std::uint32_t parked = 1;
    // Relaxed: whoever wins the CAS does the wake; data_seq carries nothing.
    if (control_->reader_parked.compare_exchange_strong(parked, 0, std::memory_order_relaxed)) {
      control_->data_seq.fetch_add(1, std::memory_order_relaxed);
      futex_wake(control_->data_seq, 1);
    }
  }
  return true;
}

void Journal::add_dropped(std::uint64_t n) noexcept {
  // [R13] release: the state change the dropped record described happened
  // before; the reader's acquire of the count ([A13]) then sees it in its
  // resync scan of the slot table.
  control_->dropped.fetch_add(n, std::memory_order_release);
}

void Journal::wait_for_space(std::uint32_t n, std::int64_t timeout_ns) noexcept {
  // Acquire: a bump we miss makes futex_wait return at once.
  const std::uint32_t seq = control_->space_seq.load(std::memory_order_acquire);
  // [S14] seq_cst: announce, then re-check room; pairs with [S15] in release().
  control_->space_waiters.fetch_add(1, std::memory_order_seq_cst);
  const std::uint64_t t = control_->tail.load(std::memory_order_relaxed);
  if (t + n > control_->head.load(std::memory_order_seq_cst) + capacity()) {
    futex_wait(control_->space_seq, seq, timeout_ns);
  }
  control_->space_waiters.fetch_sub(1, std::memory_order_relaxed);  // a hint for the reader
}

bool Journal::is_durable(std::uint64_t pos) const noexcept {
  // [A16] acquire: pairs with [R16] in publish_durable.
  return control_->durable.load(std::memory_order_acquire) > pos;
}

void Journal::wait_durable(std::uint64_t pos, std::int64_t timeout_ns) noexcept {
  const std::uint32_t seq = control_->durable_seq.load(std::memory_order_acquire);
  // [S17] seq_cst: announce, then re-check; pairs with [S18] in publish_durable.
  control_->durable_waiters.fetch_add(1, std::memory_order_seq_cst);
  if (control_->durable.load(std::memory_order_seq_cst) <= pos) {
    futex_wait(control_->durable_seq, seq, timeout_ns);
  }
  control_->durable_waiters.fetch_sub(1, std::memory_order_relaxed);
}

Journal::Peek Journal::peek(std::uint64_t pos, void* body, std::uint32_t& writer_pid) const noexcept {
  const JournalCell& c = cell(pos);
  // [A12] seq_cst (acquire part): pairs with [R12]; seq_cst for the park
  // re-check in park_reader.
  const std::uint64_t w = c.word.load(std::memory_order_seq_cst);
  const std::uint64_t l = lap(pos);
  writer_pid = 0;
  if (lap_of(w) != l) {
    // The next lap's empty word: an earlier reader freed it and died before
    // raising head. Anything else is a position far ahead of head (a bug).
    return lap_of(w) == ((l + 1) & kLapMask) ? Peek::kConsumed : Peek::kEmpty;
  }
  switch (state_of(w)) {
    case kCommitted:
      std::memcpy(body, c.body, kJournalBodyBytes);
      return Peek::kRecord;
    case kWriting:
      writer_pid = pid_of(w);
      return Peek::kWriting;
    case kSkipped:
      return Peek::kConsumed;
    default:
      // Relaxed: a hint; a reservation we miss shows on the next peek.
      return control_->tail.load(std::memory_order_relaxed) > pos ? Peek::kReserved : Peek::kEmpty;
  }
}

bool Journal::skip(std::uint64_t pos) noexcept {
  JournalCell& c = cell(pos);
  const std::uint64_t l = lap(pos);
  // Relaxed: the CAS below decides.
  std::uint64_t w = c.word.load(std::memory_order_relaxed);
  for (;;) {
    if (lap_of(w) != l || (state_of(w) != kEmpty && state_of(w) != kWriting)) return false;
    // Acquire on success: nothing to read; relaxed is enough, the writer's
    // CAS that loses to us reads our word, not our memory.
    if (c.word.compare_exchange_weak(w, pack(l, kSkipped, 0), std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      return true;
    }
  }
}

void Journal::release(std::uint64_t end) noexcept {
  const std::uint64_t h = control_->head.load(std::memory_order_relaxed);  // only we store it
  for (std::uint64_t p = h; p < end; ++p) {
    // [R11] release: our reads of the body are done; pairs with [A11].
    cell(p).word.store(pack(lap(p) + 1, kEmpty, 0), std::memory_order_release);
  }
  // [R10] release: pairs with [A10]: the cell words above are visible to a
  // writer that sees the new head. [S15] seq_cst for the waiter check below.
  control_->head.store(end, std::memory_order_seq_cst);
  if (control_->space_waiters.load(std::memory_order_seq_cst) != 0) {
    control_->space_seq.fetch_add(1, std::memory_order_release);
    futex_wake(control_->space_seq, INT32_MAX);
  }
}

void Journal::park_reader(std::uint64_t pos, std::int64_t timeout_ns) noexcept {
  const std::uint32_t seq = control_->data_seq.load(std::memory_order_acquire);
  // [S12] seq_cst: announce, then re-check the cell; pairs with the writer's
  // commit [R12] and its load of reader_parked.
  control_->reader_parked.store(1, std::memory_order_seq_cst);
  std::uint32_t pid = 0;
  std::uint8_t scratch[kJournalBodyBytes];
  const Peek p = peek(pos, scratch, pid);
  if (p == Peek::kEmpty || p == Peek::kReserved || p == Peek::kWriting) {
    futex_wait(control_->data_seq, seq, timeout_ns);
  }
  control_->reader_parked.store(0, std::memory_order_relaxed);  // a hint for writers
}

void Journal::publish_durable(std::uint64_t pos) noexcept {
  // [R16] release: pairs with [A16]. [S18] seq_cst for the waiter check.
  control_->durable.store(pos, std::memory_order_seq_cst);
  if (control_->durable_waiters.load(std::memory_order_seq_cst) != 0) {
    control_->durable_seq.fetch_add(1, std::memory_order_release);
    futex_wake(control_->durable_seq, INT32_MAX);
  }
}

// Observers. Relaxed: racy snapshots for status tools and the reader's own
// bookkeeping; none of them publishes data.
std::uint64_t Journal::head() const noexcept { return control_->head.load(std::memory_order_acquire); }
std::uint64_t Journal::tail_approx() const noexcept { return control_->tail.load(std::memory_order_relaxed); }
std::uint64_t Journal::durable() const noexcept { return control_->durable.load(std::memory_order_acquire); }
std::uint64_t Journal::dropped() const noexcept {
  // [A13] acquire: pairs with [R13] in add_dropped.
  return control_->dropped.load(std::memory_order_acquire);
}
std::uint64_t Journal::lost() const noexcept { return control_->lost.load(std::memory_order_relaxed); }

}  // namespace taskring::ipc
