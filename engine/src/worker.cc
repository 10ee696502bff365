// The worker's claim loop (docs/architecture.md "Claiming"):
//   1. take from the worker's own deque;
//   2. else claim a batch from the queue rings, highest priority first with
//      the anti-starvation rule, keep the first task and put the rest in the
//      deque where idle workers can steal them;
//   3. else steal half of another worker's deque;
//   4. else spin, yield, and park on this worker's own futex word
//      (WorkerEntry::wake_seq), which producers bump only for parked workers
//      that serve their queue (Engine::notify_work).
#include "taskring/worker.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <unordered_map>

#include "engine_internal.h"
#include "recovery_internal.h"
#include "taskring/ipc/futex.h"
#include "taskring/ipc/process.h"
#include "taskring/status.h"

namespace taskring {
namespace detail {
namespace {

// Every kStarvationInterval-th claim round starts at a lower level, rotating
// over high, normal and low, so every non-empty level gets at least
// 1 / (3 * kStarvationInterval) of the claim rounds however busy the levels
// above it are.
constexpr std::uint32_t kStarvationInterval = 8;
constexpr std::uint32_t kMaxBatch = 1024;
// How often a worker checks its peers for death (a /proc read per peer),
// and how often some worker audits for lost ring names, with the gap
// between the audit's two passes.
constexpr std::int64_t kLivenessPeriodNs = 50'000'000;
constexpr std::int64_t kAuditPeriodNs = 2'000'000'000;
constexpr std::int64_t kAuditGapNs = 20'000'000;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Single-writer counter bump: no RMW needed, readers tolerate a stale value.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace

class WorkerImpl {
 public:
  WorkerImpl(std::shared_ptr<Engine> engine, WorkerOptions options, std::uint32_t index, std::uint64_t mask,
             std::uint32_t drain_epoch)
      : engine_(std::move(engine)), options_(std::move(options)), index_(index), mask_(mask),
        drain_epoch_(drain_epoch) {
    for (std::uint32_t q = 0; q < engine_->queue_count(); ++q) {
      if ((mask_ >> q) & 1) queues_.push_back(q);
    }
    ctx_.worker_ = this;
    rng_ ^= (std::uint64_t{ipc::current_pid()} << 16) ^ index_;  // distinct jitter per worker
  }
  ~WorkerImpl() { unregister(); }

  Status add_handler(std::string_view task, Handler h, const HandlerOptions& o) {
    if (o.max_attempts > kMaxAttemptsLimit) {
      return invalid_argument("max_attempts " + std::to_string(o.max_attempts) + " for task '" + std::string(task) +
                              "': must be 1 to " + std::to_string(kMaxAttemptsLimit) + ", or 0 for the default " +
                              std::to_string(kDefaultMaxAttempts));
    }
    if (task.empty() || task.size() > kMaxTaskNameLength) {
      return invalid_argument("task name '" + std::string(task) + "': must be 1 to " +
                              std::to_string(kMaxTaskNameLength) + " bytes");
    }
    if (!h) return invalid_argument("handler for task '" + std::string(task) + "': empty function");
    if (o.time_limit_ns < 0 || o.time_limit_ns % 1'000'000 != 0 || o.kill_grace_ns < 0 ||
        o.kill_grace_ns % 1'000'000 != 0) {
      return invalid_argument("time_limit_ns " + std::to_string(o.time_limit_ns) + " / kill_grace_ns " +
                              std::to_string(o.kill_grace_ns) + " for task '" + std::string(task) +
                              "': must be whole milliseconds, not negative");
    }
    constexpr std::int64_t kYearNs = 365LL * 24 * 3600 * 1'000'000'000;
    if (o.retry_backoff_ns < 0 || o.retry_backoff_max_ns < 0 || o.retry_backoff_ns > kYearNs ||
        o.retry_backoff_max_ns > kYearNs) {
      return invalid_argument("retry_backoff_ns " + std::to_string(o.retry_backoff_ns) + " / retry_backoff_max_ns " +
                              std::to_string(o.retry_backoff_max_ns) + " for task '" + std::string(task) +
                              "': must be from 0 to 365 days");
    }
    if (!handlers_.emplace(std::string(task), Entry{std::move(h), o}).second) {
      return already_exists("a handler for task '" + std::string(task) + "' is already registered");
    }
    return Status::ok();
  }

  Status run(std::uint64_t limit);
  std::vector<std::string> handler_names() const {
    std::vector<std::string> names;
    for (const auto& [name, h] : handlers_) names.push_back(name);
    std::sort(names.begin(), names.end());
    return names;
  }
  void stop() noexcept {
    // Relaxed: a flag polled by run(); the futex wake below is what makes a
    // parked worker look at it.
    stop_.store(true, std::memory_order_relaxed);
    WorkerEntry& e = entry();
    e.wake_seq.fetch_add(1, std::memory_order_release);  // release: orders the flag before the bump
    ipc::futex_wake(e.wake_seq, INT_MAX);
  }
  WorkerStats stats() const noexcept;
  bool drained() const noexcept { return drained_; }
  std::uint32_t index() const noexcept { return index_; }
  WorkerEntry& entry() const noexcept { return engine_->worker(index_); }
  const Engine& engine() const noexcept { return *engine_; }

