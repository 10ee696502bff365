// Journal: a bounded multi-producer, single-consumer log of fixed-size
// records in shared memory (a JournalControl followed by its cells, see
// layout.h). The engine publishes every task state change to it; the
// sidecar reads it in position order and mirrors it to a durable log.
//
// Algorithm: a Vyukov-style bounded queue whose cells carry their own state,
// reserved by a CAS on `tail` and then written in two CASes on the cell word,
// so that the single reader can tell a cell that is merely late from one
// whose writer died, and step over the latter without ever letting two
// writers share a cell. Positions grow without bound; position p lives in
// cell p % C with lap p / C (40 bits kept).
//
// Cell word: [lap:40 | state:2 | pid:22], states:
//   kEmpty     waiting for the writer of position (lap, cell)
//   kWriting   that writer (pid) took it and is copying the body
//   kCommitted the body is complete
//   kSkipped   the reader gave up on it (the writer died, or never came)
// The reader frees a cell by storing kEmpty for lap + 1.
//
// Invariants:
//   1. A writer reserves positions only below head + C, so the cell of a
//      reserved position has been freed for its lap (the reader stores the
//      cell words before it raises head).
//   2. A cell moves kEmpty(L) -> kWriting(L, pid) -> kCommitted(L) by the
//      writer's CASes, or kEmpty(L) / kWriting(L, dead pid) -> kSkipped(L)
//      by the reader's CAS; exactly one of the racing CASes wins, so a
//      writer that lost knows its record was dropped, and a body is read
//      only after kCommitted, which no one can change but the reader.
//   3. The reader reads positions in order and frees a cell only after it
//      has consumed or skipped it; head only grows and only the reader
//      stores it.
//   4. A process that dies holding a reservation leaves a cell in kEmpty or
//      kWriting; the reader skips it (after a grace period for kEmpty, and
//      for kWriting once the pid is gone: the reader's policy, see
//      engine/include/taskring/journal_reader.h), so no death can wedge the
//      journal. A writer
//      that is alive but stopped (SIGSTOP) inside write() holds the reader
//      up until it continues.
//
// Thread safety: the writer functions may be called concurrently from any
// thread of any process; the reader functions by one thread of the process
// that claimed the reader role at a time. Writer functions never allocate;
// try_* never block.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "taskring/base/assert.h"
#include "taskring/ipc/layout.h"

namespace taskring::ipc {

class Journal {
 public:
  static constexpr std::uint64_t kMinCapacity = 64;
  static constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 24;
  enum CellState : std::uint32_t { kEmpty = 0, kWriting = 1, kCommitted = 2, kSkipped = 3 };

  Journal() = default;
  // `control` must be followed by `capacity` cells; `capacity` is a power of
  // two taken from the validated configuration.
  Journal(JournalControl* control, std::uint64_t capacity) noexcept
      : control_(control),
        cells_(reinterpret_cast<JournalCell*>(control + 1)),
        mask_(capacity - 1),
        shift_(static_cast<std::uint32_t>(__builtin_ctzll(capacity))) {
    TASKRING_ASSERT(capacity >= kMinCapacity && capacity <= kMaxCapacity && (capacity & (capacity - 1)) == 0);
  }
  static void format(JournalControl* control, std::uint64_t capacity) noexcept;

  bool valid() const noexcept { return control_ != nullptr; }
  std::uint64_t capacity() const noexcept { return mask_ + 1; }
  JournalControl& control() const noexcept { return *control_; }

