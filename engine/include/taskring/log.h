// The durable log: segmented, checksummed, append-only files in one
// directory, written by the sidecar (`taskring sidecar`) and read by
// recovery and the `taskring log` tools. The byte format is in
// docs/formats/log.md; what survives which failure is in docs/durability.md.
//
// A log is a sequence of records numbered 1, 2, 3, ... without gaps, spread
// over files named `taskring-<first seq, 20 digits>.log`. Each file starts
// with a header (magic, format version, first sequence number) and holds
// whole records: a record never spans two files. Each record carries its
// length, type, sequence number and a CRC32C over all of it.
//
// Thread safety: a LogWriter or LogReader is used by one thread at a time.
// One writer per directory (the sidecar holds an flock on it); any number of
// readers may read while it writes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/task.h"

namespace taskring::log {

inline constexpr std::uint32_t kFormatVersion = 1;
// Largest body a record may have: the largest payload a segment accepts
// plus room for the fixed fields. A length above it is corruption.
inline constexpr std::uint32_t kMaxRecordBody = (1u << 30) + 4096;

enum class RecordType : std::uint8_t {
  kSegmentAttached = 1,  // a sidecar attached to segment `text` of epoch `epoch`; aux = slot count
  kSubmitted = 2,        // a task was published; `spec` holds what was submitted
  kStarted = 3,          // a worker claimed it; aux = worker registry index
  kRequeued = 4,         // pending again; aux = RequeueReason
  kSucceeded = 5,        // terminal; `result` holds the result
  kFailed = 6,           // terminal, failed for good (a dead letter); `result` holds the error
  kCancelled = 7,        // terminal
  kFreed = 8,            // the slot moved on; aux = FreeReason
  kTaskSnapshot = 9,     // the whole state of a live task (resync and compaction)
  kResyncBegin = 10,     // a snapshot of segment epoch `epoch` follows; aux = ResyncReason,
                         // state_word = journal events dropped since the last one
  kResyncEnd = 11,       // end of that snapshot; aux = tasks in it
  kRecovered = 12,       // task (other_epoch, other_id) of an earlier segment was
                         // resubmitted as (epoch, task_id)
};
inline constexpr int kRecordTypeCount = 13;  // 1..12 are used
// "submitted", "started", ... ; "unknown" for values outside the enum.
std::string_view record_type_name(RecordType t) noexcept;

enum class RequeueReason : std::uint32_t {
  kRetry = 1,     // a failed attempt with attempts left
  kCrash = 2,     // its worker died; recovery requeued it
  kAudit = 3,     // the lost-reference audit found it unnamed
  kManual = 4,    // Client::requeue of a dead letter
};
enum class FreeReason : std::uint32_t {
  kConsumed = 1,   // its outcome was read (try_get, wait)
  kReleased = 2,   // released or detached: nobody reads it
  kExpired = 3,    // result_ttl passed
  kPurged = 4,     // a dead letter was purged
  kWithdrawn = 5,  // the submit failed after publishing and was undone
  kSlotFree = 6,   // snapshot of a free slot: task_id's generation is the next one
};
enum class ResyncReason : std::uint32_t {
  kStart = 1,       // the sidecar started (what it missed while down is unknown)
  kDropped = 2,     // the journal dropped events (best-effort mode)
  kHole = 3,        // a journal cell was reserved and never written (its writer died)
  kCompaction = 4,  // the first records of a new file after compaction
};

// What a submit fixed about a task.
struct TaskSpec {
  std::string queue;            // queue name (not index: a new segment may order them differently)
  std::string name;             // task name
  std::uint8_t priority = 2;    // taskring::Priority
  std::uint8_t max_attempts = 0;
  std::uint8_t max_crashes = 0;
  bool detached = false;
  std::uint32_t time_limit_ms = 0;
  std::int64_t run_at_wall_ns = 0;  // CLOCK_REALTIME before which it must not start; 0: none
  std::string payload;
  friend bool operator==(const TaskSpec&, const TaskSpec&) = default;
};

struct Record {
  RecordType type = RecordType::kSubmitted;
  std::uint64_t seq = 0;         // assigned by LogWriter::append; read back by LogReader
  std::int64_t wall_ns = 0;      // CLOCK_REALTIME when the sidecar logged it
  std::uint64_t epoch = 0;       // the segment incarnation task_id belongs to
  std::uint64_t task_id = 0;     // generation << 32 | slot; 0 for records about no task
  std::uint64_t state_word = 0;  // the engine's state word after the transition (see kResyncBegin)
  std::uint32_t pid = 0;         // the process that made the transition; 0: unknown
  std::uint32_t aux = 0;         // by type, see RecordType
  std::optional<TaskSpec> spec;        // kSubmitted, kTaskSnapshot
  std::optional<std::string> result;   // kSucceeded, kFailed, kCancelled, terminal kTaskSnapshot
  bool payload_missing = false;  // kSubmitted: the slot moved on before the sidecar copied it (finished)
  bool result_missing = false;   // terminal: the result was read before the sidecar copied it
  std::string text;              // kSegmentAttached: segment name; kResyncBegin: why, for people
  std::uint64_t other_epoch = 0; // kRecovered: the earlier segment's epoch
  std::uint64_t other_id = 0;    // kRecovered: the task's id there
  friend bool operator==(const Record&, const Record&) = default;
};

// Serialises `r` (its seq included) to the on-disk bytes, header and CRC
// included, appending to `out`.
void encode(const Record& r, std::string& out);
// The number of bytes encode(r) appends. encode requires that the body
// (this minus the 20-byte record header) is at most kMaxRecordBody and that
// the queue and task names fit kMaxQueueNameLength and kMaxTaskNameLength
// (it asserts: a record the decoder would reject is a bug). A caller that
// may meet a larger payload plus result checks here first and sets
// payload_missing or result_missing instead. Never allocates.
std::size_t encoded_size(const Record& r) noexcept;
// Parses one record from the front of `bytes`. On success sets `used` to its
// size in bytes. Errors (kDataLoss) say what is wrong: "truncated header",
// "truncated body", "CRC mismatch", "length N above the limit", "unknown
// type N", "field X overruns the body"; they never read outside `bytes`.
Result<Record> decode(std::string_view bytes, std::size_t& used);

// CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE 4.2.
std::uint32_t crc32c(std::string_view bytes, std::uint32_t seed = 0) noexcept;

struct LogOptions {
  std::uint64_t file_bytes = 64ull << 20;  // start a new file once one reaches this size
};

// What opening a log for writing repaired at its tail.
struct RepairReport {
  bool truncated = false;
  std::string file;                 // the file cut, if any
  std::uint64_t offset = 0;         // where it was cut
  std::uint64_t bytes_dropped = 0;
  std::string reason;               // e.g. "truncated body at offset 4096 (record 17 claims 300 bytes, 120 remain)"
};

class LogWriter {
 public:
  // Opens (creating the directory and a first file if need be) the log in
  // `dir` for appending. A torn or corrupt tail of the last file (a bad
  // record after which no valid record follows) is truncated at the last
  // whole record and described in `report`; corruption anywhere else, a
  // wrong version or a sequence gap is an error naming the file and offset.
  // Takes an exclusive flock on the directory: a second writer gets
  // kFailedPrecondition naming the directory.
  static Result<LogWriter> open(const std::string& dir, const LogOptions& options, RepairReport* report = nullptr);
  LogWriter(LogWriter&&) noexcept;
  LogWriter& operator=(LogWriter&&) noexcept;
  ~LogWriter();

