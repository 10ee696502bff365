// JournalReader: the sidecar's side of a segment's journal. It turns the
// journal's events into durable-log records (copying each task's spec,
// payload and result from its slot while the slot still holds that task),
// snapshots the slot table for resynchronisation and compaction, publishes
// how far the log is durable, and puts tasks from a log back into a segment
// (recovery). docs/durability.md describes the protocol; the sidecar process
// itself is tools/sidecar.
//
// Thread safety: one JournalReader per segment at a time (attach takes the
// journal's reader role); its methods are called by one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/log.h"
#include "taskring/log_state.h"
#include "taskring/options.h"
#include "taskring/task.h"

namespace taskring {

namespace detail {
class Engine;
}

// What one read() call met besides records.
struct JournalReadInfo {
  std::uint64_t holes = 0;        // reserved cells skipped: their writer died, or never wrote
  std::uint64_t bad_events = 0;   // events with an out-of-range slot or an unknown type (dropped)
  bool writer_stalled = false;    // stopped at a cell a live process is still writing
};

class JournalReader {
 public:
  // A reserved cell that stays unwritten this long (its writer was killed
  // between reserving and writing, or is descheduled) is skipped; the
  // caller must then resynchronise. A cell being written by a dead process
  // is skipped once it has held the cell for kWriterCheckNs.
  static constexpr std::int64_t kHoleGraceNs = 200'000'000;
  // A cell being written for longer than this has its writer's pid checked
  // (a system call): a live writer copies its 24 bytes in nanoseconds.
  static constexpr std::int64_t kWriterCheckNs = 1'000'000;

  // Attaches to `segment` and takes its journal's reader role. Errors: those
  // of attaching; kFailedPrecondition if the segment has no journal or a
  // live process (named) already reads it.
  static Result<std::unique_ptr<JournalReader>> attach(std::string_view segment);
  ~JournalReader();  // gives the reader role back
  JournalReader(const JournalReader&) = delete;
  JournalReader& operator=(const JournalReader&) = delete;

  const std::string& segment() const noexcept { return name_; }
  // The segment's incarnation: its creation time (CLOCK_REALTIME ns).
  std::uint64_t epoch() const noexcept { return epoch_; }
  std::uint32_t slot_count() const noexcept;
  JournalMode mode() const noexcept;
  const EngineConfig& config() const noexcept;
  bool closing() const noexcept;

  // Appends a record for each journal event from position() on, up to
  // `max`, stopping at the first position not yet written. Skips holes
  // (counted in `info`; the caller must resync after one). Never blocks.
  std::size_t read(std::vector<log::Record>& out, std::size_t max, JournalReadInfo& info);
  // The next position read() will look at, and how many events the
  // journal dropped so far (best-effort mode; monotonic).
  std::uint64_t position() const noexcept { return pos_; }
  std::uint64_t dropped() const noexcept;
  // Frees the cells read so far: call once their records are written to
  // the log (the page cache is enough: a sidecar crash then loses nothing).
  void release() noexcept;
  // Publishes that every event below `pos` (a position() value) is on disk,
  // waking producers that wait for a durable acknowledgement.
  void publish_durable(std::uint64_t pos) noexcept;
  // Waits up to `timeout_ns` for an event to be written. May block.
  void wait(std::int64_t timeout_ns) noexcept;
  // True if a producer waits for a durable acknowledgement now (racy).
  bool durable_waiters() const noexcept;
  // Records the reader's liveness for observers (taskring status).
  void heartbeat() noexcept;

  // Appends kTaskSnapshot records for every live task of the slot table;
  // with `free_slots`, also kFreed/kSlotFree records for the free slots (so
  // that a fold that starts here knows their generations).
  void snapshot(std::vector<log::Record>& out, bool free_slots);

 private:
  JournalReader() = default;
  bool fill(const void* body, std::int64_t wall_ns, log::Record& r);
  std::shared_ptr<detail::Engine> engine_;
  std::string name_;
  std::uint64_t epoch_ = 0;
  std::uint64_t pos_ = 0;
  std::int64_t waiting_since_ns_ = 0;  // when read() first found the cell at pos_ reserved or being written
};

// What putting a log's tasks back into a segment did.
struct LogRestoreReport {
  std::uint64_t resubmitted = 0;     // pending or running tasks submitted again
  std::uint64_t results_restored = 0;  // finished tasks whose outcome is readable again
  std::uint64_t expired = 0;         // finished longer ago than the segment's result_ttl: not restored
  std::uint64_t skipped = 0;         // could not be restored (see problems)
  std::vector<std::pair<std::uint64_t, std::uint64_t>> mapping;  // old task id -> new task id
  std::vector<std::string> problems;  // one line per skipped task: id, why
};

// Puts `tasks` (from LogState::live_tasks of earlier epochs) into segment
// `segment`: a pending or running task is submitted again (at-least-once:
// it may have run before the crash), a finished one is stored finished with
// its outcome while its result_ttl lasts (from its finish time). A kRecovered
// record is appended to `records` for each, for the caller to log. A task
// whose queue the segment lacks, or whose spec the log never got, is
// skipped and reported, not an error. Errors: attaching; kResourceExhausted
// if the segment is full.
Result<LogRestoreReport> restore_tasks(std::string_view segment, const std::vector<log::LiveTask>& tasks,
                                       std::vector<log::Record>& records);

}  // namespace taskring