 private:
  std::size_t claim(std::uint32_t* buf);
  std::size_t steal(std::uint32_t* buf);
  bool has_work_approx() const noexcept;
  void park(std::int64_t timeout_ns);
  // Before parking: releases due delayed tasks, and returns how long the
  // park may last (until the next one is due, at most park_timeout_ns).
  std::int64_t before_park();
  // Runs the task in slot `index` if it is still pending; returns true if a
  // handler ran. `start_ns` is the start time to record, or 0 to read the
  // clock.
  bool execute(std::uint32_t ref, std::int64_t start_ns);
  void complete(std::uint32_t index, TaskSlot& s, std::uint64_t running_word);
  // Puts a failed task with attempts left back in its queue (running word
  // `w`, ours). Returns false if the word changed (cancel), with `w` updated.
  bool retry(std::uint32_t index, TaskSlot& s, std::uint64_t& w, std::int64_t now);
  // Every kLivenessPeriodNs: recovers dead peers, and runs the periodic
  // lost-reference audit when it is due and this worker wins it.
  void maintain(std::int64_t now);
  // Sets the slot's deadline and kill grace for the attempt starting at
  // `start`, from the submitter's limit or the handler's. Writes the
  // slot's third line only when a value changes.
  void arm_time_limit(TaskSlot& s, std::int64_t start) noexcept;
  void set_state(WorkerState s) noexcept { entry().state.store(static_cast<std::uint32_t>(s), std::memory_order_relaxed); }
  void heartbeat(std::int64_t now) noexcept { entry().heartbeat_ns.store(now, std::memory_order_relaxed); }
  void unregister() noexcept;
  // The slot's queue index, clamped into range (shared memory is not
  // trusted). Relaxed: the caller holds the slot (it popped or claimed it).
  std::uint32_t queue_of(const TaskSlot& s) const noexcept {
    const std::uint32_t q = s.queue.load(std::memory_order_relaxed);
    return q < engine_->queue_count() ? q : 0;
  }