  // ---- writers
  // Reserves `n` (1..capacity) consecutive positions and sets `first` to the
  // first. Returns false if fewer than n cells are free. Lock-free.
  [[nodiscard]] bool try_reserve(std::uint32_t n, std::uint64_t& first) noexcept;
  // Writes `len` (<= kJournalBodyBytes) bytes as the record at `pos`, which
  // the caller reserved and has not written. Returns false if the reader
  // skipped the position first (the record is lost; the reader resyncs).
  // Wakes the reader if it is parked. Wait-free apart from the wake.
  bool write(std::uint64_t pos, const void* body, std::size_t len) noexcept;
  // Counts `n` records that were not written because the journal was full.
  void add_dropped(std::uint64_t n) noexcept;
  // Parks while fewer than `n` cells are free, until the reader may have
  // freed some (space_seq moved) or `timeout_ns` passed; the caller retries
  // try_reserve after. May block.
  void wait_for_space(std::uint32_t n, std::int64_t timeout_ns) noexcept;
  // True once every position below `pos` is durable (see durable()).
  bool is_durable(std::uint64_t pos) const noexcept;
  // Parks until durable() moves past `pos` or `timeout_ns` passed. May block.
  void wait_durable(std::uint64_t pos, std::int64_t timeout_ns) noexcept;

  // ---- the reader
  enum class Peek {
    kEmpty,      // nothing reserved at pos yet
    kRecord,     // committed; body copied out
    kReserved,   // reserved, the writer has not started (writer_pid unknown: 0)
    kWriting,    // the writer `writer_pid` is copying the body
    kConsumed,   // already freed for this lap by an earlier reader (died before raising head)
  };
  // Looks at position `pos` (>= head); on kRecord copies the body into
  // `body` (kJournalBodyBytes bytes). Never blocks.
  Peek peek(std::uint64_t pos, void* body, std::uint32_t& writer_pid) const noexcept;
  // Skips the reserved, unwritten record at `pos` (its writer died or never
  // came). Returns false if the writer committed meanwhile (peek again).
  bool skip(std::uint64_t pos) noexcept;
  // Frees the cells of positions [head, end) (each consumed or skipped)
  // and raises head to `end`; wakes writers waiting for room.
  void release(std::uint64_t end) noexcept;
  // Parks the reader until a record may have been committed at `pos` or
  // `timeout_ns` passed. May block.
  void park_reader(std::uint64_t pos, std::int64_t timeout_ns) noexcept;
  // Publishes that every position below `pos` is on disk; wakes durable waiters.
  void publish_durable(std::uint64_t pos) noexcept;

  // ---- observers (racy)
  std::uint64_t head() const noexcept;
  std::uint64_t tail_approx() const noexcept;
  std::uint64_t durable() const noexcept;
  std::uint64_t dropped() const noexcept;
  std::uint64_t lost() const noexcept;

  static constexpr std::uint64_t pack(std::uint64_t lap, std::uint32_t state, std::uint32_t pid) noexcept {
    return ((lap & kLapMask) << 24) | (std::uint64_t{state} << 22) | (pid & kPidMask);
  }
  static constexpr std::uint64_t lap_of(std::uint64_t word) noexcept { return word >> 24; }
  static constexpr std::uint32_t state_of(std::uint64_t word) noexcept {
    return static_cast<std::uint32_t>(word >> 22) & 3;
  }
  static constexpr std::uint32_t pid_of(std::uint64_t word) noexcept {
    return static_cast<std::uint32_t>(word) & kPidMask;
  }

 private:
  static constexpr std::uint64_t kLapMask = (std::uint64_t{1} << 40) - 1;
  static constexpr std::uint32_t kPidMask = (1u << 22) - 1;
  std::uint64_t lap(std::uint64_t pos) const noexcept { return (pos >> shift_) & kLapMask; }
  JournalCell& cell(std::uint64_t pos) const noexcept { return cells_[pos & mask_]; }

  JournalControl* control_ = nullptr;
  JournalCell* cells_ = nullptr;
  std::uint64_t mask_ = 0;
  std::uint32_t shift_ = 0;
  // This process's last view of head: writers reload it only when the ring
  // looks full by it. Accessed through std::atomic_ref (relaxed: a hint,
  // never trusted for more than that), so that a Journal stays copyable.
  alignas(8) mutable std::uint64_t head_cache_ = 0;
};

}  // namespace taskring::ipc