  // Gives `r` the next sequence number, encodes it into the in-memory batch
  // and returns that number. Nothing reaches the file until write().
  std::uint64_t append(Record& r);
  // write(2)s the batch, starting a new file first whenever the current one
  // has reached file_bytes. Returns kInternal naming the file on an I/O error.
  Status write();
  // fdatasync()s every file written since the last sync (and the directory
  // after a file was created). After it returns OK, every record appended
  // before the last write() is durable.
  Status sync();
  // The next record appended goes to a new file (compaction).
  Status start_new_file();
  // Deletes every file whose records all have seq < `seq` (never the file
  // being written). Returns how many files were removed.
  Result<std::size_t> remove_files_before(std::uint64_t seq);

  std::uint64_t next_seq() const noexcept;
  std::uint64_t bytes_on_disk() const noexcept;  // all files, after the last write()
  const std::string& dir() const noexcept;

 private:
  struct Impl;
  explicit LogWriter(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

struct FileInfo {
  std::string path;
  std::uint64_t first_seq = 0;
  std::uint64_t last_seq = 0;   // first_seq - 1 when empty
  std::uint64_t bytes = 0;
};

struct ReadReport {
  std::vector<FileInfo> files;
  std::uint64_t records = 0;
  std::uint64_t first_seq = 0;  // 0 when the log is empty
  std::uint64_t last_seq = 0;
  bool torn_tail = false;       // the last file ends in a bad record with nothing valid after it
  std::string tail_file;
  std::uint64_t tail_offset = 0;
  std::uint64_t tail_bytes = 0;
  std::string tail_reason;
};

// Reads every record of the log in `dir` in sequence order and calls `fn`
// with each; stops early (OK) when `fn` returns false. A torn tail is not an
// error: it ends the read and is described in the report. Everything else
// wrong (a file with a bad header, a wrong version, a bad record before the
// tail, a sequence gap between or inside files) is kDataLoss naming the
// file and the byte offset. A missing directory is kNotFound.
// `from_seq`: skip records before it (files wholly before it are not read).
Result<ReadReport> read_log(const std::string& dir, const std::function<bool(const Record&)>& fn,
                            std::uint64_t from_seq = 0);

// Follows a log while its writer appends to it (`taskring log tail`): each
// poll() delivers the records that became complete since the previous one,
// in sequence order, following the writer into each new file. A record still
// being written (a torn tail of the newest file) waits for a later poll; the
// same in a file that a newer one follows is kDataLoss. Files removed by
// remove_files_before while followed are read to their end first.
class LogFollower {
 public:
  // Starts at `from_seq` (records before it are skipped; if the log has
  // none that early it starts at its first), or with 0 after the last record
  // complete now. A missing directory is kNotFound; a bad file header or a
  // record that is corrupt rather than torn is kDataLoss naming the file.
  static Result<LogFollower> open(const std::string& dir, std::uint64_t from_seq = 0);
  LogFollower(LogFollower&&) noexcept;
  LogFollower& operator=(LogFollower&&) noexcept;
  ~LogFollower();

  // Calls `fn` with each record complete now and not yet delivered; stops
  // early when `fn` returns false (the record it was given counts as
  // delivered). Returns how many records `fn` received. Errors as read_log.
  // Never blocks: it reads what is there and returns.
  Result<std::uint64_t> poll(const std::function<bool(const Record&)>& fn);
  // The sequence number of the next record the log will deliver or skip.
  std::uint64_t next_seq() const noexcept;

 private:
  struct Impl;
  explicit LogFollower(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskring::log