  std::shared_ptr<Engine> engine_;
  WorkerOptions options_;
  std::uint32_t index_;
  std::uint64_t mask_;
  std::vector<std::uint32_t> queues_;
  struct Entry {
    Handler handler;
    HandlerOptions options;
  };
  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> handlers_;
  // The handler found by the last lookup: a worker mostly runs one kind of
  // task, and comparing a short name is cheaper than hashing it. Pointers to
  // unordered_map elements survive rehashing, and handlers are never removed.
  const std::pair<const std::string, Entry>* last_handler_ = nullptr;
  std::atomic<bool> stop_{false};
  std::uint32_t drain_epoch_;
  bool drained_ = false;
  std::int64_t next_check_ns_ = 0;
  std::uint64_t rng_ = 0x9E3779B97F4A7C15ull;  // xorshift state for retry jitter
  LostTaskAudit audit_;
  Watchdog watchdog_;
  std::vector<UnnamedTask> audit_first_;
  std::int64_t audit_second_ns_ = 0;  // when the second pass is due; 0: no audit under way
  std::uint32_t round_ = 0;
  std::uint32_t queue_cursor_ = 0;
  std::uint32_t victim_cursor_ = 0;
  std::uint64_t processed_ = 0;
  // The clock reading that ended the last completed task, or 0 once a claim
  // or steal has filled the deque since. A task popped from our own deque
  // starts at this time when it is set: every task in the deque was pushed
  // before that reading, so it was submitted before it (start >= submit
  // holds), and running tasks back to back then costs one clock read each.
  std::int64_t last_finish_ns_ = 0;
  TaskContext ctx_;
  friend class taskring::TaskContext;
};

WorkerStats WorkerImpl::stats() const noexcept {
  WorkerStats st;
  const WorkerEntry& e = entry();
  st.index = static_cast<int>(index_);
  for (std::uint32_t q = 0; q < engine_->queue_count(); ++q) {
    // Relaxed: racy reads of single-writer counters.
    st.claimed += e.counters[q][kCounterClaimed].load(std::memory_order_relaxed);
    st.succeeded += e.counters[q][kCounterSucceeded].load(std::memory_order_relaxed);
    st.failed += e.counters[q][kCounterFailed].load(std::memory_order_relaxed);
    st.cancelled += e.counters[q][kCounterCancelled].load(std::memory_order_relaxed);
    st.retried += e.counters[q][kCounterRetried].load(std::memory_order_relaxed);
  }
  st.stolen = e.stolen.load(std::memory_order_relaxed);
  st.parks = e.parks.load(std::memory_order_relaxed);
  return st;
}

std::size_t WorkerImpl::claim(std::uint32_t* buf) {
  static constexpr int kNormalOrder[kPriorityCount] = {0, 1, 2, 3};
  int order[kPriorityCount];
  std::copy(std::begin(kNormalOrder), std::end(kNormalOrder), order);
  ++round_;
  if (round_ % kStarvationInterval == 0) {
    // Anti-starvation round: start at high, normal or low in turn.
    const int first = 1 + static_cast<int>((round_ / kStarvationInterval) % 3);
    int k = 0;
    order[k++] = first;
    for (int p = 0; p < kPriorityCount; ++p) {
      if (p != first) order[k++] = p;
    }
  }
  const std::size_t nq = queues_.size();
  const std::uint32_t start = queue_cursor_++;
  for (int p : order) {
    for (std::size_t i = 0; i < nq; ++i) {
      const std::uint32_t q = queues_[(start + i) % nq];
      const std::size_t n = engine_->ring(q, static_cast<Priority>(p)).try_pop_batch(buf, options_.claim_batch);
      if (n > 0) {
        engine_->notify_space();
        return n;
      }
    }
  }
  return 0;
}

std::size_t WorkerImpl::steal(std::uint32_t* buf) {
  const std::uint32_t n = engine_->worker_hwm();
  const std::uint32_t start = victim_cursor_++;
  for (std::uint32_t k = 0; k < n; ++k) {
    const std::uint32_t v = (start + k) % n;
    if (v == index_) continue;
    WorkerEntry& e = engine_->worker(v);
    // Only steal from a worker whose queues are all ours, so that we never
    // run a task of a queue we do not serve. Relaxed: the mask is informative;
    // a stale one can at worst skip a victim this round.
    const std::uint64_t vmask = e.queue_mask.load(std::memory_order_relaxed);
    if ((vmask & ~mask_) != 0) continue;
    ipc::Ring d = engine_->deque(v);
    const std::uint64_t size = d.size_approx();
    if (size == 0) continue;
    const std::size_t take = std::min<std::size_t>(std::max<std::uint64_t>(1, (size + 1) / 2), options_.claim_batch);
    const std::size_t got = d.try_pop_batch(buf, take);
    if (got > 0) {
      bump(entry().stolen, got);
      return got;
    }
  }
  return 0;
}

bool WorkerImpl::has_work_approx() const noexcept {
  for (std::uint32_t q : queues_) {
    for (int p = 0; p < kPriorityCount; ++p) {
      if (engine_->ring(q, static_cast<Priority>(p)).nonempty_approx()) return true;
    }
  }
  if (!options_.steal) return false;
  for (std::uint32_t v = 0; v < engine_->worker_hwm(); ++v) {
    if (v == index_) continue;
    const std::uint64_t vmask = engine_->worker(v).queue_mask.load(std::memory_order_relaxed);  // as in steal
    if ((vmask & ~mask_) == 0 && engine_->deque(v).nonempty_approx()) return true;
  }
  return false;
}

std::int64_t WorkerImpl::before_park() {
  const std::int64_t now = ipc::monotonic_ns();
  engine_->release_due_timers(now);
  // Relaxed: a schedule; a task delayed later than we read wakes us
  // (push_ref notifies when it lowers the schedule).
  const std::int64_t due = engine_->control().next_due_ns.load(std::memory_order_relaxed);
  std::int64_t timeout = options_.park_timeout_ns;
  if (due != INT64_MAX && due - now < timeout) timeout = std::max<std::int64_t>(due - now, 1000);
  // While a peer runs a task, keep watching it (time limits, cancel grace,
  // its death) at the liveness period; a segment where nobody works lets
  // us sleep the whole timeout.
  if (timeout > kLivenessPeriodNs) {
    for (std::uint32_t v = 0; v < engine_->worker_hwm(); ++v) {
      // Relaxed: informative state, read racily.
      if (v != index_ && engine_->worker(v).state.load(std::memory_order_relaxed) ==
                             static_cast<std::uint32_t>(WorkerState::kBusy)) {
        return kLivenessPeriodNs;
      }
    }
  }
  return timeout;
}

void WorkerImpl::park(std::int64_t timeout_ns) {
  ConfigBlock& c = engine_->control();
  WorkerEntry& me = entry();
  // Acquire: a bump we miss makes futex_wait return at once.
  const std::uint32_t seq = me.wake_seq.load(std::memory_order_acquire);
  set_state(WorkerState::kParked);
  // [S2] seq_cst: raise our parked flag and the global count, then re-check
  // every ring (seq_cst loads in Ring::nonempty_approx); pairs with [S1] in
  // Engine::notify_work. A notifier that saw the count sees the flag too:
  // the flag store precedes the count's increment.
  me.parked.store(1, std::memory_order_seq_cst);
  c.parked_workers.fetch_add(1, std::memory_order_seq_cst);
  if (!has_work_approx() && !stop_.load(std::memory_order_relaxed) && !engine_->closing()) {
    bump(me.parks);
    ipc::futex_wait(me.wake_seq, seq, timeout_ns);
  }
  // Relaxed: a waker that still CASes the flag 1 -> 0 only wastes one wake.
  me.parked.store(0, std::memory_order_relaxed);
  c.parked_workers.fetch_sub(1, std::memory_order_seq_cst);
  set_state(WorkerState::kIdle);
  heartbeat(ipc::monotonic_ns());
}

bool WorkerImpl::execute(std::uint32_t ref, std::int64_t start_ns) {
  const std::uint32_t index = sw::ref_slot(ref);
  if (index >= engine_->slot_count()) return false;  // a corrupt ring value: never dereferenced
  TaskSlot& s = engine_->slot(index);
  // [A4] acquire: pairs with [R3] (submit) and [R8] (requeue) through the
  // state word; the ring pop ([A1]) already ordered the fields, this keeps
  // the claim self-contained.
  std::uint64_t w = s.state.load(std::memory_order_acquire);
  const std::uint32_t q = queue_of(s);
  WorkerEntry& me = entry();
  for (;;) {
    const TaskState st = sw::state(w);
    // A name whose tag is not the task's is stale: recovery requeued the
    // task under a new one. It is dropped without touching the word.
    if (sw::tag(w) != sw::ref_tag(ref) || !sw::live(w)) return false;
    if ((w & sw::kQueued) == 0) return false;  // not named by a ring: a stale or corrupt value
    if (st == TaskState::kPending) {
      const std::uint32_t attempts = std::min<std::uint32_t>(sw::attempts(w) + 1, 255);
      std::uint64_t next = (w & ~(sw::kQueued | sw::kOwnerMask | sw::kAttemptMask | sw::kStateMask)) |
                           static_cast<std::uint64_t>(TaskState::kRunning) |
                           (std::uint64_t{index_ + 1} << sw::kOwnerShift) |
                           (std::uint64_t{attempts} << sw::kAttemptShift);
      // [A5] acq_rel (seq_cst): the claim. Exactly one of this CAS and a
      // cancel's CAS ([R4]) on the same word succeeds.
      if (s.state.compare_exchange_weak(w, next, std::memory_order_seq_cst, std::memory_order_acquire)) {
        w = next;
        engine_->journal_event(log::RecordType::kStarted, index, next, index_);
        break;
      }
      continue;
    }
    // Cancelled while queued: drop the ring's reference (and free the slot
    // if its producer has released it).
    engine_->drop_queued(ref);
    return false;
  }
  bump(me.counters[q][kCounterClaimed]);
  // A delayed task's start time has come; clear it so that a retry or the
  // slot's next task starts from no delay.
  clear_if_set(s.run_at_ns);
  const std::int64_t start = start_ns != 0 ? start_ns : ipc::monotonic_ns();
  s.start_ns.store(start, std::memory_order_relaxed);  // published by [R4]
  clear_if_set(s.progress);  // a retry reports its own progress
  heartbeat(start);

  ctx_.id_ = TaskId::make(index, sw::generation(w));
  ctx_.task_name_ = std::string_view(s.name, std::min<std::size_t>(s.name_len, kMaxTaskNameLength));
  ctx_.priority_ = static_cast<Priority>(s.priority & 3);
  ctx_.attempt_ = sw::attempts(w);
  ctx_.state_ = &s.state;
  ctx_.progress_ = &s.progress;
  ctx_.failed_ = false;
  ctx_.result_.clear();
  std::string_view payload;
  if (!engine_->read_bytes(s, false, payload)) {
    ctx_.fail("payload of task " + to_string(ctx_.id_) + " is corrupt (bad length or block)");
  } else {
    ctx_.payload_ = payload;
    if (last_handler_ == nullptr || last_handler_->first != ctx_.task_name_) {
      auto found = handlers_.find(ctx_.task_name_);
      last_handler_ = found == handlers_.end() ? nullptr : &*found;
    }
    // The first worker to run a task without a submitter's limit fixes it,
    // so that recovery (which knows no handlers) applies the same one.
    if (s.max_attempts == 0) {
      const std::uint32_t m = last_handler_ != nullptr ? last_handler_->second.options.max_attempts : 0;
      s.max_attempts = static_cast<std::uint8_t>(m != 0 ? m : kDefaultMaxAttempts);
    }
    arm_time_limit(s, start);
    // Published only now, with release: a watchdog that finds the slot
    // here (acquire) reads this attempt's deadline, not the previous one's.
    me.current_slot.store(index, std::memory_order_release);
    if (last_handler_ == nullptr) {
      ctx_.fail("no handler for task '" + std::string(ctx_.task_name_) + "' in worker " + std::to_string(index_) +
                " (pid " + std::to_string(ipc::current_pid()) + ")");
    } else {
      try {
        last_handler_->second.handler(ctx_);
      } catch (const std::exception& ex) {
        ctx_.fail(ex.what());
      } catch (...) {
        ctx_.fail("handler threw a non-std::exception");
      }
    }
  }
  complete(index, s, w);
  me.current_slot.store(ipc::kNilIndex, std::memory_order_relaxed);  // informative
  return true;
}

void WorkerImpl::complete(std::uint32_t index, TaskSlot& s, std::uint64_t w) {
  const std::uint32_t q = queue_of(s);
  const auto still_ours = [this](std::uint64_t word) {
    return sw::state(word) == TaskState::kRunning && sw::owner(word) == static_cast<int>(index_);
  };
  // Someone else may own the outcome now (crash recovery re-queued the
  // task): then the completion is recorded once, by the current owner, and
  // we must not touch the result fields. Relaxed: the CAS below re-validates.
  w = s.state.load(std::memory_order_relaxed);
  if (!still_ours(w)) return;
  // A timed-out attempt failed; a cancel request that is not a timeout
  // lets a handler that returned without a result end as cancelled.
  const bool timed_out = (w & sw::kTimedOut) != 0;
  const bool cancel_seen = (w & sw::kCancelReq) != 0 && !timed_out;
  TaskState outcome = ctx_.failed_ ? TaskState::kFailed
                      : (cancel_seen && ctx_.result_.empty()) ? TaskState::kCancelled
                                                              : TaskState::kSucceeded;
  std::string_view value = ctx_.result_;
  std::string err;
  if (timed_out && !ctx_.failed_) {
    err = "time limit of " +
          std::to_string((s.deadline_ns.load(std::memory_order_relaxed) - s.start_ns.load(std::memory_order_relaxed)) /
                         1'000'000) +
          " ms exceeded";
    outcome = TaskState::kFailed;
    value = err;
  }
  // A result left by an earlier attempt (the error a retry keeps visible)
  // is replaced, not leaked.
  engine_->release_result(s);
  if (value.size() > engine_->config().max_payload) {
    err = "result of " + std::to_string(value.size()) + " bytes exceeds max_payload " +
          std::to_string(engine_->config().max_payload);
    outcome = TaskState::kFailed;
    value = err;
  }
  auto r = engine_->store_bytes(s, true, value);
  if (r != ipc::Arena::AllocResult::kOk) {
    // Short enough to stay whole in the slot's inline result area.
    err = "area full: " + std::to_string(value.size()) + "-byte result";
    outcome = TaskState::kFailed;
    r = engine_->store_bytes(s, true, std::string_view(err).substr(0, kInlineResultBytes));
    TASKRING_ASSERT(r == ipc::Arena::AllocResult::kOk);
  }
  // The attempt is over: clear its deadline so that no watchdog applies it
  // to the slot's next attempt (published by the CAS below; a watchdog that
  // still sees this attempt running may flag it, which only the running
  // attempt's state word check below then sees).
  clear_if_set(s.deadline_ns);
  const std::int64_t finish = ipc::monotonic_ns();
  s.finish_ns.store(finish, std::memory_order_relaxed);  // published by [R4]
  last_finish_ns_ = finish;
  const std::uint32_t max_attempts = s.max_attempts != 0 ? s.max_attempts : kDefaultMaxAttempts;
  for (;;) {
    if (!still_ours(w)) return;  // see above; our result block is the new owner's to replace
    const bool cancelled = (w & sw::kCancelReq) != 0 && (w & sw::kTimedOut) == 0;
    if (outcome == TaskState::kFailed && !cancelled && sw::attempts(w) < max_attempts) {
      if (retry(index, s, w, finish)) {
        bump(entry().counters[q][kCounterRetried]);
        heartbeat(finish);
        return;
      }
      continue;
    }
    if ((w & sw::kReleased) != 0 && outcome != TaskState::kFailed) {
      // Nobody will read it: free the slot directly.
      if (engine_->free_slot(index, w, log::FreeReason::kReleased)) break;
      continue;
    }
    // A task that failed for good is kept even if its producer released it:
    // it is a dead letter (Client::dead_letters) until requeued, released
    // again, or its retention passes.
    const std::uint64_t next = sw::with_state(w, outcome) & ~(sw::kOwnerMask | sw::kReleased);
    // [R4] seq_cst: publishes the result and finish time to the reader's
    // acquire ([A3]); ordered before notify_done's waiter check ([S5]).
    if (s.state.compare_exchange_weak(w, next, std::memory_order_seq_cst, std::memory_order_acquire)) {
      engine_->notify_done(s);
      // After the wake: the journal is off the producer's critical path.
      engine_->journal_event(outcome == TaskState::kSucceeded ? log::RecordType::kSucceeded
                             : outcome == TaskState::kFailed  ? log::RecordType::kFailed
                                                              : log::RecordType::kCancelled,
                             index, next);
      break;
    }
  }
  WorkerEntry& me = entry();
  const int counter = outcome == TaskState::kSucceeded ? kCounterSucceeded
                      : outcome == TaskState::kFailed  ? kCounterFailed
                                                       : kCounterCancelled;
  bump(me.counters[q][counter]);
  heartbeat(finish);
}

bool WorkerImpl::retry(std::uint32_t index, TaskSlot& s, std::uint64_t& w, std::int64_t now) {
  // The backoff: doubling from the handler's first wait up to its limit,
  // drawn from the upper half of that wait (jitter).
  const HandlerOptions o = last_handler_ != nullptr ? last_handler_->second.options : HandlerOptions{};
  if (o.retry_backoff_ns > 0) {
    const std::uint32_t failures = std::max<std::uint32_t>(sw::attempts(w), 1);
    std::int64_t wait = o.retry_backoff_ns;
    for (std::uint32_t i = 1; i < failures && wait < o.retry_backoff_max_ns; ++i) wait *= 2;
    wait = std::min(wait, std::max(o.retry_backoff_max_ns, o.retry_backoff_ns));
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    const std::int64_t half = wait / 2;
    // Relaxed: we hold the task; published by [R8] below.
    s.run_at_ns.store(now + half + static_cast<std::int64_t>(rng_ % static_cast<std::uint64_t>(half + 1)),
                      std::memory_order_relaxed);
  }
  // Pending again under a new tag, keeping the attempt count and the error
  // (the result) of this attempt for observers.
  const std::uint64_t next = sw::requeued(w);
  // [R8] release: publishes the error and times to the next claimer.
  // Failure: acquire, a canceller changed the word.
  if (!s.state.compare_exchange_strong(w, next, std::memory_order_release, std::memory_order_acquire)) {
    // A cancel came first: the task ends here, with no backoff pending.
    clear_if_set(s.run_at_ns);
    return false;
  }
  engine_->journal_event(log::RecordType::kRequeued, index, next, static_cast<std::uint32_t>(log::RequeueReason::kRetry));
  // Our own deque has room for one (we popped the task from it, or it is
  // empty) when the queue ring is full.
  ipc::Ring own = engine_->deque(index_);
  if (!engine_->push_ref(index, next, &own, now)) {
    engine_->control().next_audit_ns.store(0, std::memory_order_relaxed);  // relaxed: a hint to audit soon
  }
  return true;
}

void WorkerImpl::arm_time_limit(TaskSlot& s, std::int64_t start) noexcept {
  const HandlerOptions o = last_handler_ != nullptr ? last_handler_->second.options : HandlerOptions{};
  // Relaxed: we hold the task; watchdogs read these only while the state
  // word says we run it, and re-check the word before acting.
  std::int64_t limit_ns = std::int64_t{s.time_limit_ms.load(std::memory_order_relaxed)} * 1'000'000;
  if (limit_ns == 0) limit_ns = o.time_limit_ns;
  const std::int64_t deadline = limit_ns > 0 ? start + limit_ns : 0;
  if (s.deadline_ns.load(std::memory_order_relaxed) != deadline) s.deadline_ns.store(deadline, std::memory_order_relaxed);
  const auto grace_ms = static_cast<std::uint32_t>(std::min<std::int64_t>(o.kill_grace_ns / 1'000'000, UINT32_MAX));
  if (s.kill_grace_ms.load(std::memory_order_relaxed) != grace_ms) s.kill_grace_ms.store(grace_ms, std::memory_order_relaxed);
}

void WorkerImpl::maintain(std::int64_t now) {
  next_check_ns_ = now + kLivenessPeriodNs;
  RecoveryReport report;
  recover_dead_workers(*engine_, report, 0);
  watchdog_.check(*engine_, now);
  if (audit_second_ns_ != 0) {
    if (now >= audit_second_ns_) {
      audit_second_ns_ = 0;
      audit_.settle(*engine_, audit_first_, audit_.pass(*engine_), report);
      audit_first_.clear();
    }
    return;
  }
  ConfigBlock& c = engine_->control();
  // Relaxed: a schedule; the CAS picks one auditor per period.
  std::int64_t due = c.next_audit_ns.load(std::memory_order_relaxed);
  if (now < due) return;
  if (!c.next_audit_ns.compare_exchange_strong(due, now + kAuditPeriodNs, std::memory_order_relaxed)) return;
  free_dead_reservations(*engine_, report);
  expire_results(*engine_, now, report);
  // A timer scanner that died left the schedule at "nothing due": look again.
  if (engine_->timers().nonempty_approx()) engine_->lower_next_due(now);
  audit_first_ = audit_.pass(*engine_);
  if (!audit_first_.empty()) audit_second_ns_ = now + kAuditGapNs;
}

Status WorkerImpl::run(std::uint64_t limit) {
  if (options_.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options_.cpu, &set);
    const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0) {
      return internal_error("pinning to cpu " + std::to_string(options_.cpu) + " failed: " + std::strerror(rc));
    }
    entry().cpu.store(options_.cpu, std::memory_order_relaxed);  // informative
  }
  ipc::Ring own = engine_->deque(index_);
  std::uint32_t buf[kMaxBatch];
  std::uint32_t idle_rounds = 0;
  const std::uint64_t target = limit == 0 ? UINT64_MAX : processed_ + limit;
  set_state(WorkerState::kIdle);
  const ConfigBlock& control = engine_->control();
  while (processed_ < target) {
    if (stop_.load(std::memory_order_relaxed) || engine_->closing()) break;  // relaxed: a polled flag
    // Relaxed: a polled flag; drain_segment's wake makes a parked worker look.
    if (control.drain_epoch.load(std::memory_order_relaxed) != drain_epoch_) {
      drained_ = true;
      break;
    }
    std::uint32_t ref = 0;
    std::size_t n = 0;
    std::int64_t start_ns = 0;
    if (own.try_pop(ref)) {
      n = 1;
      start_ns = last_finish_ns_;
    } else if ((n = claim(buf)) > 0 || (options_.steal && (n = steal(buf)) > 0)) {
      ref = buf[0];
      last_finish_ns_ = 0;  // the deque is refilled after the last reading
      if (n > 1) {
        // Keep the rest where idle workers can steal them; the deque is empty
        // and at least claim_batch long, so everything fits.
        const std::size_t kept = own.try_push_batch(buf + 1, n - 1);
        TASKRING_ASSERT(kept == n - 1);
        engine_->notify_thief(mask_);
      }
    }
    if (n == 0) {
      if (++idle_rounds <= options_.spin_rounds) {
        ipc::Backoff(1, 0).pause();
      } else if (idle_rounds <= options_.spin_rounds + 16) {
        sched_yield();
      } else {
        park(before_park());
        idle_rounds = 0;
        const std::int64_t now = ipc::monotonic_ns();
        if (now >= next_check_ns_) maintain(now);
      }
      continue;
    }
    idle_rounds = 0;
    set_state(WorkerState::kBusy);
    if (execute(ref, start_ns)) ++processed_;
    // last_finish_ns_ is the clock reading that ended the task (or 0 if it
    // did not run): no extra clock read on the busy path. Relaxed: a
    // schedule, on the line the drain and closing checks already read.
    if (last_finish_ns_ >= control.next_due_ns.load(std::memory_order_relaxed)) {
      engine_->release_due_timers(last_finish_ns_);
    }
    if (last_finish_ns_ >= next_check_ns_) maintain(last_finish_ns_);
  }
  set_state(WorkerState::kIdle);
  return Status::ok();
}

void WorkerImpl::unregister() noexcept {
  // Hand back what we claimed but did not run: into its queue ring if there
  // is room, else it stays in our deque, where other workers steal it.
  ipc::Ring own = engine_->deque(index_);
  std::uint32_t ref = 0;
  while (own.try_pop(ref)) {
    const std::uint32_t index = sw::ref_slot(ref);
    if (index >= engine_->slot_count()) continue;  // a corrupt value: dropped
    const TaskSlot& s = engine_->slot(index);
    const std::uint32_t q = queue_of(s);
    if (!engine_->ring(q, static_cast<Priority>(s.priority & 3)).try_push(ref)) {
      const bool kept = own.try_push(ref);
      (void)kept;
      break;
    }
    engine_->notify_work(q, 1);
  }
  WorkerEntry& e = entry();
  e.current_slot.store(ipc::kNilIndex, std::memory_order_relaxed);
  if (own.nonempty_approx()) {
    // Tasks left behind: keep the entry (our pid will be dead) so that
    // nobody takes it over before others have stolen them.
    e.state.store(static_cast<std::uint32_t>(WorkerState::kStopped), std::memory_order_relaxed);
    return;
  }
  e.state.store(static_cast<std::uint32_t>(WorkerState::kFree), std::memory_order_relaxed);
  e.start_time.store(0, std::memory_order_relaxed);  // released by [R7]
  // [R7] release: our last counter stores happen before the entry is taken
  // again; pairs with [A7] in Worker::attach.
  const std::uint64_t c = e.claim.load(std::memory_order_relaxed);  // ours: nobody else writes it now
  e.claim.store(std::uint64_t{claim_incarnation(c)} << 32, std::memory_order_release);
}

}  // namespace detail

