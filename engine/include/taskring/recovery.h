// Crash recovery (docs/guarantees.md): finding processes of a segment that
// died and putting back what they held. Any process may run it, at any time,
// as often as it likes: recovery takes a dead worker's registry entry with
// one CAS before touching its tasks, so two recoverers never both act on the
// same death, and a recoverer that dies itself leaves the entry for the next.
//
// Workers run it on their own (they check their peers' liveness every few
// milliseconds while busy and at every park timeout), producers waiting for
// a task run it when the task's worker has died, and supervisors call
// worker_exited() as soon as waitpid reports a child. Nothing requires a
// central daemon.
//
// Thread safety: every function is safe from any thread of any process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "taskring/base/status.h"
#include "taskring/task.h"

namespace taskring {

// What one recovery pass found and did.
struct RecoveryReport {
  std::uint32_t workers_recovered = 0;     // dead workers whose registry entries were settled
  std::uint64_t tasks_requeued = 0;        // tasks running in a dead worker, put back in their queue
  std::uint64_t tasks_failed = 0;          // tasks running in a dead worker that had no attempt left
  std::uint64_t deque_tasks_returned = 0;  // tasks claimed by a dead worker but not started, put back
  std::uint64_t lost_tasks_requeued = 0;   // pending tasks that no ring named (the audit)
  std::uint64_t lost_refs_dropped = 0;     // finished tasks whose last ring reference was lost (the audit)
  std::uint64_t reserved_slots_freed = 0;  // slots a dead producer had taken but not yet submitted
  std::uint64_t free_slots_relinked = 0;   // free slots missing from the free list (the idle audit)
  std::uint64_t results_expired = 0;       // unread outcomes older than the segment's result_ttl_ns, freed

  std::uint64_t total() const noexcept {
    return workers_recovered + tasks_requeued + tasks_failed + deque_tasks_returned + lost_tasks_requeued +
           lost_refs_dropped + reserved_slots_freed + free_slots_relinked + results_expired;
  }
  RecoveryReport& operator+=(const RecoveryReport& o) noexcept;
};

struct RecoverOptions {
  // Also audit every slot against every ring and deque for pending tasks
  // that nothing names any more (a process died between taking a task out
  // of a ring and putting it somewhere else). Two passes, audit_gap_ns
  // apart; a task is requeued only if both passes found it unnamed and
  // unchanged. Costs one read of every slot and ring cell per pass.
  bool audit = true;
  std::int64_t audit_gap_ns = 20'000'000;
  // Also walk the free-slot list and relink free slots missing from it (a
  // process died between taking a slot and marking it, or between freeing a
  // slot and linking it). Only done if no slot is allocated or freed during
  // the walk, so it succeeds when the segment is idle and is skipped, with
  // no effect, while it is busy.
  bool relink_free_slots = true;
};

// Recovers everything that dead processes of segment `segment` hold: the
// running and claimed tasks of dead workers (requeued, or failed if they had
// no attempt left; either way with the exit reason recorded on the task), the
// half-submitted slots of dead producers, and, with the audits, lost ring
// references and free slots. Errors: attach's.
Result<RecoveryReport> recover(std::string_view segment, const RecoverOptions& options = {});

// For supervisors: records that worker process `pid` ended with waitpid
// status `wait_status`, so that recovery puts that reason on its tasks, then
// recovers it at once (without the audits, which the caller may run later).
// A pid that holds no registry entry is not an error: the report is empty.
Result<RecoveryReport> worker_exited(std::string_view segment, std::uint32_t pid, int wait_status);

// What a watchdog pass did.
struct WatchdogReport {
  std::uint32_t timed_out = 0;  // running tasks whose cancel flag it raised at their deadline
  std::uint32_t killed = 0;     // workers it killed because a flagged task outlived its grace
};

namespace detail { class Engine; class Watchdog; }

// Enforces time limits and cancel requests on tasks that other processes
// run: at a task's deadline it raises the task's cancel flag (marking it
// timed out), and once a flagged task (timed out or cancelled) has run on
// for its kill grace it kills the worker process with SIGKILL, whose death
// recovery then handles (the attempt counts as failed, or the task ends
// cancelled). Every worker runs one for its peers; a supervisor should run
// one too (taskring worker --processes does), so that a lone worker is
// watched as well.
//
// Thread safety: one thread per Watchdog.
class Watchdog {
 public:
  // Errors: attach's.
  static Result<std::unique_ptr<Watchdog>> attach(std::string_view segment);
  ~Watchdog();
  // One pass; call it every few tens of milliseconds. It remembers when it
  // first saw each flag, so the grace is measured from its own first look.
  WatchdogReport check();

 private:
  Watchdog(std::shared_ptr<detail::Engine> engine);
  std::shared_ptr<detail::Engine> engine_;
  std::unique_ptr<detail::Watchdog> impl_;
};

}  // namespace taskring
