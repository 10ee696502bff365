// taskring::Client: the producer side. Attaches to a segment, submits tasks
// (one at a time or in batches), waits for results, cancels.
//
// Thread safety: every method of one Client may be called from many threads
// at once; the client keeps no mutable local state. Several clients in
// several processes may use one segment at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/options.h"
#include "taskring/task.h"

namespace taskring {

namespace detail { class Engine; }

// One task of a batch: the name of its handler and its payload bytes.
struct TaskSpec {
  std::string_view task;
  std::string_view payload;
};

enum class CancelOutcome {
  kCancelled,        // it was pending: it will never run; its state is kCancelled
  kRequested,        // it is running: the cancel flag is set; the handler may stop early
  kAlreadyFinished,  // it had already reached a terminal state
};

class Client {
 public:
  // Attaches to segment `name` read-write. Errors are those of segment
  // validation (not found, permission denied, failed precondition, data loss).
  static Result<Client> attach(std::string_view segment);

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Submits one task running handler `task` with `payload`. Returns its id.
  // Errors: kInvalidArgument (task name empty or over kMaxTaskNameLength,
  // payload over max_payload, unknown queue, bad priority);
  // kResourceExhausted (ring, slots or payload area full and on_full is kFail
  // or the timeout passed); kFailedPrecondition (the segment is closing).
  // Lock-free, no heap allocation on success. May block under kWait.
  Result<TaskId> submit(std::string_view task, std::string_view payload,
                        const SubmitOptions& options = {}) noexcept;

  // Submits `tasks` into one queue and priority. Writes the ids of the
  // submitted tasks to the front of `ids` (which must be at least as long)
  // and returns how many were submitted: all of them, unless a full
  // structure stopped it under the options' policy, in which case the rest
  // were not submitted and the error is returned only if none was. Invalid
  // input fails the whole batch before anything is submitted.
  Result<std::size_t> submit_batch(std::span<const TaskSpec> tasks, std::span<TaskId> ids,
                                   const SubmitOptions& options = {}) noexcept;

  // Waits until task `id` finishes, returns its outcome and frees its slot
  // (a result is read once). timeout_ns < 0 waits without limit.
  // Errors: kNotFound (unknown id, already read, or detached);
  // kDeadlineExceeded (still not finished; the task is untouched).
  // Spins briefly, then parks on a futex. May block.
  Result<TaskOutcome> wait(TaskId id, std::int64_t timeout_ns = -1);
  // Non-blocking: the outcome (and the slot freed) if `id` has finished,
  // std::nullopt if it has not. Errors: kNotFound.
  Result<std::optional<TaskOutcome>> try_get(TaskId id);
  // A snapshot of task `id` without consuming its result. Errors: kNotFound.
  Result<TaskInfo> peek(TaskId id) const;
  // Cancels task `id`: a pending task never runs (exactly one of cancel and
  // a worker's claim wins); a running one gets its cancel flag set.
  // Errors: kNotFound.
  Result<CancelOutcome> cancel(TaskId id);
  // Gives up interest in `id`: its slot is freed as soon as it finishes (or
  // now, if it has). Errors: kNotFound.
  Status release(TaskId id);

  // The dead-letter queue: tasks that failed for good (attempts used up,
  // quarantined after crashes, or a last attempt that timed out) and are
  // still in the segment, because nobody read them yet or because they were
  // detached (a failed detached task is kept, not freed). Oldest failure
  // first, at most `limit`. Each stays until read (wait/try_get), requeued,
  // released, or the segment's result retention passes. Reads every slot.
  Result<std::vector<TaskInfo>> dead_letters(std::size_t limit = SIZE_MAX) const;
  // Puts a dead letter back in its queue with fresh attempts, under the
  // same id; its last error stays visible until the next attempt ends.
  // Errors: kNotFound; kFailedPrecondition (the task is not failed).
  Status requeue(TaskId id);
  // Frees a dead letter (a failed task) and its outcome, in one CAS that
  // succeeds only while it is failed. Errors: kNotFound; kFailedPrecondition
  // (the task is not failed: it was never a dead letter, or was requeued).
  Status purge(TaskId id);

  // ---- Waiting for many tasks at once (completion threads, event loops)
  // One thread can wait for any of many tasks with this protocol:
  //   seq = listen_completions();
  //   check the tasks it waits for (try_get or peek);
  //   if none has finished: wait_completions(seq, timeout);
  //   unlisten_completions();
  // A task that finishes after listen_completions() is either seen by the
  // check or wakes the wait. While a listener is registered every finishing
  // task in the segment costs one futex wake; a process that dies between
  // listen and unlisten leaves that cost behind (never a wrong result).
  // Registers a listener and returns the completion sequence to wait on.
  std::uint32_t listen_completions() noexcept;
  void unlisten_completions() noexcept;
  // Parks until a task finishes after `seq` was read, timeout_ns passes
  // (< 0: no limit) or the segment is closing, but never longer than 100 ms
  // at a time (the caller re-checks and may recover dead workers). Returns
  // false if it timed out without a wake. May block.
  bool wait_completions(std::uint32_t seq, std::int64_t timeout_ns) noexcept;
  // Wakes every completion listener of the segment (in any process) as a
  // finishing task would, e.g. to make a collecting thread look at a task
  // it was just asked to watch. Spurious wakes are harmless.
  void wake_completion_listeners() noexcept;

  // Names of the segment's queues, in creation order.
  std::vector<std::string> queues() const;
  const EngineConfig& config() const noexcept;

 private:
  explicit Client(std::shared_ptr<detail::Engine> engine);
  std::shared_ptr<detail::Engine> engine_;
};

}  // namespace taskring
