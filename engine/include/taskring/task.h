// Task vocabulary shared by the client, the worker and the tools: task ids,
// states, priorities and what a finished task hands back.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "taskring/base/status.h"

namespace taskring {

// A task id names one task for its whole life: [generation:32 | slot:32].
// A slot's generation grows every time the slot is freed, so an id is never
// confused with a later task in the same slot. Never 0.
struct TaskId {
  std::uint64_t value = 0;

  constexpr std::uint32_t slot() const noexcept { return static_cast<std::uint32_t>(value); }
  constexpr std::uint32_t generation() const noexcept { return static_cast<std::uint32_t>(value >> 32); }
  static constexpr TaskId make(std::uint32_t slot, std::uint32_t generation) noexcept {
    return TaskId{(std::uint64_t{generation} << 32) | slot};
  }
  constexpr bool valid() const noexcept { return generation() != 0; }
  friend constexpr bool operator==(TaskId a, TaskId b) noexcept { return a.value == b.value; }
};

// Parses a decimal task id as printed by the CLI. Errors name the value.
Result<TaskId> parse_task_id(std::string_view text);
std::string to_string(TaskId id);

enum class TaskState : std::uint8_t {
  kFree = 0,       // the slot holds no task
  kPending = 1,    // submitted, waiting in a queue ring or a worker's deque
  kRunning = 2,    // claimed by a worker, handler executing
  kSucceeded = 3,  // terminal: the handler returned a result
  kFailed = 4,     // terminal: the handler failed; the result is the error message
  kCancelled = 5,  // terminal: cancelled before or while running
};
inline constexpr int kTaskStateCount = 6;
std::string_view state_name(TaskState s) noexcept;
constexpr bool is_terminal(TaskState s) noexcept {
  return s == TaskState::kSucceeded || s == TaskState::kFailed || s == TaskState::kCancelled;
}

// Workers take higher priorities first; see docs/architecture.md for the
// anti-starvation rule that keeps lower priorities moving.
enum class Priority : std::uint8_t { kCritical = 0, kHigh = 1, kNormal = 2, kLow = 3 };
inline constexpr int kPriorityCount = 4;
std::string_view priority_name(Priority p) noexcept;
// Accepts critical, high, normal, low (or 0..3). Errors name the value.
Result<Priority> parse_priority(std::string_view text);

// Limits that the engine enforces on every task.
inline constexpr std::size_t kMaxTaskNameLength = 47;
inline constexpr std::size_t kMaxQueueNameLength = 31;
inline constexpr std::size_t kMaxQueues = 32;

// How a process ended (recorded on tasks whose worker died running them).
struct ExitReason {
  enum class Kind : std::uint8_t {
    kUnknown = 0,   // it vanished; whoever noticed could not learn how
    kExited = 1,    // it called exit(code)
    kSignaled = 2,  // it was killed by signal `code`
  };
  Kind kind = Kind::kUnknown;
  int code = 0;

  // From a waitpid() status.
  static ExitReason from_wait_status(int status) noexcept;
  // "killed by signal 9 (SIGKILL)", "exited with code 3", "died (exit reason unknown)".
  std::string describe() const;
  friend bool operator==(const ExitReason&, const ExitReason&) = default;
};

// Attempts a task gets when neither its submitter nor its handler says
// otherwise. A crash of the worker running it counts as a failed attempt.
inline constexpr std::uint32_t kDefaultMaxAttempts = 3;
inline constexpr std::uint32_t kMaxAttemptsLimit = 255;
// Crashes (worker deaths while running it) after which a task is
// quarantined, failing for good even with attempts left, unless its
// submitter says otherwise (SubmitOptions::max_crashes).
inline constexpr std::uint32_t kDefaultMaxCrashes = 3;

// What a finished task hands back to the producer.
struct TaskOutcome {
  TaskId id;
  TaskState state = TaskState::kFree;  // one of the terminal states
  // The result for kSucceeded, the error message for kFailed, empty or a
  // reason for kCancelled.
  std::string value;
  std::uint32_t attempts = 0;       // times a worker started it
  std::uint32_t crashes = 0;        // attempts that ended with the worker process dying
  std::uint32_t last_crash_pid = 0; // the worker that died last, 0 if none did
  ExitReason last_crash;            // how it died (meaningful when crashes > 0)
  bool timed_out = false;           // the last attempt outlived its time limit
  std::int64_t submit_ns = 0;  // CLOCK_MONOTONIC
  std::int64_t start_ns = 0;   // 0 if it never started
  std::int64_t finish_ns = 0;

  bool ok() const noexcept { return state == TaskState::kSucceeded; }
};

// A snapshot of a task that may still be running (Client::peek).
struct TaskInfo {
  TaskId id;
  TaskState state = TaskState::kFree;
  std::string task_name;
  std::string queue;
  Priority priority = Priority::kNormal;
  std::uint32_t attempts = 0;
  std::uint32_t max_attempts = 0;   // 0 until a worker or the submitter set it
  std::uint32_t max_crashes = 0;    // 0: kDefaultMaxCrashes
  std::uint32_t crashes = 0;
  std::uint32_t last_crash_pid = 0;
  ExitReason last_crash;
  int owner_worker = -1;   // registry index of the running worker, or -1
  bool cancel_requested = false;
  std::uint32_t payload_bytes = 0;
  std::string value;       // result or error, for terminal states
  std::string last_error;  // a pending or running task's previous attempt's error, if it failed
  std::int64_t submit_ns = 0;
  std::int64_t start_ns = 0;
  std::int64_t finish_ns = 0;  // 0 until the task is terminal
  std::int64_t run_at_ns = 0;  // a pending task's delayed start (CLOCK_MONOTONIC), 0 if none
  std::int64_t deadline_ns = 0;  // a running attempt's time limit (CLOCK_MONOTONIC), 0 if none
  bool timed_out = false;        // the running attempt outlived its time limit
  // The handler's last TaskContext::set_progress of this attempt (0 of 0:
  // none); kept once the task is terminal.
  std::uint32_t progress_done = 0;
  std::uint32_t progress_total = 0;
};

}  // namespace taskring
