// The durability scenarios of taskring-bench (`taskring-bench durability
// throughput|ack|recovery`; docs/benchmarking.md explains them and their
// JSON):
//   - throughput: the same workload over taskring without a journal and
//     with a journal and a sidecar (default --fsync never), in one
//     invocation, reported as a ratio;
//   - ack: durable submits under load with --fsync always, beside the
//     fdatasync latency the harness measures in the log directory itself;
//   - recovery: a synthetic log of N records written with LogWriter, then
//     read_log and the LogState fold timed (cold and warm), optionally
//     restoring the live tasks into a segment.
// The pieces that do not run load (the fdatasync probe, the synthetic log,
// the timed recovery) are functions here so that tests can drive them.
//
// Thread safety: functions of their arguments; the commands fork (through
// run_load) and must run in a process with one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "histogram.h"
#include "taskring/base/status.h"
#include "taskring/log.h"
#include "taskring/log_state.h"

namespace taskring::bench {

// The file system `dir` is on: "ext4", "xfs", "btrfs", "tmpfs", "overlay",
// "nfs", "zfs", "f2fs", or "0x<magic>" for another; "unknown" if statfs
// fails. On tmpfs an fdatasync is free, and durable figures mean nothing.
std::string filesystem_name(const std::string& dir);

// What probe_fdatasync measured: one sample per write + fdatasync pair.
struct FsyncProbe {
  std::string dir;
  std::string filesystem;
  std::uint32_t bytes = 0;
  Histogram latency;
};
// Appends `bytes` to a fresh file in `dir` and fdatasyncs it, `count` times
// (so each sync also carries the file's growing size, as the log's do),
// timing each pair; removes the file. Errors: kInvalidArgument for a count
// or size of 0; kInternal naming the file and the failing call. May block.
Result<FsyncProbe> probe_fdatasync(const std::string& dir, std::uint32_t count, std::uint32_t bytes);

// A synthetic log of the kind a sidecar writes for a steady workload: a
// sidecar start (kSegmentAttached, then a resync with a kSlotFree snapshot
// of every slot), then tasks that each leave kSubmitted, kStarted,
// kSucceeded and kFreed, interleaved as in a closed loop (a task starts 32
// submissions after its own, succeeds right after, and is freed 256
// submissions after its own). Slots are reused LIFO as the engine's free
// stack does, so generations and tags advance as they would. `live` tasks,
// spread over the log, are never freed: a third stay pending, a third
// running, a third succeeded with their result unread. The log stops after
// exactly `records` records, as if the host lost power there: the tasks in
// flight then are live too.
struct SyntheticLogSpec {
  std::uint64_t records = 10'000'000;
  std::uint32_t live = 2048;
  std::uint32_t payload = 32;   // bytes per task payload; results are 32 bytes (a receipt)
  std::uint32_t slots = 65536;  // the segment's slot count
  // Checks the fields and their combination (the error names the flag:
  // --records, --live, --slots, --payload).
  Status validate() const;
};
struct SyntheticLog {
  std::uint64_t records = 0;   // written, the start's included
  std::uint64_t tasks = 0;     // tasks with a kSubmitted in the log
  std::uint64_t bytes = 0;     // on disk
  std::uint64_t files = 0;
  double write_s = 0;          // encoding, write(2) and the final fdatasync
  // What the fold must find live (deliberately and in flight at the cut).
  std::uint64_t live_pending = 0, live_running = 0, live_succeeded = 0;
};
// Writes `spec`'s log into `dir` (which must be empty or missing) with
// LogWriter and fdatasyncs it. Errors: spec.validate()'s; LogWriter's.
// May block.
Result<SyntheticLog> write_synthetic_log(const std::string& dir, const SyntheticLogSpec& spec);

// Asks the kernel to drop `dir`'s log files from the page cache
// (posix_fadvise DONTNEED; they must be synced) and returns the fraction of
// their pages still resident afterwards (mincore), 0..1.
Result<double> evict_log_from_cache(const std::string& dir);

// One timed recovery pass over a log: read_log, and with `fold` the LogState
// fold and its live_tasks() (what a sidecar does at start).
struct RecoveryPass {
  double seconds = 0;
  log::ReadReport read;
  log::StateCounts counts;               // with `fold`
  std::vector<log::LiveTask> live;       // with `fold`
};
Result<RecoveryPass> time_recovery(const std::string& dir, bool fold);

}  // namespace taskring::bench
