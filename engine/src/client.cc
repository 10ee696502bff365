#include "taskring/client.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "engine_internal.h"
#include "recovery_internal.h"
#include "seqlock_internal.h"
#include "taskring/ipc/futex.h"

namespace taskring {

using detail::Engine;
using detail::TaskSlot;
using detail::racy_copy;
using detail::racy_copy_result;
using detail::racy_read;
namespace sw = detail::sw;

namespace {

constexpr std::int64_t kSpaceParkNs = 10'000'000;   // re-check bound while waiting for room
constexpr std::int64_t kResultParkNs = 100'000'000; // re-check bound while waiting for a result

std::int64_t deadline_from(std::int64_t timeout_ns) {
  return timeout_ns < 0 ? INT64_MAX : ipc::monotonic_ns() + timeout_ns;
}

// Runs `attempt` until it succeeds, applying the full policy: fail at once,
// or spin, yield and park on space_seq until the deadline. The park re-checks
// after announcing itself ([S4]), so a notify_space ([S3]) is never missed.
template <typename Attempt>
Status with_full_policy(Engine& e, const SubmitOptions& o, std::int64_t& deadline, Attempt&& attempt,
                        const char* what) {
  if (attempt()) return Status::ok();
  if (o.on_full == FullPolicy::kFail) {
    return resource_exhausted(std::string(what) + " (on_full is fail; retry later or wait)");
  }
  if (deadline == 0) deadline = deadline_from(o.timeout_ns);
  detail::ConfigBlock& c = e.control();
  ipc::Backoff backoff;
  for (;;) {
    if (e.closing()) return failed_precondition("segment '" + e.segment().name() + "' is closing");
    const std::int64_t now = ipc::monotonic_ns();
    if (now >= deadline) {
      return resource_exhausted(std::string(what) + " (waited " + std::to_string(o.timeout_ns / 1'000'000) + " ms)");
    }
    if (backoff.pause()) {
      if (attempt()) return Status::ok();
      continue;
    }
    // Acquire: a later bump we miss makes futex_wait return at once.
    const std::uint32_t seq = c.space_seq.load(std::memory_order_acquire);
    // [S4] seq_cst: announce, then re-check; pairs with [S3] in notify_space.
    c.space_waiters.fetch_add(1, std::memory_order_seq_cst);
    const bool ok = attempt();
    if (!ok) ipc::futex_wait(c.space_seq, seq, std::min(deadline - now, kSpaceParkNs));
    c.space_waiters.fetch_sub(1, std::memory_order_relaxed);  // only a hint for notifiers
    if (ok) return Status::ok();
    if (o.interrupted != nullptr && o.interrupted(o.interrupt_arg)) {
      return Status(StatusCode::kCancelled, std::string(what) + " (the wait for room was interrupted)");
    }
  }
}

Status check_task(const Engine& e, std::string_view task, std::string_view payload) {
  if (task.empty() || task.size() > kMaxTaskNameLength) {
    return invalid_argument("task name '" + std::string(task) + "': must be 1 to " +
                            std::to_string(kMaxTaskNameLength) + " bytes");
  }
  if (payload.size() > e.config().max_payload) {
    return invalid_argument("payload of " + std::to_string(payload.size()) + " bytes: must be at most max_payload " +
                            std::to_string(e.config().max_payload) + " bytes of segment '" + e.segment().name() + "'");
  }
  return Status::ok();
}

Result<std::uint32_t> check_options(const Engine& e, const SubmitOptions& o) {
  const int q = e.find_queue(o.queue);
  if (q < 0) return e.unknown_queue(o.queue);
  if (static_cast<unsigned>(o.priority) >= kPriorityCount) {
    return invalid_argument("priority " + std::to_string(static_cast<unsigned>(o.priority)) +
                            ": must be 0 (critical) to 3 (low)");
  }
  if (o.delay_ns < 0) {
    return invalid_argument("delay_ns " + std::to_string(o.delay_ns) + ": must not be negative");
  }
  if (o.run_at_ns < 0) {
    return invalid_argument("run_at_ns " + std::to_string(o.run_at_ns) + ": must not be negative");
  }
  if (o.delay_ns != 0 && o.run_at_ns != 0) {
    return invalid_argument("delay_ns " + std::to_string(o.delay_ns) + " and run_at_ns " + std::to_string(o.run_at_ns) +
                            ": give at most one of them");
  }
  if (o.time_limit_ns < 0 || o.time_limit_ns % 1'000'000 != 0 ||
      o.time_limit_ns / 1'000'000 > std::int64_t{UINT32_MAX}) {
    return invalid_argument("time_limit_ns " + std::to_string(o.time_limit_ns) +
                            ": must be whole milliseconds from 0 (the handler's) to " + std::to_string(UINT32_MAX) +
                            " ms");
  }
  if (o.max_crashes > 255) {
    return invalid_argument("max_crashes " + std::to_string(o.max_crashes) +
                            ": must be 1 to 255, or 0 for the default " + std::to_string(kDefaultMaxCrashes));
  }
  if (o.durable && !e.journaling()) {
    return failed_precondition("durable submit: segment '" + e.segment().name() +
                               "' has no journal (create it with journal best-effort or durable, "
                               "taskring init --journal durable)");
  }
  if (o.max_attempts > kMaxAttemptsLimit) {
    return invalid_argument("max_attempts " + std::to_string(o.max_attempts) + ": must be 1 to " +
                            std::to_string(kMaxAttemptsLimit) + ", or 0 for the handler's default");
  }
  return static_cast<std::uint32_t>(q);
}

// Pops a free slot under the full policy and marks it reserved by this
// process, so that recovery can free it if we die before submitting it.
Result<std::uint32_t> allocate_slot(Engine& e, const SubmitOptions& o, std::int64_t& deadline) {
  std::uint32_t index = 0;
  bool corrupt = false;
  Status st = with_full_policy(
      e, o, deadline,
      [&] {
        const auto r = e.free_slots().pop(index);
        corrupt = r == ipc::FreeStack::PopResult::kCorrupt;
        return r == ipc::FreeStack::PopResult::kOk || corrupt;
      },
      "no free task slot: every slot holds a task or an unread result");
  if (!st.is_ok()) return st;
  if (corrupt) return data_loss("segment '" + e.segment().name() + "': the free-slot stack is corrupt");
  TaskSlot& s = e.slot(index);
  // Relaxed: the pop made the slot ours ([A1] in free_stack.cc acquired the
  // freer's stores).
  const std::uint64_t w = s.state.load(std::memory_order_relaxed);
  if (sw::state(w) != TaskState::kFree || sw::reserved(w)) {
    return data_loss("segment '" + e.segment().name() + "': the free-slot stack names slot " + std::to_string(index) +
                     ", which is in use");
  }
  // Our pid first, then the reserved word: a recoverer that sees the word
  // reads the pid that belongs to it. A death between the two leaves a free
  // slot off the stack, for the idle audit. [R9] release: pairs with [A9]
  // in free_dead_reservations.
  // Relaxed: published by [R9]; atomic because a recoverer scanning an
  // older reservation of this slot may read it at the same time.
  s.submitter_pid.store(ipc::current_pid(), std::memory_order_relaxed);
  s.state.store(sw::make_reserved(w), std::memory_order_release);
  return index;
}

// Returns a reserved slot that was never published to the free stack.
void unreserve(Engine& e, std::uint32_t index) {
  TaskSlot& s = e.slot(index);
  s.payload_block = detail::kNoBlock;
  s.payload_len = 0;
  // Relaxed: published by the free stack's push, as in Engine::free_slot.
  const std::uint64_t w = s.state.load(std::memory_order_relaxed);
  // A new generation, as Engine::free_slot gives a freed reservation.
  s.state.store(sw::make_free(sw::next_generation(sw::generation(w)), w), std::memory_order_relaxed);
  e.free_slots().push(index);
  e.notify_space();
}

// Fills slot `index` for a task and stores its payload; the slot is still
// private to the caller. On failure the slot is returned to the free stack.
// `submit_ns` is the submission time to record: 0 reads the clock once the
// payload is stored (and leaves the reading in `submit_ns`, so the rest of a
// batch chunk, which never waits, shares it: one clock read per chunk).
Status fill_slot(Engine& e, std::uint32_t index, std::uint32_t queue, const SubmitOptions& o,
                 std::string_view task, std::string_view payload, std::int64_t& deadline,
                 std::int64_t& submit_ns) {
  TaskSlot& s = e.slot(index);
  s.queue.store(static_cast<std::uint16_t>(queue), std::memory_order_relaxed);  // published by [R3]
  s.priority = static_cast<std::uint8_t>(o.priority);
  s.name_len = static_cast<std::uint8_t>(task.size());
  std::memcpy(s.name, task.data(), task.size());
  s.max_attempts = static_cast<std::uint8_t>(o.max_attempts);
  s.max_crashes = static_cast<std::uint8_t>(o.max_crashes);
  s.crashes = 0;
  // result_len, result_block, start_ns and finish_ns were reset when the
  // slot was freed (Engine::release_blocks), or are zero from formatting.
  ipc::Arena::AllocResult ar = ipc::Arena::AllocResult::kOk;
  Status st = with_full_policy(
      e, o, deadline,
      [&] {
        ar = e.store_bytes(s, false, payload);
        return ar != ipc::Arena::AllocResult::kExhausted;
      },
      "no room in the payload area for the payload");
  if (st.is_ok() && ar != ipc::Arena::AllocResult::kOk) {
    st = ar == ipc::Arena::AllocResult::kTooLarge
             ? invalid_argument("payload of " + std::to_string(payload.size()) + " bytes: larger than the payload area's largest block")
             : data_loss("segment '" + e.segment().name() + "': the payload area is corrupt");
  }
  if (!st.is_ok()) {
    unreserve(e, index);
    return st;
  }
  if (submit_ns == 0) submit_ns = ipc::monotonic_ns();
  s.submit_ns.store(submit_ns, std::memory_order_relaxed);  // published by [R3]
  // Relaxed, published by [R3]; written only for delayed tasks (the freer
  // and the claimer reset it), so that submit touches line 2 only for them.
  if (o.time_limit_ns != 0) {
    s.time_limit_ms.store(static_cast<std::uint32_t>(o.time_limit_ns / 1'000'000), std::memory_order_relaxed);
  }
  if (o.delay_ns != 0) {
    s.run_at_ns.store(submit_ns + o.delay_ns, std::memory_order_relaxed);
  } else if (o.run_at_ns != 0) {
    s.run_at_ns.store(o.run_at_ns, std::memory_order_relaxed);
  }
  return Status::ok();
}

bool delayed(const SubmitOptions& o) { return o.delay_ns != 0 || o.run_at_ns != 0; }

// Publishes a filled, reserved slot as pending and queued, with the next
// reference tag. The caller owns the slot exclusively, so this transition is
// a store. Returns the published word (its generation makes the id, its tag
// the ring value).
std::uint64_t publish_pending(Engine& e, std::uint32_t index, const SubmitOptions& o) {
  TaskSlot& s = e.slot(index);
  // Relaxed: we own the slot; the word is only read for its tag.
  const std::uint64_t w = s.state.load(std::memory_order_relaxed);
  std::uint64_t next = sw::next_tag(sw::make_free(sw::generation(w), w)) | static_cast<std::uint64_t>(TaskState::kPending) |
                       sw::kQueued;
  if (o.detached) next |= sw::kReleased;
  // [R3] release: publishes the slot's fields to whoever acquires the state
  // word ([A3] lookup, the worker's claim); the ring push ([R1]) publishes
  // them to the worker that pops the index.
  s.state.store(next, std::memory_order_release);
  return next;
}

// True if the task published as `published` has been requeued by the
// lost-reference audit (recovery.cc) while we held it unpushed: it is then
// live under a newer tag, and our own push would only add a stale name.
bool requeued_meanwhile(const Engine& e, std::uint32_t index, std::uint64_t published) {
  // Relaxed: a hint; unpublish decides with a CAS.
  const std::uint64_t w = e.slot(index).state.load(std::memory_order_relaxed);
  return sw::tag(w) != sw::tag(published) || sw::generation(w) != sw::generation(published);
}

// Undoes publish_pending for a slot that never reached a ring. Its id was
// never returned, but ids can be guessed: a concurrent cancel or release may
// have changed the word, and drop_queued settles that case. Returns false
// if the audit requeued the task meanwhile: it is live, and the submission
// stands.
bool unpublish(Engine& e, std::uint32_t index, std::uint64_t published) {
  TaskSlot& s = e.slot(index);
  std::uint64_t w = s.state.load(std::memory_order_acquire);  // as [A3]
  for (;;) {
    if (sw::tag(w) != sw::tag(published) || sw::generation(w) != sw::generation(published)) return false;
    if (sw::state(w) != TaskState::kPending) break;
    if (e.free_slot(index, w, log::FreeReason::kWithdrawn)) return true;  // on failure w is the new word
  }
  e.drop_queued(sw::ref(index, w));
  return true;
}

}  // namespace

Client::Client(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Result<Client> Client::attach(std::string_view segment) {
  auto e = Engine::attach(segment, ipc::Access::kReadWrite);
  if (!e) return e.status();
  return Client(std::move(e).value());
}

const EngineConfig& Client::config() const noexcept { return engine_->config(); }
std::vector<std::string> Client::queues() const { return engine_->config().queues; }

Result<TaskId> Client::submit(std::string_view task, std::string_view payload, const SubmitOptions& o) noexcept {
  Engine& e = *engine_;
  TASKRING_RETURN_IF_ERROR(check_task(e, task, payload));
  auto queue = check_options(e, o);
  if (!queue) return queue.status();
  if (e.closing()) return failed_precondition("segment '" + e.segment().name() + "' is closing");
  std::int64_t deadline = 0;  // computed on the first wait
  auto index = allocate_slot(e, o, deadline);
  if (!index) return index.status();
  std::int64_t submit_ns = 0;
  TASKRING_RETURN_IF_ERROR(fill_slot(e, *index, *queue, o, task, payload, deadline, submit_ns));
  const std::uint64_t published = publish_pending(e, *index, o);
  const TaskId id = TaskId::make(*index, sw::generation(published));
  // Journalled before the push, so the kStarted of the worker that pops it
  // comes after it. A durable submit's event is never dropped.
  const std::int64_t durable_deadline = o.durable ? deadline_from(o.timeout_ns) : INT64_MAX;
  const std::uint64_t pos =
      e.journal_event(log::RecordType::kSubmitted, *index, published, 0, o.durable, durable_deadline);
  if (delayed(o) && e.push_ref(*index, published, nullptr, submit_ns)) {
    // Into the timer ring (or its queue ring, if the time has already come).
    e.queue(*queue).submitted.fetch_add(1, std::memory_order_relaxed);  // statistics
    if (o.durable) TASKRING_RETURN_IF_ERROR(e.wait_durable(pos, durable_deadline, id, o));
    return id;
  }
  ipc::Ring ring = e.ring(*queue, o.priority);
  bool first = true;
  Status st = with_full_policy(
      e, o, deadline,
      [&] {
        // A retry first checks whether the audit requeued the task while we
        // waited for room (after it sat unnamed through two audit passes).
        if (!first && requeued_meanwhile(e, *index, published)) return true;
        first = false;
        return ring.try_push(sw::ref(*index, published));
      },
      "queue ring full");
  if (!st.is_ok() && unpublish(e, *index, published)) return st;
  // Relaxed: a statistics counter; readers want an approximate total.
  e.queue(*queue).submitted.fetch_add(1, std::memory_order_relaxed);
  e.notify_work(*queue, 1);
  if (o.durable) TASKRING_RETURN_IF_ERROR(e.wait_durable(pos, durable_deadline, id, o));
  return id;
}

Result<std::size_t> Client::submit_batch(std::span<const TaskSpec> tasks, std::span<TaskId> ids,
                                         const SubmitOptions& o) noexcept {
  Engine& e = *engine_;
  if (ids.size() < tasks.size()) {
    return invalid_argument("ids: room for " + std::to_string(ids.size()) + " ids, need " + std::to_string(tasks.size()));
  }
  for (const TaskSpec& t : tasks) TASKRING_RETURN_IF_ERROR(check_task(e, t.task, t.payload));
  auto queue = check_options(e, o);
  if (!queue) return queue.status();
  if (e.closing()) return failed_precondition("segment '" + e.segment().name() + "' is closing");
  std::int64_t deadline = 0;
  ipc::Ring ring = e.ring(*queue, o.priority);
  constexpr std::size_t kChunk = 64;
  std::uint32_t chunk[kChunk];        // ring values, [tag | slot]
  std::uint64_t published[kChunk];    // the words they were published with
  std::uint32_t slots[kChunk];        // their slots
  std::uint64_t last_pos = detail::kNoJournalPos;  // journal position of the last kSubmitted
  bool durable_dropped = false;  // a durable chunk's events missed the journal (deadline or closing)
  const std::int64_t durable_deadline = o.durable ? deadline_from(o.timeout_ns) : INT64_MAX;
  std::size_t done = 0;
  Status stop;
  while (done < tasks.size() && stop.is_ok()) {
    // Allocate and fill a chunk of slots, publish them, push them in one go.
    std::size_t n = 0;
    const std::size_t want = std::min(kChunk, tasks.size() - done);
    // Only the first slot of a chunk may wait for room: waiting while
    // holding filled but unpushed slots could wait for ourselves. Once a
    // slot is held, a full table or payload area ends the chunk early and
    // the next chunk waits with empty hands.
    SubmitOptions fail_fast = o;
    fail_fast.on_full = FullPolicy::kFail;
    std::int64_t submit_ns = 0;  // read by the chunk's first fill, after any wait
    while (n < want) {
      const SubmitOptions& policy = n == 0 ? o : fail_fast;
      auto index = allocate_slot(e, policy, deadline);
      if (!index) {
        if (n == 0 || index.status().code() != StatusCode::kResourceExhausted) stop = index.status();
        break;
      }
      Status st = fill_slot(e, *index, *queue, policy, tasks[done + n].task, tasks[done + n].payload, deadline,
                            submit_ns);
      if (!st.is_ok()) {
        if (n == 0 || st.code() != StatusCode::kResourceExhausted) stop = st;
        break;
      }
      published[n] = publish_pending(e, *index, o);
      ids[done + n] = TaskId::make(*index, sw::generation(published[n]));
      chunk[n] = sw::ref(*index, published[n]);
      slots[n] = *index;
      ++n;
    }
    // One reservation for the chunk, before the push (as in submit).
    const std::uint64_t pos = e.journal_events(log::RecordType::kSubmitted, slots, published, n, 0, o.durable,
                                               o.durable ? durable_deadline : INT64_MAX);
    if (n > 0) {
      last_pos = pos;
      if (pos == detail::kNoJournalPos) durable_dropped = true;
    }
    std::size_t pushed = 0;
    // Delayed tasks go to the timer ring one by one (it has room for all).
    while (delayed(o) && pushed < n && e.push_ref(sw::ref_slot(chunk[pushed]), published[pushed], nullptr, submit_ns)) {
      ++pushed;
    }
    bool first = true;
    Status st = with_full_policy(
        e, o, deadline,
        [&] {
          // As in submit: tasks the audit requeued while we waited count as
          // pushed (they are live under a newer tag).
          while (!first && pushed < n && requeued_meanwhile(e, sw::ref_slot(chunk[pushed]), published[pushed])) {
            ++pushed;
          }
          first = false;
          pushed += ring.try_push_batch(chunk + pushed, n - pushed);
          return pushed == n;
        },
        "queue ring full");
    if (n > 0 && !st.is_ok() && stop.is_ok()) stop = st;
    // A task requeued by the audit between the last check and its unpublish
    // stays live although it is reported as not submitted; that needs the
    // ring to stay full through two audit passes and a race of a few
    // instructions, and its unread result is then freed by retention.
    for (std::size_t i = pushed; i < n; ++i) (void)unpublish(e, sw::ref_slot(chunk[i]), published[i]);
    if (pushed > 0) {
      e.queue(*queue).submitted.fetch_add(pushed, std::memory_order_relaxed);  // statistics
      e.notify_work(*queue, static_cast<std::uint32_t>(pushed));
    }
    done += pushed;
  }
  if (done == 0 && !stop.is_ok()) return stop;
  if (o.durable && done > 0) {
    if (durable_dropped) return e.wait_durable(detail::kNoJournalPos, durable_deadline, ids[done - 1], o);
    TASKRING_RETURN_IF_ERROR(e.wait_durable(last_pos, durable_deadline, ids[done - 1], o));
  }
  return done;
}

namespace {

// The finish time of the task in `s` (state word `w`): the worker's, or for
// a task cancelled before it ran, the winning canceller's stamp.
std::int64_t finish_time(const TaskSlot& s, std::uint64_t w, std::int64_t submit_ns, std::int64_t start_ns) {
  if (sw::state(w) == TaskState::kCancelled && start_ns == 0) {
    const std::uint64_t stamp = s.cancel_stamp.load(std::memory_order_relaxed);  // ordered by [R4]/[A3]
    if (static_cast<std::uint32_t>(stamp >> 32) == sw::generation(w)) {
      return submit_ns + detail::cancel_stamp_delay_ns(stamp);
    }
  }
  return s.finish_ns.load(std::memory_order_relaxed);  // ordered by [R4]/[A3]
}

// Copies the outcome of the terminal task in `s` (state word `w`); its
// result bytes only if `with_value`.
Result<TaskOutcome> copy_outcome(const Engine& e, const TaskSlot& s, TaskId id, std::uint64_t w, bool with_value) {
  TaskOutcome out;
  out.id = id;
  out.state = sw::state(w);
  out.attempts = sw::attempts(w);
  out.timed_out = (w & sw::kTimedOut) != 0;
  // Racy reads, validated by the caller's CAS: a concurrent release may be
  // freeing the slot (the fields are otherwise ordered by [A3]).
  out.crashes = racy_read(s.crashes);
  if (out.crashes > 0) {
    out.last_crash_pid = racy_read(s.crash_pid);
    out.last_crash = detail::decode_exit(racy_read(s.crash_reason));
  }
  // Relaxed: ordered by the acquire of the terminal state word ([A3]).
  out.submit_ns = s.submit_ns.load(std::memory_order_relaxed);
  out.start_ns = s.start_ns.load(std::memory_order_relaxed);
  out.finish_ns = finish_time(s, w, out.submit_ns, out.start_ns);
  if (!with_value) return out;
  // The caller validates the copy with its CAS on the state word: a reader
  // that lost the slot to another reader discards it.
  if (!racy_copy_result(e, s, out.value)) {
    return data_loss("task " + to_string(id) + ": its result's length or block is corrupt");
  }
  return out;
}

Status gone(TaskId id) {
  return not_found("task " + to_string(id) +
                   ": no such task (never submitted, detached, or its result was already read)");
}

}  // namespace

Result<std::optional<TaskOutcome>> Client::try_get(TaskId id) {
  Engine& e = *engine_;
  std::uint64_t w = 0;
  TaskSlot* s = e.lookup(id, w);
  if (s == nullptr) return gone(id);
  for (;;) {
    if (sw::generation(w) != id.generation() || (w & sw::kReleased) != 0 || !sw::live(w)) {
      return gone(id);  // detached, or another reader consumed it first
    }
    if (!is_terminal(sw::state(w))) return std::optional<TaskOutcome>();
    if ((w & sw::kQueued) != 0) {
      // Cancelled before it ran, and a ring still names it: the worker that
      // pops it frees the slot once we mark it released. It has no value,
      // so copy what there is first, then release.
      auto out = copy_outcome(e, *s, id, w, false);
      // acq_rel: as [R5]; failure: acquire, as [A3].
      if (s->state.compare_exchange_weak(w, w | sw::kReleased, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        if (!out) return out.status();
        return std::optional<TaskOutcome>(std::move(out).value());
      }
      continue;
    }
    // Copy first, then take the read and free the slot in one CAS: a reader
    // killed at any point leaves the task either unread or freed, never
    // read-but-held. A finished task's fields do not change until its slot
    // is freed, and the generation in the word rules out a reuse in
    // between, so a successful CAS vouches for the copy.
    auto out = copy_outcome(e, *s, id, w, true);
    if (!e.free_slot(id.slot(), w, log::FreeReason::kConsumed)) continue;  // another reader or a release won; w is the new word
    if (!out) return out.status();
    return std::optional<TaskOutcome>(std::move(out).value());
  }
}

Result<TaskOutcome> Client::wait(TaskId id, std::int64_t timeout_ns) {
  Engine& e = *engine_;
  const std::int64_t deadline = deadline_from(timeout_ns);
  if (!id.valid() || id.slot() >= e.slot_count()) return gone(id);
  TaskSlot& s = e.slot(id.slot());
  ipc::Backoff backoff;
  for (;;) {
    auto r = try_get(id);
    if (!r) return r.status();
    if (r->has_value()) return std::move(**r);
    if (e.closing()) return failed_precondition("segment '" + e.segment().name() + "' is closing");
    const std::int64_t now = ipc::monotonic_ns();
    if (now >= deadline) {
      return deadline_exceeded("task " + to_string(id) + " has not finished after " +
                               std::to_string(timeout_ns / 1'000'000) + " ms");
    }
    if (backoff.pause()) continue;
    // Acquire: a bump we miss makes futex_wait return at once.
    const std::uint32_t seq = s.done_seq.load(std::memory_order_acquire);
    // [S6] seq_cst: announce, then re-check the state; pairs with [S5].
    s.waiters.fetch_add(1, std::memory_order_seq_cst);
    const std::uint64_t w = s.state.load(std::memory_order_seq_cst);
    const bool woken = sw::generation(w) != id.generation() || is_terminal(sw::state(w)) ||
                       ipc::futex_wait(s.done_seq, seq, std::min(deadline - now, kResultParkNs));
    s.waiters.fetch_sub(1, std::memory_order_relaxed);  // only a hint for notifiers
    // A park that timed out on a running task: if its worker died and no
    // supervisor or peer has noticed yet, recover it ourselves.
    if (!woken && sw::state(w) == TaskState::kRunning && detail::worker_gone(e, sw::owner(w))) {
      RecoveryReport report;
      detail::recover_dead_workers(e, report, 0);
    }
  }
}

std::uint32_t Client::listen_completions() noexcept {
  detail::ConfigBlock& c = engine_->control();
  // [S8] seq_cst: announce, then the caller checks its tasks; pairs with
  // [S7] in engine.cc: a task that finishes after this either is seen by
  // that check or finds the listener and bumps done_any_seq.
  c.done_listeners.fetch_add(1, std::memory_order_seq_cst);
  // The caller's check reads state words with acquire loads (lookup), which
  // alone may not be ordered after the increment; this fence orders them,
  // as the seq_cst re-check does in wait.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Acquire: a bump after this read makes wait_completions return at once.
  return c.done_any_seq.load(std::memory_order_acquire);
}

void Client::wake_completion_listeners() noexcept {
  detail::ConfigBlock& c = engine_->control();
  c.done_any_seq.fetch_add(1, std::memory_order_release);  // release: after the caller's own writes
  ipc::futex_wake(c.done_any_seq, INT_MAX);
}

void Client::unlisten_completions() noexcept {
  // Relaxed: only a hint for notifiers, as the per-slot waiters count.
  engine_->control().done_listeners.fetch_sub(1, std::memory_order_relaxed);
}

bool Client::wait_completions(std::uint32_t seq, std::int64_t timeout_ns) noexcept {
  Engine& e = *engine_;
  if (e.closing()) return true;
  const std::int64_t park = timeout_ns < 0 ? kResultParkNs : std::min(timeout_ns, kResultParkNs);
  return ipc::futex_wait(e.control().done_any_seq, seq, park);
}

Result<TaskInfo> Client::peek(TaskId id) const {
  const Engine& e = *engine_;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::uint64_t w = 0;
    const TaskSlot* s = e.lookup(id, w);
    // A finished task whose result was read (or that was detached) is gone,
    // even if a ring still names its slot.
    if (s == nullptr || ((w & sw::kReleased) != 0 && is_terminal(sw::state(w)))) return gone(id);
    TaskInfo info;
    info.id = id;
    info.state = sw::state(w);
    info.attempts = sw::attempts(w);
    info.owner_worker = sw::owner(w);
    info.cancel_requested = (w & sw::kCancelReq) != 0;
    info.max_attempts = racy_read(s->max_attempts);
    info.max_crashes = racy_read(s->max_crashes);
    info.crashes = racy_read(s->crashes);
    if (info.crashes > 0) {
      info.last_crash_pid = racy_read(s->crash_pid);
      info.last_crash = detail::decode_exit(racy_read(s->crash_reason));
    }
    racy_copy(info.task_name, s->name, std::min<std::size_t>(racy_read(s->name_len), kMaxTaskNameLength));
    info.queue = std::string(e.queue_name(s->queue.load(std::memory_order_relaxed)));
    info.priority = static_cast<Priority>(racy_read(s->priority) & 3);
    info.payload_bytes = racy_read(s->payload_len);
    info.run_at_ns = info.state == TaskState::kPending ? s->run_at_ns.load(std::memory_order_relaxed) : 0;
    info.deadline_ns = info.state == TaskState::kRunning ? s->deadline_ns.load(std::memory_order_relaxed) : 0;
    info.timed_out = (w & sw::kTimedOut) != 0;
    if (info.state == TaskState::kRunning || is_terminal(info.state)) {
      // Relaxed: one word written by the handler, read whole; no other field depends on it.
      const std::uint64_t p = s->progress.load(std::memory_order_relaxed);
      info.progress_done = static_cast<std::uint32_t>(p >> 32);
      info.progress_total = static_cast<std::uint32_t>(p);
    }
    // Relaxed: validated by the seqlock-style re-read of the state word below.
    info.submit_ns = s->submit_ns.load(std::memory_order_relaxed);
    info.start_ns = s->start_ns.load(std::memory_order_relaxed);
    // The worker stores finish_ns just before its completion CAS, so only a
    // terminal word vouches for it.
    info.finish_ns = is_terminal(info.state) ? finish_time(*s, w, info.submit_ns, info.start_ns) : 0;
    if (is_terminal(info.state)) {
      racy_copy_result(e, *s, info.value);
    } else if (racy_read(s->result_len) != 0) {
      // A retried task keeps its last error as its result until the next
      // attempt ends (a crashed attempt's result is discarded: empty).
      racy_copy_result(e, *s, info.last_error);
    }
    // Seqlock-style check: if the word did not change, the copy is
    // consistent. The acquire fence keeps the field reads above from moving
    // after the re-read (an acquire load alone would not, on arm64).
#if !defined(__SANITIZE_THREAD__)
    // (TSan does not model fences; under it the reads above are not
    // instrumented anyway, see TASKRING_SEQLOCK_READER.)
    std::atomic_thread_fence(std::memory_order_acquire);
#endif
    // The worker stores start_ns just after its claim CAS: a reader that
    // falls in that gap sees "running" without a start time, and retries.
    const bool start_pending = info.state == TaskState::kRunning && info.start_ns == 0;
    if (s->state.load(std::memory_order_relaxed) == w && !start_pending) return info;
    if (start_pending) sched_yield();
  }
  return unavailable("task " + to_string(id) + " changes too fast to read a consistent snapshot");
}

Result<CancelOutcome> Client::cancel(TaskId id) {
  Engine& e = *engine_;
  std::uint64_t w = 0;
  TaskSlot* s = e.lookup(id, w);
  if (s == nullptr) return gone(id);
  for (;;) {
    if (sw::generation(w) != id.generation() || !sw::live(w)) return gone(id);
    const TaskState st = sw::state(w);
    if (is_terminal(st)) return CancelOutcome::kAlreadyFinished;
    if (st == TaskState::kPending) {
      // Read before the CAS: once it succeeds the slot may be consumed and
      // reused at any moment. Relaxed: valid if the CAS below succeeds.
      const std::uint32_t queue = s->queue.load(std::memory_order_relaxed);
      // We do not own the slot, so finish_ns is not ours to write: a losing
      // canceller, or one whose id went stale, would leave a trace on the
      // task that won. The stamp is tagged with our generation instead.
      // Relaxed, before the CAS that publishes it.
      s->cancel_stamp.store(detail::make_cancel_stamp(id.generation(), ipc::monotonic_ns() -
                                                      s->submit_ns.load(std::memory_order_relaxed)),
                            std::memory_order_relaxed);
      // [R4] seq_cst: the terminal transition; wins against the worker's claim
      // CAS on the same word (exactly one succeeds), publishes the stamp, and
      // is ordered before notify_done's waiter check ([S5]).
      if (s->state.compare_exchange_weak(w, sw::with_state(w, TaskState::kCancelled), std::memory_order_seq_cst,
                                         std::memory_order_acquire)) {
        e.journal_event(log::RecordType::kCancelled, id.slot(), sw::with_state(w, TaskState::kCancelled));
        // A delayed task's name waits in the timer ring until its time: make
        // the timer scan due now, so that it drops the name and frees the
        // slot once released, instead of holding it until the old run time.
        // Relaxed: a hint, read after our winning CAS.
        if (s->run_at_ns.load(std::memory_order_relaxed) != 0) e.lower_next_due(ipc::monotonic_ns());
        e.queue(queue < e.queue_count() ? queue : 0).cancelled.fetch_add(1, std::memory_order_relaxed);
        e.notify_done(*s);
        return CancelOutcome::kCancelled;
      }
    } else if (st == TaskState::kRunning) {
      if ((w & sw::kCancelReq) != 0) return CancelOutcome::kRequested;
      // acq_rel: the handler's relaxed poll sees it eventually; nothing else
      // is published with it.
      if (s->state.compare_exchange_weak(w, w | sw::kCancelReq, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        return CancelOutcome::kRequested;
      }
    } else {
      return data_loss("task " + to_string(id) + ": slot state " + std::to_string(w & sw::kStateMask) + " is invalid");
    }
  }
}

Status Client::release(TaskId id) {
  Engine& e = *engine_;
  std::uint64_t w = 0;
  TaskSlot* s = e.lookup(id, w);
  if (s == nullptr || (w & sw::kReleased) != 0) return gone(id);
  for (;;) {
    if (sw::generation(w) != id.generation() || !sw::live(w) || (w & sw::kReleased) != 0) {
      return gone(id);
    }
    if (is_terminal(sw::state(w)) && (w & sw::kQueued) == 0) {
      if (e.free_slot(id.slot(), w, log::FreeReason::kReleased)) return Status::ok();
    } else if (s->state.compare_exchange_weak(w, w | sw::kReleased, std::memory_order_acq_rel,
                                              std::memory_order_acquire)) {
      return Status::ok();  // the worker or the popper frees it
    }
    // Either CAS failed and left the current word in w (acquire, as [A3]).
  }
}

Result<std::vector<TaskInfo>> Client::dead_letters(std::size_t limit) const {
  const Engine& e = *engine_;
  std::vector<TaskInfo> out;
  for (std::uint32_t i = 0; i < e.slot_count(); ++i) {
    // Relaxed: a scan; peek re-reads with acquire and validates.
    const std::uint64_t w = e.slot(i).state.load(std::memory_order_relaxed);
    if (!sw::live(w) || sw::state(w) != TaskState::kFailed || (w & sw::kReleased) != 0) continue;
    auto info = peek(TaskId::make(i, sw::generation(w)));
    if (info && info->state == TaskState::kFailed) out.push_back(std::move(info).value());
  }
  std::sort(out.begin(), out.end(), [](const TaskInfo& a, const TaskInfo& b) { return a.finish_ns < b.finish_ns; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

Status Client::purge(TaskId id) {
  Engine& e = *engine_;
  std::uint64_t w = 0;
  if (e.lookup(id, w) == nullptr) return gone(id);
  for (;;) {
    if (sw::generation(w) != id.generation() || !sw::live(w) || (w & sw::kReleased) != 0) return gone(id);
    if (sw::state(w) != TaskState::kFailed || (w & sw::kQueued) != 0) {
      return failed_precondition("task " + to_string(id) + " is " + std::string(state_name(sw::state(w))) +
                                 ": only a failed task (a dead letter) can be purged");
    }
    if (e.free_slot(id.slot(), w, log::FreeReason::kPurged)) return Status::ok();  // on failure w is the new word
  }
}

Status Client::requeue(TaskId id) {
  Engine& e = *engine_;
  std::uint64_t w = 0;
  TaskSlot* s = e.lookup(id, w);
  if (s == nullptr) return gone(id);
  for (;;) {
    if (sw::generation(w) != id.generation() || !sw::live(w) || (w & sw::kReleased) != 0) return gone(id);
    if (sw::state(w) != TaskState::kFailed || (w & sw::kQueued) != 0) {
      return failed_precondition("task " + to_string(id) + " is " + std::string(state_name(sw::state(w))) +
                                 ": only a failed task (a dead letter) can be requeued");
    }
    // Fresh attempts, a new tag; the worker that runs it replaces the old
    // error when it completes. [R8] release: as a retry.
    const std::uint64_t next = sw::requeued(w & ~sw::kAttemptMask);
    if (s->state.compare_exchange_weak(w, next, std::memory_order_release, std::memory_order_acquire)) {
      e.journal_event(log::RecordType::kRequeued, id.slot(), next, static_cast<std::uint32_t>(log::RequeueReason::kManual));
      if (!e.push_ref(id.slot(), next, nullptr)) {
        // The queue ring is full: the audit finds it unnamed and requeues it.
        e.control().next_audit_ns.store(0, std::memory_order_relaxed);  // relaxed: a hint
      }
      return Status::ok();
    }
  }
}

}  // namespace taskring

namespace taskring::detail {

Result<TaskId> restore_finished(Engine& e, const log::TaskSpec& spec, TaskState state, std::uint32_t attempts,
                                std::string_view result, std::int64_t finish_ns) {
  TASKRING_ASSERT(is_terminal(state));
  TASKRING_RETURN_IF_ERROR(check_task(e, spec.name, spec.payload));
  const SubmitOptions o = submit_options_for(spec);
  auto queue = check_options(e, o);
  if (!queue) return queue.status();
  if (result.size() > e.config().max_payload) {
    return invalid_argument("result of " + std::to_string(result.size()) + " bytes: above max_payload " +
                            std::to_string(e.config().max_payload) + " of segment '" + e.segment().name() + "'");
  }
  std::int64_t deadline = 0;
  auto index = allocate_slot(e, o, deadline);
  if (!index) return index.status();
  std::int64_t submit_ns = 0;
  TASKRING_RETURN_IF_ERROR(fill_slot(e, *index, *queue, o, spec.name, spec.payload, deadline, submit_ns));
  TaskSlot& s = e.slot(*index);
  if (e.store_bytes(s, true, result) != ipc::Arena::AllocResult::kOk) {
    e.release_blocks(s);
    unreserve(e, *index);
    return resource_exhausted("no room in the payload area for a restored result of " + std::to_string(result.size()) +
                              " bytes");
  }
  s.start_ns.store(submit_ns, std::memory_order_relaxed);  // published by the store below
  s.finish_ns.store(finish_ns, std::memory_order_relaxed);
  // Relaxed: we own the slot; the word is only read for its tag.
  const std::uint64_t w = s.state.load(std::memory_order_relaxed);
  const std::uint64_t next = sw::next_tag(sw::make_free(sw::generation(w), w)) | static_cast<std::uint64_t>(state) |
                             (std::uint64_t{std::min<std::uint32_t>(attempts, 255)} << sw::kAttemptShift);
  // Release, as [R3]: publishes the slot's fields to readers ([A3]).
  s.state.store(next, std::memory_order_release);
  e.journal_event(log::RecordType::kSubmitted, *index, next, 0, true);
  return TaskId::make(*index, sw::generation(next));
}

}  // namespace taskring::detail
