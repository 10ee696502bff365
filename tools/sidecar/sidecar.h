// The sidecar: one process per segment that mirrors every task state change
// from the segment's journal to the durable log (taskring/log.h), with group
// commit, publishes how far the log is durable (durable acknowledgements),
// resynchronises from the slot table after a gap, compacts old log files
// away, and at start puts the tasks of earlier segments back (recovery).
// `taskring sidecar` runs it; `taskring recover --log-dir` runs its
// recovery alone; the load harness embeds it. docs/durability.md explains
// the modes and what survives which failure.
//
// Thread safety: a Sidecar is driven by one thread (run or step); stats()
// may be read from that thread only. Its restore thread is internal.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/journal_reader.h"
#include "taskring/log.h"
#include "taskring/log_state.h"

namespace taskring::sidecar {

// When the log is fdatasync'ed, and so when a durable acknowledgement is given.
struct FsyncPolicy {
  enum class Kind : std::uint8_t {
    kAlways,    // after every batch, before acknowledging it
    kInterval,  // at most every interval_ns; acknowledgements wait for it
    kNever,     // never: acknowledged once in the page cache (survives a process crash, not power loss)
  };
  Kind kind = Kind::kAlways;
  std::int64_t interval_ns = 0;
};
// Accepts "always", "never" and "interval:MS" (MS a whole number of
// milliseconds, 1..3600000). Errors name the value and what is accepted.
Result<FsyncPolicy> parse_fsync_policy(std::string_view text);
std::string fsync_policy_text(const FsyncPolicy& p);

struct SidecarOptions {
  std::string segment;
  std::string log_dir;
  FsyncPolicy fsync;
  std::uint64_t file_bytes = 64ull << 20;     // start a new log file at this size
  // Compact once the log's files add up to this many bytes: a new file
  // starts with a snapshot of the live tasks and the older files are
  // removed. 0: never.
  std::uint64_t compact_bytes = 256ull << 20;
  std::size_t batch = 8192;                   // journal events per write at most
  bool restore = true;                        // put earlier segments' tasks back at start
};

struct SidecarStats {
  std::uint64_t events = 0;          // journal events mirrored
  std::uint64_t records = 0;         // log records written (events, snapshots, markers)
  std::uint64_t writes = 0;          // write batches
  std::uint64_t syncs = 0;           // fdatasyncs
  std::uint64_t sync_ns_total = 0;
  std::uint64_t sync_ns_max = 0;
  std::uint64_t submits_synced = 0;  // kSubmitted records covered by those syncs
  std::uint64_t resyncs = 0;
  std::uint64_t holes = 0;           // journal cells skipped (writer died)
  std::uint64_t dropped = 0;         // events the journal dropped (best-effort), as counted by it
  std::uint64_t bad_events = 0;
  std::uint64_t compactions = 0;
  std::uint64_t files_removed = 0;
  std::uint64_t durable_position = 0;
};

// What start() found and did.
struct StartReport {
  log::RepairReport repair;          // a torn tail cut from the log
  log::ReadReport read;              // the log as found
  std::uint64_t epoch = 0;           // the segment's
  bool log_knew_segment = false;     // the log already had records of this segment (a restart)
  std::size_t tasks_to_restore = 0;  // live tasks of earlier segments
};

class Sidecar {
 public:
  // Attaches to the segment (taking its journal's reader role), opens the
  // log (repairing a torn tail), folds it, logs a kSegmentAttached and a
  // snapshot of the slot table, and starts putting earlier segments' live
  // tasks back (in a thread, so that their journal events can be drained).
  // Errors: the segment's (no journal, another sidecar), the log's
  // (corruption names the file and offset, another writer).
  static Result<std::unique_ptr<Sidecar>> start(const SidecarOptions& options, StartReport* report = nullptr);
  ~Sidecar();

  // Mirrors until `stop` is set or the segment is destroyed, then writes and
  // syncs what it has. Errors: the log's I/O errors (the sidecar cannot go
  // on; producers waiting for durability time out).
  Status run(const std::atomic<bool>& stop);
  // One turn of run(): read what the journal has, write it, sync as the
  // policy says, resync or compact if due. `wait_ns` > 0: park up to that
  // long first when the journal is empty. Returns the events mirrored.
  Result<std::size_t> step(std::int64_t wait_ns);
  // Writes and syncs everything read so far, and publishes it as durable.
  Status flush();
  // Waits for the restore thread, then flush(): the last call before exit.
  Status finish();
  // True once the segment is being destroyed.
  bool closing() const noexcept { return reader_->closing(); }

  // True once the restore begun by start() has finished (also when there
  // was nothing to restore), and its report.
  bool restore_done() const noexcept;
  LogRestoreReport restore_report() const;

  const SidecarStats& stats() const noexcept { return stats_; }
  const SidecarOptions& options() const noexcept { return options_; }
  std::uint64_t epoch() const noexcept { return reader_->epoch(); }

 private:
  Sidecar() = default;
  // How long the sidecar may hold back a small write while nobody waits
  // for a durable acknowledgement, to batch events into fewer write()s.
  static constexpr std::int64_t kWriteDelayNs = 1'000'000;
  void append(std::vector<log::Record>& records);
  // True if this step's records may wait for the next step's (see kWriteDelayNs).
  bool hold_back(std::size_t read);
  Status write_and_sync(bool force_sync);
  Status resync(log::ResyncReason why, std::uint64_t dropped);
  Status compact();

  SidecarOptions options_;
  std::unique_ptr<JournalReader> reader_;
  std::unique_ptr<log::LogWriter> writer_;
  SidecarStats stats_;
  std::vector<log::Record> batch_;
  std::uint64_t written_pos_ = 0;        // journal position below which events are written
  std::uint64_t synced_pos_ = 0;         // ... and synced
  std::uint64_t unsynced_submits_ = 0;
  bool unwritten_ = false;  // records appended since the last write()
  std::uint64_t unwritten_records_ = 0;
  std::int64_t first_unwritten_ns_ = 0;  // when the oldest of them was appended (0: none)
  bool unsynced_ = false;   // records written since the last sync()
  std::int64_t last_sync_ns_ = 0;
  std::uint64_t dropped_seen_ = 0;
  // The restore thread hands its kRecovered records over here, and the
  // live tasks of earlier segments it could not put back: those are kept in
  // every compaction snapshot so that they are not lost with old files.
  mutable std::mutex restore_mu_;
  std::vector<log::LiveTask> unrestored_;
  std::vector<log::Record> restored_records_;
  LogRestoreReport restore_report_;
  std::atomic<bool> restore_done_{true};
  std::thread restore_thread_;
};

// `taskring recover --log-dir`: runs a sidecar until it has put every
// earlier segment's live task back and mirrored their submissions, then
// syncs and stops. Errors: start()'s and run()'s.
Result<LogRestoreReport> recover_from_log(const SidecarOptions& options, StartReport* report = nullptr);

}  // namespace taskring::sidecar