// ---- TaskContext -------------------------------------------------------------
bool TaskContext::cancel_requested() const noexcept {
  // Relaxed: a poll; the flag is set by a CAS and seen eventually.
  return state_ != nullptr && (state_->load(std::memory_order_relaxed) & detail::sw::kCancelReq) != 0;
}
void TaskContext::set_progress(std::uint32_t done, std::uint32_t total) noexcept {
  // Relaxed: a report for observers (peek); nothing is ordered by it.
  if (progress_ != nullptr) progress_->store((std::uint64_t{done} << 32) | total, std::memory_order_relaxed);
}
void TaskContext::set_result(std::string_view bytes) {
  result_.assign(bytes);
  failed_ = false;
}
void TaskContext::fail(std::string_view message) {
  result_.assign(message);
  failed_ = true;
}

// ---- Worker ------------------------------------------------------------------
Worker::Worker(std::unique_ptr<detail::WorkerImpl> impl) : impl_(std::move(impl)) {}
Worker::~Worker() = default;

Result<std::unique_ptr<Worker>> Worker::attach(std::string_view segment, const WorkerOptions& options) {
  auto engine = detail::Engine::attach(segment, ipc::Access::kReadWrite);
  if (!engine) return engine.status();
  detail::Engine& e = **engine;
  std::uint64_t mask = 0;
  if (options.queues.empty()) {
    mask = e.queue_count() == 64 ? ~0ull : (1ull << e.queue_count()) - 1;
  } else {
    for (const std::string& q : options.queues) {
      const int i = q.empty() ? -1 : e.find_queue(q);
      if (i < 0) return e.unknown_queue(q);
      mask |= 1ull << i;
    }
  }
  const long ncpu = sysconf(_SC_NPROCESSORS_CONF);
  if (options.cpu < -1 || options.cpu >= ncpu) {
    return invalid_argument("cpu " + std::to_string(options.cpu) + ": must be -1 (no pinning) or 0.." +
                            std::to_string(ncpu - 1));
  }
  const std::uint32_t max_batch = std::min<std::uint32_t>(e.config().deque_capacity, detail::kMaxBatch);
  if (options.claim_batch < 1 || options.claim_batch > max_batch) {
    return invalid_argument("claim_batch " + std::to_string(options.claim_batch) + ": must be between 1 and " +
                            std::to_string(max_batch) + " (the deque capacity)");
  }
  if (options.park_timeout_ns <= 0) {
    return invalid_argument("park_timeout_ns " + std::to_string(options.park_timeout_ns) + ": must be positive");
  }
  // Settle the entries of dead workers first (their running tasks are
  // requeued), so that only free entries need to be considered below.
  RecoveryReport recovered;
  detail::recover_dead_workers(e, recovered, 0);
  // Take a free registry entry. An entry whose owner died and whose deque
  // still names tasks stays marked with the dead pid until they are stolen
  // or returned. One CAS on the claim word decides between racing attachers.
  const std::uint32_t me = ipc::current_pid();
  for (std::uint32_t i = 0; i < e.max_workers(); ++i) {
    detail::WorkerEntry& w = e.worker(i);
    // [A7] acquire: pairs with [R7] in unregister, so the previous owner's
    // counter stores are visible before we continue from them.
    std::uint64_t c = w.claim.load(std::memory_order_acquire);
    if (static_cast<std::uint32_t>(c) != 0) continue;  // owned, dead with tasks left, or being recovered
    const std::uint64_t mine = (std::uint64_t{detail::claim_incarnation(c) + 1} << 32) | me;
    // acq_rel: exactly one attacher wins the entry, and sees [R7].
    if (!w.claim.compare_exchange_strong(c, mine, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      continue;
    }
    // Relaxed stores: fields of our own entry, read by observers racily. A
    // recoverer that reads start_time before this store sees the 0 that the
    // entry's release left, and falls back to a check that cannot misjudge
    // a live pid as dead.
    w.start_time.store(ipc::current_start_time(), std::memory_order_relaxed);
    w.owner_pid.store(me, std::memory_order_relaxed);
    w.exit_reason.store(0, std::memory_order_relaxed);
    const std::uint32_t drain_epoch = e.control().drain_epoch.load(std::memory_order_relaxed);  // relaxed: polled
    w.drain_epoch.store(drain_epoch, std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(WorkerState::kStarting), std::memory_order_relaxed);
    w.cpu.store(-1, std::memory_order_relaxed);
    w.queue_mask.store(mask, std::memory_order_relaxed);
    const std::int64_t now = ipc::monotonic_ns();
    w.started_ns.store(now, std::memory_order_relaxed);
    w.heartbeat_ns.store(now, std::memory_order_relaxed);
    w.current_slot.store(ipc::kNilIndex, std::memory_order_relaxed);
    // A previous owner killed while parked left its flag raised and its
    // park counted; settle that once (the CAS), as wake_worker does.
    std::uint32_t was_parked = 1;
    if (w.parked.compare_exchange_strong(was_parked, 0, std::memory_order_seq_cst, std::memory_order_relaxed)) {
      e.control().parked_workers.fetch_sub(1, std::memory_order_seq_cst);
    }
    w.state.store(static_cast<std::uint32_t>(WorkerState::kIdle), std::memory_order_relaxed);
    // Relaxed: scans bounded by a stale hwm miss at most a worker that has
    // only just registered; it has nothing to steal yet.
    std::uint32_t hwm = e.control().worker_hwm.load(std::memory_order_relaxed);
    while (hwm < i + 1 && !e.control().worker_hwm.compare_exchange_weak(hwm, i + 1, std::memory_order_relaxed)) {
    }
    auto impl = std::make_unique<detail::WorkerImpl>(std::move(engine).value(), options, i, mask, drain_epoch);
    return std::unique_ptr<Worker>(new Worker(std::move(impl)));
  }
  return resource_exhausted("worker registry of segment '" + std::string(segment) + "' is full: all " +
                            std::to_string(e.max_workers()) + " entries are in use (init with more --max-workers)");
}

Status Worker::register_handler(std::string_view task, Handler handler) {
  return impl_->add_handler(task, std::move(handler), HandlerOptions{});
}
Status Worker::register_handler(std::string_view task, Handler handler, const HandlerOptions& options) {
  return impl_->add_handler(task, std::move(handler), options);
}
bool Worker::drained() const noexcept { return impl_->drained(); }
Status Worker::run() { return impl_->run(0); }
Status Worker::run_tasks(std::uint64_t n) { return n == 0 ? Status::ok() : impl_->run(n); }
void Worker::stop() noexcept { impl_->stop(); }
int Worker::index() const noexcept { return static_cast<int>(impl_->index()); }
std::vector<std::string> Worker::handler_names() const { return impl_->handler_names(); }
WorkerStats Worker::stats() const noexcept { return impl_->stats(); }

}  // namespace taskring
