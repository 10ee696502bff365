// taskring::Worker: the consumer side. Registers in the segment's worker
// registry, holds handlers by task name, and runs the claim loop: its own
// deque first, then a batch from the queue rings by priority, then stealing
// from other workers, then spin, yield and park on a futex.
//
// Thread safety: register_handler before run(); run() on one thread; stop()
// from any thread or a signal handler. stats() from any thread (racy reads of
// single-writer counters).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/options.h"
#include "taskring/task.h"

namespace taskring {

namespace detail { class WorkerImpl; }

// What a handler sees of the task it runs, and how it reports the outcome.
// Valid only during the handler call.
class TaskContext {
 public:
  TaskId id() const noexcept { return id_; }
  std::string_view task_name() const noexcept { return task_name_; }
  std::string_view payload() const noexcept { return payload_; }
  Priority priority() const noexcept { return priority_; }
  std::uint32_t attempt() const noexcept { return attempt_; }
  // True once somebody asked to cancel this task; a handler that polls it
  // and returns early ends the task as cancelled.
  bool cancel_requested() const noexcept;
  // Reports how far the handler got, e.g. 3 of 10 files, for observers
  // (Client::peek's TaskInfo::progress_done and progress_total). A later
  // call replaces it; a retry starts again from 0 of 0.
  void set_progress(std::uint32_t done, std::uint32_t total) noexcept;
  // Sets the result bytes (succeeded). A later call replaces it.
  void set_result(std::string_view bytes);
  // Marks the task failed with `message` as its error.
  void fail(std::string_view message);

 private:
  friend class detail::WorkerImpl;
  TaskContext() = default;
  detail::WorkerImpl* worker_ = nullptr;
  TaskId id_;
  std::string_view task_name_;
  std::string_view payload_;
  Priority priority_ = Priority::kNormal;
  std::uint32_t attempt_ = 0;
  const std::atomic<std::uint64_t>* state_ = nullptr;
  std::atomic<std::uint64_t>* progress_ = nullptr;
  bool failed_ = false;
  std::string result_;
};

// A handler runs one task. It reports a result with ctx.set_result, an error
// with ctx.fail or by throwing std::exception; if it returns after seeing
// ctx.cancel_requested() without setting anything, the task is cancelled.
using Handler = std::function<void(TaskContext&)>;

// Per-handler settings.
struct HandlerOptions {
  // Most times a task of this handler may be started when its submitter did
  // not say (SubmitOptions::max_attempts); 0: kDefaultMaxAttempts. A failed
  // attempt (ctx.fail, an exception, or the worker process dying) with
  // attempts left puts the task back in its queue.
  std::uint32_t max_attempts = 0;
  // The wait before a failed attempt's retry: retry_backoff_ns after the
  // first failure, doubling at each further one up to retry_backoff_max_ns,
  // each wait drawn at random from its upper half (jitter, so that tasks
  // that failed together do not retry together). A crashed attempt is
  // retried at once. 0 for both: retry at once.
  std::int64_t retry_backoff_ns = 10'000'000;
  std::int64_t retry_backoff_max_ns = 10'000'000'000;
  // Time limit of one attempt when the submitter gave none (0: none), and
  // how long after its cancel flag is raised (time limit or Client::cancel)
  // a handler may keep running before a watchdog kills its worker process.
  // Whole milliseconds.
  std::int64_t time_limit_ns = 0;
  std::int64_t kill_grace_ns = 5'000'000'000;
};

// Where plugins put their handlers: a plugin .so exports
//   extern "C" void taskring_register_handlers(taskring::HandlerRegistry&);
class HandlerRegistry {
 public:
  virtual ~HandlerRegistry() = default;
  // Errors: kInvalidArgument (name empty or too long), kAlreadyExists.
  virtual Status register_handler(std::string_view task, Handler handler) = 0;
  // As above, with per-handler settings. Errors also: kInvalidArgument (a
  // setting out of range).
  virtual Status register_handler(std::string_view task, Handler handler, const HandlerOptions& options) = 0;
};

struct WorkerStats {
  int index = -1;                 // registry index
  std::uint64_t claimed = 0;      // tasks moved from pending to running
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t cancelled = 0;    // tasks this worker ran that ended cancelled (cancel requested while running)
  std::uint64_t retried = 0;      // failed attempts this worker put back in their queue
  std::uint64_t stolen = 0;       // tasks taken from other workers' deques
  std::uint64_t parks = 0;        // times the worker went to sleep on the futex
};

class Worker : public HandlerRegistry {
 public:
  // Attaches to `segment` and takes a registry entry. Errors: those of
  // attach; kInvalidArgument (unknown queue, bad cpu or claim_batch);
  // kResourceExhausted (registry full).
  static Result<std::unique_ptr<Worker>> attach(std::string_view segment, const WorkerOptions& options = {});
  ~Worker() override;

  Status register_handler(std::string_view task, Handler handler) override;
  // As above, with per-handler settings. Errors also: kInvalidArgument
  // (max_attempts over kMaxAttemptsLimit).
  Status register_handler(std::string_view task, Handler handler, const HandlerOptions& options) override;
  // Registers the built-in handlers noop, echo, sleep, spin and fail
  // (docs/cli.md describes them).
  void register_builtins();

  // Runs the claim loop until stop() is called, the segment is drained
  // (drain_segment) or closed.
  // Pins the calling thread first if options.cpu >= 0. Errors: kInternal
  // if pinning fails. May block (parks when idle).
  Status run();
  // Runs until `n` tasks were processed by this worker (or stop()). For tests
  // and tools.
  Status run_tasks(std::uint64_t n);
  // Asks run() to return; wakes the worker if it is parked. Async-signal-safe.
  void stop() noexcept;
  // True if run() returned because drain_segment() was called after this
  // worker attached.
  bool drained() const noexcept;

  // Names of the registered handlers, sorted.
  std::vector<std::string> handler_names() const;
  int index() const noexcept;
  WorkerStats stats() const noexcept;

 private:
  explicit Worker(std::unique_ptr<detail::WorkerImpl> impl);
  std::unique_ptr<detail::WorkerImpl> impl_;
};

}  // namespace taskring
