// Crash recovery (docs/guarantees.md "How a crash is detected").
//
// What a process can hold when it dies, and who puts it back:
//   - a worker's running task: the state word names the worker (owner), so
//     a recoverer that took the dead worker's registry entry requeues it (or
//     fails it when no attempt is left) with the exit reason on the task;
//   - a worker's claimed-but-not-started tasks: they sit in its deque, and
//     the recoverer moves them back to their queue rings;
//   - ring names in a process's hands (popped from a ring, not yet pushed
//     elsewhere): the lost-reference audit finds pending tasks that no ring
//     or deque names in two passes some time apart and requeues them under
//     a new reference tag, so a name that was only in transit goes stale
//     instead of running the task twice;
//   - a producer's half-written slot: reserved with its pid, freed once the
//     pid is dead;
//   - a slot between the free stack and its reservation (or between being
//     freed and being linked): the idle audit relinks free slots that a
//     true snapshot of the free stack does not hold.
//
// Invariants:
//   1. Only the process whose CAS put kRecoveringBit and its pid into a dead
//      worker's claim word touches that worker's tasks; a recoverer that
//      dies leaves the bit with a dead pid, and the next one takes over.
//   2. Every step is idempotent: requeueing checks the task is still running
//      under the dead owner; moving a deque pops each name once.
//   3. A task is named by at most one live reference: requeueing always
//      advances the tag (sw::next_tag) before pushing the new name.
#include "taskring/recovery.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <algorithm>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine_internal.h"
#include "recovery_internal.h"
#include "taskring/ipc/futex.h"
#include "taskring/ipc/process.h"
#include "taskring/status.h"

