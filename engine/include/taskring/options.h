// Configuration of a segment (fixed at creation), and per-call options for
// submitting tasks and running workers.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/task.h"

namespace taskring {

// What the journal (the ring the sidecar mirrors to the durable log,
// docs/durability.md) does with a state change when it is full.
enum class JournalMode : std::uint8_t {
  kOff = 0,         // no journal: nothing is mirrored; durable submits are refused
  kBestEffort = 1,  // a full journal drops the event and counts it; the sidecar
                    // then resynchronises from the slot table (never a silent gap)
  kDurable = 2,     // a full journal makes the process that changed the state wait, without a
                    // time limit (only a durable submit's own event honours its timeout_ns)
};
std::string_view journal_mode_name(JournalMode m) noexcept;
// Accepts off, best-effort, durable. Errors name the value.
Result<JournalMode> parse_journal_mode(std::string_view text);

// Everything the segment layout depends on. Fixed when the segment is created.
struct EngineConfig {
  std::uint32_t slots = 65536;              // task slots: tasks in flight plus unread results
  std::vector<std::string> queues = {"default"};  // queue names, 1..kMaxQueues
  std::uint32_t ring_capacity = 16384;      // per queue and priority; power of two
  std::uint32_t max_payload = 1 << 20;      // bytes, for payloads and results
  std::uint64_t payload_area = 64 << 20;    // bytes of the shared block arena
  std::uint32_t max_workers = 64;           // worker registry entries, 1..254
  std::uint32_t deque_capacity = 256;       // per-worker claimed-task deque; power of two
  unsigned mode = 0600;                     // file mode of the segment
  // How long a finished task's outcome is kept for a reader before its slot
  // is freed anyway (measured from its finish); 0: until it is read. Tasks
  // that failed for good (the dead letters) are kept as long.
  std::uint64_t result_ttl_ns = 3'600'000'000'000;
  // The journal of state changes for the sidecar, and its size in records
  // (a power of two, 64..2^24; 64 bytes each).
  JournalMode journal = JournalMode::kOff;
  std::uint32_t journal_capacity = 65536;

  // Checks every field; the error names the field, the value and what is
  // accepted, e.g. "ring_capacity 3: must be a power of two between 64 and 16777216".
  Status validate() const;
};

// What submit does when a queue ring, the slot table or the payload area is full.
enum class FullPolicy : std::uint8_t {
  kFail,  // return kResourceExhausted at once
  kWait,  // wait (spin, then park) up to SubmitOptions::timeout_ns, then fail
};

struct SubmitOptions {
  std::string_view queue = {};           // empty: the first queue of the segment
  Priority priority = Priority::kNormal;
  FullPolicy on_full = FullPolicy::kWait;
  std::int64_t timeout_ns = -1;          // for kWait: < 0 waits without limit
  // Fire-and-forget: nobody will read the result; the slot is freed as soon
  // as the task finishes. wait()/try_get() on the id report not found.
  bool detached = false;
  // Most times the task may be started (a crash of its worker counts as a
  // failed attempt); 1..kMaxAttemptsLimit, or 0 for the handler's default
  // (HandlerOptions), else kDefaultMaxAttempts.
  std::uint32_t max_attempts = 0;
  // Worker deaths while running it after which the task is quarantined (it
  // fails for good, a dead letter, even with attempts left); 1..255, or 0
  // for kDefaultMaxCrashes.
  std::uint32_t max_crashes = 0;
  // Delayed start: the task waits in the segment (not in its queue) until
  // run_at_ns, a CLOCK_MONOTONIC time in nanoseconds (the clock of
  // std::chrono::steady_clock on Linux), or until delay_ns after the submit.
  // At most one of the two may be non-zero; 0 for both: claimable at once.
  // A time already past runs at once.
  std::int64_t delay_ns = 0;
  std::int64_t run_at_ns = 0;
  // Longest a single attempt may run, in nanoseconds (whole milliseconds,
  // 1 ms to about 49 days); 0: the handler's HandlerOptions::time_limit_ns.
  // Past it the task's cancel flag is raised (timed out); a handler that
  // does not return within its kill grace has its worker process killed by
  // a watchdog (another worker or the supervisor). Either way the attempt
  // failed, and is retried if attempts are left.
  std::int64_t time_limit_ns = 0;
  // Durable acknowledgement: submit returns only once the sidecar has the
  // task's record on disk (as its --fsync policy defines it), waiting up to
  // timeout_ns. Needs a segment whose journal is not off. A journal that is
  // full makes this submit wait for room even in best-effort mode (also up
  // to timeout_ns). On kDeadlineExceeded the task was submitted (its id is
  // in the message) and runs; only its durability is unknown.
  bool durable = false;
  // Polled by the submitting thread while it waits (for room under kWait,
  // at most every 10 ms; for the sidecar when durable, at most every 100
  // ms): returning true ends the wait with kCancelled. For bindings that
  // must let Ctrl-C through (Python). A durable submit cancelled this way
  // was submitted, as on kDeadlineExceeded. nullptr: never.
  bool (*interrupted)(void* arg) = nullptr;
  void* interrupt_arg = nullptr;
};

struct WorkerOptions {
  std::vector<std::string> queues;  // empty: every queue of the segment
  int cpu = -1;                     // pin the running thread to this CPU; -1: no pinning
  std::uint32_t claim_batch = 16;   // tasks taken from a queue ring at once, 1..deque_capacity
  std::uint32_t spin_rounds = 256;  // idle polls before yielding, then parking
  std::int64_t park_timeout_ns = 1'000'000'000;  // longest park before a heartbeat
  bool steal = true;                // take work from other workers' deques when idle
};

}  // namespace taskring