namespace taskring {

ExitReason ExitReason::from_wait_status(int status) noexcept {
  if (WIFSIGNALED(status)) return ExitReason{Kind::kSignaled, WTERMSIG(status)};
  if (WIFEXITED(status)) return ExitReason{Kind::kExited, WEXITSTATUS(status)};
  return ExitReason{};
}

std::string ExitReason::describe() const {
  switch (kind) {
    case Kind::kExited:
      return "exited with code " + std::to_string(code);
    case Kind::kSignaled: {
      const char* abbrev = sigabbrev_np(code);
      return "killed by signal " + std::to_string(code) + (abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : "");
    }
    case Kind::kUnknown:
      break;
  }
  return "died (exit reason unknown)";
}

RecoveryReport& RecoveryReport::operator+=(const RecoveryReport& o) noexcept {
  workers_recovered += o.workers_recovered;
  tasks_requeued += o.tasks_requeued;
  tasks_failed += o.tasks_failed;
  deque_tasks_returned += o.deque_tasks_returned;
  lost_tasks_requeued += o.lost_tasks_requeued;
  lost_refs_dropped += o.lost_refs_dropped;
  reserved_slots_freed += o.reserved_slots_freed;
  free_slots_relinked += o.free_slots_relinked;
  results_expired += o.results_expired;
  return *this;
}

namespace detail {
namespace {

std::uint32_t encode(const ExitReason& r) noexcept {
  return r.kind == ExitReason::Kind::kUnknown ? 0 : encode_exit(static_cast<std::uint8_t>(r.kind), r.code);
}

// Whether the owner recorded in claim word `c` of entry `w` is gone.
bool owner_dead(const WorkerEntry& w, std::uint64_t c) noexcept {
  if (claim_recovering(c)) {
    // A recoverer's pid: it is dead if it is not running (a zombie counts
    // as dead). Its start time is not recorded; a reused pid only delays
    // the takeover until that process ends.
    return !ipc::process_running(claim_recoverer(c), 0);
  }
  const std::uint32_t pid = claim_pid(c);
  // Relaxed: written by the owner right after its claim CAS; a reader that
  // comes between sees the 0 the entry's release left, which only skips the
  // reuse check (see Worker::attach).
  return pid != 0 && !ipc::process_running(pid, w.start_time.load(std::memory_order_relaxed));
}

// Requeues, fails or cancels the task in slot `index` if it is still
// running under worker `v` (dead). We hold v's entry (Invariant 1).
void settle_running_task(Engine& e, std::uint32_t index, std::uint32_t v, std::uint32_t dead_pid,
                         std::uint32_t reason, RecoveryReport& report) {
  TaskSlot& s = e.slot(index);
  // [A8] acquire: the dead worker's stores to the slot (its result, if it
  // got that far) happen before we release them below.
  std::uint64_t w = s.state.load(std::memory_order_acquire);
  if (sw::state(w) != TaskState::kRunning || sw::owner(w) != static_cast<int>(v)) return;
  // Nobody else writes a running task's fields: its owner is dead, and
  // cancel and peek only touch or read the state word.
  e.release_result(s);
  // The attempt is over: no watchdog may apply its deadline to the next one
  // (published to the next claimer by the CAS below).
  clear_if_set(s.deadline_ns);
  if (s.crashes < 255) ++s.crashes;
  s.crash_pid = dead_pid;
  s.crash_reason = reason;
  const std::uint32_t attempts = sw::attempts(w);
  const std::uint32_t max_attempts = s.max_attempts != 0 ? s.max_attempts : kDefaultMaxAttempts;
  // A task that keeps killing its workers is quarantined: no more attempts.
  const std::uint32_t max_crashes = s.max_crashes != 0 ? s.max_crashes : kDefaultMaxCrashes;
  const bool poison = s.crashes >= max_crashes;
  const std::uint32_t q0 = s.queue.load(std::memory_order_relaxed);  // relaxed: we hold the task
  const std::uint32_t q = q0 < e.queue_count() ? q0 : 0;
  for (;;) {
    if (sw::state(w) != TaskState::kRunning || sw::owner(w) != static_cast<int>(v)) return;
    const bool timed_out = (w & sw::kTimedOut) != 0;
    const bool cancel = (w & sw::kCancelReq) != 0 && !timed_out;
    if (!cancel && !poison && attempts < max_attempts) {
      const std::uint64_t next = sw::requeued(w);
      // [R8] release: publishes the crash fields to the next claimer (its
      // claim CAS acquires the word). Failure: acquire, a cancel changed it.
      if (s.state.compare_exchange_weak(w, next, std::memory_order_release, std::memory_order_acquire)) {
        e.journal_event(log::RecordType::kRequeued, index, next, static_cast<std::uint32_t>(log::RequeueReason::kCrash));
        ipc::Ring dead_deque = e.deque(v);
        if (!e.push_ref(index, next, &dead_deque)) {
          // Neither the ring nor the deque had room: the audit finds the
          // task unnamed and requeues it.
          e.control().next_audit_ns.store(0, std::memory_order_relaxed);  // relaxed: a hint to audit soon
        }
        ++report.tasks_requeued;
        return;
      }
    } else {
      ExitReason why = decode_exit(reason);
      std::string msg = cancel ? "cancelled: its worker (pid " + std::to_string(dead_pid) + ") " + why.describe()
                               : (poison ? "quarantined after " + std::to_string(s.crashes) + (s.crashes == 1 ? " crash: " : " crashes: ")
                                             : "") +
                                     (timed_out ? "time limit exceeded: " : "") + std::string("worker pid ") +
                                     std::to_string(dead_pid) + " " + why.describe() + " on attempt " +
                                     std::to_string(attempts) + " of " + std::to_string(max_attempts);
      e.release_result(s);  // an earlier turn of this loop may have stored one
      if (e.store_bytes(s, true, msg) != ipc::Arena::AllocResult::kOk) {
        const auto r = e.store_bytes(s, true, std::string_view(msg).substr(0, kInlineResultBytes));
        TASKRING_ASSERT(r == ipc::Arena::AllocResult::kOk);
      }
      s.finish_ns.store(ipc::monotonic_ns(), std::memory_order_relaxed);  // published by the CAS below
      const TaskState outcome = cancel ? TaskState::kCancelled : TaskState::kFailed;
      if ((w & sw::kReleased) != 0 && outcome != TaskState::kFailed) {
        if (e.free_slot(index, w, log::FreeReason::kReleased)) break;
        continue;
      }
      // seq_cst: the terminal transition, as [R4] in worker.cc; a failed
      // task stays as a dead letter even if it was released.
      const std::uint64_t next = sw::with_state(w, outcome) & ~(sw::kOwnerMask | sw::kReleased);
      if (s.state.compare_exchange_weak(w, next, std::memory_order_seq_cst, std::memory_order_acquire)) {
        e.notify_done(s);
        e.journal_event(outcome == TaskState::kCancelled ? log::RecordType::kCancelled : log::RecordType::kFailed, index,
                        next);
        break;
      }
    }
  }
  ++report.tasks_failed;
  WorkerEntry& entry = e.worker(v);
  // Single writer (we hold the entry): relaxed load and store.
  auto& c = entry.counters[q][(w & sw::kCancelReq) != 0 ? kCounterCancelled : kCounterFailed];
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// Moves what dead worker `v`'s deque names back to the queue rings. Returns
// true if the deque is empty afterwards.
bool return_deque(Engine& e, std::uint32_t v, RecoveryReport& report) {
  ipc::Ring d = e.deque(v);
  std::uint32_t value = 0;
  // Each name is popped once; a recoverer that dies holding one leaves it
  // to the audit.
  for (std::uint64_t budget = d.capacity(); budget > 0 && d.try_pop(value); --budget) {
    const std::uint32_t index = sw::ref_slot(value);
    if (index >= e.slot_count()) continue;  // a corrupt value: dropped, never dereferenced
    const std::uint64_t w = e.slot(index).state.load(std::memory_order_acquire);  // as [A3]
    if (sw::tag(w) != sw::ref_tag(value) || (w & sw::kQueued) == 0) continue;  // stale
    if (sw::state(w) != TaskState::kPending) {
      e.drop_queued(value);
      continue;
    }
    if (!e.push_ref(index, w, nullptr)) {
      // The ring is full: keep it here, where workers steal it.
      const bool kept = d.try_push(value);
      (void)kept;  // the deque had room: we just popped from it
      return false;
    }
    ++report.deque_tasks_returned;
  }
  return !d.nonempty_approx();
}

// Settles the entry of dead worker `v` (pid `dead_pid`), whose claim word we hold.
void settle_entry(Engine& e, std::uint32_t v, std::uint64_t held, std::uint32_t dead_pid, RecoveryReport& report) {
  WorkerEntry& entry = e.worker(v);
  std::uint32_t reason = entry.exit_reason.load(std::memory_order_acquire);  // acquire: pairs with worker_exited's release
  if (reason == 0) {
    // A zombie still holds its wait status; an unreaped child of someone
    // else's is how most deaths are first seen.
    const ipc::ProcessStat st = ipc::read_process_stat(dead_pid);
    if (st.exists && st.exit_status >= 0 && st.start_time == entry.start_time.load(std::memory_order_relaxed)) {
      reason = encode(ExitReason::from_wait_status(st.exit_status));
    }
  }
  for (std::uint32_t i = 0; i < e.slot_count(); ++i) {
    // Relaxed pre-check; settle_running_task re-reads with acquire.
    const std::uint64_t w = e.slot(i).state.load(std::memory_order_relaxed);
    if (sw::state(w) == TaskState::kRunning && sw::owner(w) == static_cast<int>(v)) {
      settle_running_task(e, i, v, dead_pid, reason, report);
    }
  }
  const bool empty = return_deque(e, v, report);
  std::uint32_t was_parked = 1;
  // seq_cst: as wake_worker's settlement of a dead worker's park.
  if (entry.parked.compare_exchange_strong(was_parked, 0, std::memory_order_seq_cst, std::memory_order_relaxed)) {
    e.control().parked_workers.fetch_sub(1, std::memory_order_seq_cst);
  }
  entry.current_slot.store(ipc::kNilIndex, std::memory_order_relaxed);  // informative
  entry.state.store(static_cast<std::uint32_t>(empty ? WorkerState::kFree : WorkerState::kStopped),
                    std::memory_order_relaxed);  // informative
  // Released by the claim store below: a free entry has no start time, so
  // a recoverer racing the next attach never misreads its owner as dead.
  if (empty) entry.start_time.store(0, std::memory_order_relaxed);
  ++report.workers_recovered;
  e.control().workers_recovered.fetch_add(1, std::memory_order_relaxed);  // statistics
  // [R7] release, as unregister: our counter stores happen before the next
  // owner's attach. A deque that still names tasks keeps the entry marked
  // with the dead pid, so no attach takes it before they are stolen or
  // returned by a later pass.
  const std::uint64_t inc = std::uint64_t{claim_incarnation(held)} << 32;
  entry.claim.store(empty ? inc : inc | dead_pid, std::memory_order_release);
}

}  // namespace

void recover_dead_workers(Engine& e, RecoveryReport& report, std::uint32_t only_pid) {
  const std::uint32_t me = ipc::current_pid();
  const std::uint32_t hwm = e.worker_hwm();
  for (std::uint32_t v = 0; v < hwm; ++v) {
    WorkerEntry& entry = e.worker(v);
    // [A7] acquire: as in Worker::attach; the owner's attach stores (pid,
    // start time) are visible.
    std::uint64_t c = entry.claim.load(std::memory_order_acquire);
    if (!claim_owned(c) && !claim_recovering(c)) continue;  // free
    if (claim_pid(c) == me || (claim_recovering(c) && claim_recoverer(c) == me)) continue;
    if (only_pid != 0 && claim_pid(c) != only_pid &&
        !(claim_recovering(c) && entry.owner_pid.load(std::memory_order_relaxed) == only_pid)) {
      continue;  // relaxed: a filter; the takeover CAS decides
    }
    if (!owner_dead(entry, c)) continue;
    const std::uint64_t held = (c & ~std::uint64_t{0xFFFFFFFF}) | kRecoveringBit | me;
    // acq_rel: exactly one recoverer takes the entry (Invariant 1) and sees
    // the dead owner's stores; failure: someone else did, or it moved on.
    if (!entry.claim.compare_exchange_strong(c, held, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
    // The dead owner's pid: from the claim word, or (taking over from a
    // recoverer that died) from where that recoverer kept it.
    std::uint32_t dead_pid = claim_pid(c);
    if (dead_pid != 0) {
      entry.owner_pid.store(dead_pid, std::memory_order_relaxed);  // ours now; read by a later takeover
    } else {
      dead_pid = entry.owner_pid.load(std::memory_order_relaxed);  // relaxed: ordered by our CAS
    }
    settle_entry(e, v, held, dead_pid, report);
  }
  e.control().tasks_recovered.fetch_add(report.tasks_requeued + report.tasks_failed,
                                        std::memory_order_relaxed);  // statistics
}

bool worker_gone(const Engine& e, int v) noexcept {
  if (v < 0 || static_cast<std::uint32_t>(v) >= e.max_workers()) return false;
  const WorkerEntry& entry = e.worker(static_cast<std::uint32_t>(v));
  const std::uint64_t c = entry.claim.load(std::memory_order_acquire);  // as [A7]
  return claim_pid(c) != 0 && owner_dead(entry, c);
}

// ---- the audits --------------------------------------------------------------

std::vector<UnnamedTask> LostTaskAudit::pass(const Engine& e) {
  const std::uint32_t n = e.slot_count();
  words_.resize(n);
  named_.assign(n, 0);
  // Slots first, then names: a task whose name moves while we look is at
  // worst reported unnamed in this pass, and is acted on only if the next
  // pass agrees with an unchanged state word.
  for (std::uint32_t i = 0; i < n; ++i) {
    words_[i] = e.slot(i).state.load(std::memory_order_acquire);  // as [A3]
  }
  const auto visit = [&](std::uint32_t value) {
    const std::uint32_t i = sw::ref_slot(value);
    if (i < n && sw::tag(words_[i]) == sw::ref_tag(value)) named_[i] = 1;
  };
  for (std::uint32_t q = 0; q < e.queue_count(); ++q) {
    for (int p = 0; p < kPriorityCount; ++p) e.ring(q, static_cast<Priority>(p)).for_each_value_approx(visit);
  }
  for (std::uint32_t v = 0; v < e.max_workers(); ++v) e.deque(v).for_each_value_approx(visit);
  e.timers().for_each_value_approx(visit);
  std::vector<UnnamedTask> out;
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint64_t w = words_[i];
    if (sw::live(w) && (w & sw::kQueued) != 0 && named_[i] == 0) out.push_back({i, w});
  }
  return out;
}

void LostTaskAudit::settle(Engine& e, const std::vector<UnnamedTask>& first, const std::vector<UnnamedTask>& second,
                           RecoveryReport& report) {
  std::unordered_map<std::uint32_t, std::uint64_t> earlier;
  for (const UnnamedTask& t : first) earlier.emplace(t.index, t.word);
  for (const UnnamedTask& t : second) {
    auto it = earlier.find(t.index);
    if (it == earlier.end() || it->second != t.word) continue;
    TaskSlot& s = e.slot(t.index);
    std::uint64_t w = t.word;
    if (sw::state(w) == TaskState::kPending) {
      // A new tag makes any name still in transit stale (Invariant 3).
      // acq_rel: as [R5]; fails if the task moved on since the pass.
      const std::uint64_t next = sw::next_tag(w);
      if (!s.state.compare_exchange_strong(w, next, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
      e.journal_event(log::RecordType::kRequeued, t.index, next, static_cast<std::uint32_t>(log::RequeueReason::kAudit));
      if (!e.push_ref(t.index, next, nullptr)) continue;  // still full: the next audit tries again
      ++report.lost_tasks_requeued;
    } else if ((w & sw::kReleased) != 0) {
      if (!e.free_slot(t.index, w, log::FreeReason::kReleased)) continue;
      ++report.lost_refs_dropped;
    } else {
      // acq_rel: as drop_queued.
      if (!s.state.compare_exchange_strong(w, sw::next_tag(w) & ~sw::kQueued, std::memory_order_acq_rel,
                                           std::memory_order_relaxed)) {
        continue;
      }
      ++report.lost_refs_dropped;
    }
    e.control().lost_tasks_found.fetch_add(1, std::memory_order_relaxed);  // statistics
  }
}

void free_dead_reservations(Engine& e, RecoveryReport& report) {
  std::unordered_map<std::uint32_t, bool> running;  // pid -> alive, for this pass
  for (std::uint32_t i = 0; i < e.slot_count(); ++i) {
    // [A9] acquire: pairs with [R9] in allocate_slot; the pid read below is
    // the reserver's.
    std::uint64_t w = e.slot(i).state.load(std::memory_order_acquire);
    if (!sw::reserved(w)) continue;
    // Relaxed: ordered by [A9]. The slot may have moved on since (the pid is
    // then a later reserver's); free_slot's CAS on `w` fails for a stale word.
    const std::uint32_t pid = e.slot(i).submitter_pid.load(std::memory_order_relaxed);
    auto it = running.find(pid);
    if (it == running.end()) it = running.emplace(pid, ipc::process_running(pid, 0)).first;
    if (it->second) continue;
    // The reserver is dead: nobody else writes the slot. free_slot releases
    // any payload block it had stored and links the slot.
    if (e.free_slot(i, w, log::FreeReason::kWithdrawn)) ++report.reserved_slots_freed;
  }
}

void expire_results(Engine& e, std::int64_t now, RecoveryReport& report) {
  const auto ttl = static_cast<std::int64_t>(std::min<std::uint64_t>(e.config().result_ttl_ns, INT64_MAX));
  if (ttl == 0) return;
  for (std::uint32_t i = 0; i < e.slot_count(); ++i) {
    TaskSlot& s = e.slot(i);
    std::uint64_t w = s.state.load(std::memory_order_acquire);  // as [A3]
    if (!sw::live(w) || !is_terminal(sw::state(w)) || (w & (sw::kReleased | sw::kQueued)) != 0) continue;
    // Relaxed: ordered by the acquire above; a task cancelled before it ran
    // has no finish time and counts from its submission.
    std::int64_t finished = s.finish_ns.load(std::memory_order_relaxed);
    if (finished == 0) finished = s.submit_ns.load(std::memory_order_relaxed);
    if (now - finished < ttl) continue;
    // A reader racing us loses its CAS and finds the task gone.
    if (e.free_slot(i, w, log::FreeReason::kExpired)) ++report.results_expired;
  }
}

bool relink_free_slots(Engine& e, std::int64_t gap_ns, RecoveryReport& report) {
  const std::uint32_t n = e.slot_count();
  std::vector<std::uint64_t> before(n);
  for (std::uint32_t i = 0; i < n; ++i) before[i] = e.slot(i).state.load(std::memory_order_acquire);  // as [A3]
  std::vector<std::uint8_t> member(n, 0);
  std::uint64_t head = 0;
  if (!e.free_slots().members_if_unchanged(member, head)) return false;
  // A process between popping a slot and reserving it, or between freeing
  // it and linking it, holds a free slot the walk does not see. Wait, and
  // act only if the stack did not change at all meanwhile (nobody was
  // allocating or freeing) and the slot's word is the same.
  std::this_thread::sleep_for(std::chrono::nanoseconds(gap_ns));
  if (e.free_slots().head_word_approx() != head) return false;
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint64_t w = e.slot(i).state.load(std::memory_order_acquire);  // as [A3]
    if (member[i] != 0 || w != before[i] || sw::state(w) != TaskState::kFree || sw::reserved(w)) continue;
    if (e.free_slots().head_word_approx() != head) return false;
    e.free_slots().push(i);
    head = e.free_slots().head_word_approx();
    ++report.free_slots_relinked;
  }
  if (report.free_slots_relinked > 0) e.notify_space();
  return true;
}

WatchdogReport Watchdog::check(Engine& e, std::int64_t now) {
  WatchdogReport report;
  const std::uint32_t me = ipc::current_pid();
  const std::uint32_t hwm = e.worker_hwm();
  if (seen_.size() < hwm) seen_.resize(hwm);
  for (std::uint32_t v = 0; v < hwm; ++v) {
    WorkerEntry& entry = e.worker(v);
    Seen& seen = seen_[v];
    // Relaxed: the state word decides (below).
    const std::uint32_t pid = claim_pid(entry.claim.load(std::memory_order_relaxed));
    // Acquire: pairs with the worker's release store after arm_time_limit,
    // so the deadline read below is this attempt's.
    const std::uint32_t index = entry.current_slot.load(std::memory_order_acquire);
    if (pid == 0 || index >= e.slot_count()) {
      seen.word = 0;
      continue;
    }
    TaskSlot& s = e.slot(index);
    std::uint64_t w = s.state.load(std::memory_order_acquire);  // as [A3]: the worker's arm_time_limit stores
    if (sw::state(w) != TaskState::kRunning || sw::owner(w) != static_cast<int>(v)) {
      seen.word = 0;
      continue;
    }
    const std::int64_t deadline = s.deadline_ns.load(std::memory_order_relaxed);
    if ((w & sw::kCancelReq) == 0 && deadline != 0 && now >= deadline) {
      // acq_rel: the worker's completion CAS and ours are ordered; failure
      // (it finished, or a cancel came first): look again next pass.
      const std::uint64_t flagged = w | sw::kCancelReq | sw::kTimedOut;
      if (s.state.compare_exchange_strong(w, flagged, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        ++report.timed_out;
        w = flagged;
      }
    }
    if ((w & sw::kCancelReq) == 0) {
      seen.word = 0;
      continue;
    }
    if (seen.word != w || seen.slot != index) {
      seen = Seen{index, w, now};
      continue;
    }
    const std::int64_t grace_ns = std::int64_t{s.kill_grace_ms.load(std::memory_order_relaxed)} * 1'000'000;
    // A worker thread of our own process cannot be killed without us.
    if (pid == me || now - seen.since < grace_ns) continue;
    // Still the same attempt, still flagged, and the pid is still the
    // process that attached (not a reused pid): kill it.
    if (s.state.load(std::memory_order_acquire) != w ||
        !ipc::process_running(pid, entry.start_time.load(std::memory_order_relaxed))) {
      continue;
    }
    if (kill(static_cast<pid_t>(pid), SIGKILL) == 0) {
      ++report.killed;
      seen.word = 0;
    }
  }
  return report;
}

}  // namespace detail

Watchdog::Watchdog(std::shared_ptr<detail::Engine> engine)
    : engine_(std::move(engine)), impl_(std::make_unique<detail::Watchdog>()) {}
Watchdog::~Watchdog() = default;

Result<std::unique_ptr<Watchdog>> Watchdog::attach(std::string_view segment) {
  auto engine = detail::Engine::attach(segment, ipc::Access::kReadWrite);
  if (!engine) return engine.status();
  return std::unique_ptr<Watchdog>(new Watchdog(std::move(engine).value()));
}

WatchdogReport Watchdog::check() { return impl_->check(*engine_, ipc::monotonic_ns()); }

Result<RecoveryReport> recover(std::string_view segment, const RecoverOptions& options) {
  if (options.audit_gap_ns < 0) {
    return invalid_argument("audit_gap_ns " + std::to_string(options.audit_gap_ns) + ": must not be negative");
  }
  auto engine = detail::Engine::attach(segment, ipc::Access::kReadWrite);
  if (!engine) return engine.status();
  detail::Engine& e = **engine;
  RecoveryReport report;
  detail::recover_dead_workers(e, report, 0);
  detail::free_dead_reservations(e, report);
  detail::expire_results(e, ipc::monotonic_ns(), report);
  if (options.audit) {
    detail::LostTaskAudit audit;
    auto first = audit.pass(e);
    if (!first.empty()) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(options.audit_gap_ns));
      auto second = audit.pass(e);
      audit.settle(e, first, second, report);
    }
  }
  if (options.relink_free_slots) (void)detail::relink_free_slots(e, options.audit_gap_ns, report);
  return report;
}

Result<RecoveryReport> worker_exited(std::string_view segment, std::uint32_t pid, int wait_status) {
  auto engine = detail::Engine::attach(segment, ipc::Access::kReadWrite);
  if (!engine) return engine.status();
  detail::Engine& e = **engine;
  RecoveryReport report;
  if (pid == 0) return report;
  const std::uint32_t reason = detail::encode(ExitReason::from_wait_status(wait_status));
  for (std::uint32_t v = 0; v < e.worker_hwm(); ++v) {
    detail::WorkerEntry& entry = e.worker(v);
    // Relaxed: the takeover CAS in recover_dead_workers orders what matters.
    if (detail::claim_pid(entry.claim.load(std::memory_order_relaxed)) != pid) continue;
    // release: pairs with the acquire in settle_entry.
    entry.exit_reason.store(reason, std::memory_order_release);
  }
  detail::recover_dead_workers(e, report, pid);
  // Names the dead worker had in its hands are found by the next audit;
  // make it due now.
  e.control().next_audit_ns.store(0, std::memory_order_relaxed);  // relaxed: a hint
  return report;
}

}  // namespace taskring
