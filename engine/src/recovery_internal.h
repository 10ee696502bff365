// The recovery steps (recovery.cc) that workers and waiting producers run on
// their own, beside the public recover() and worker_exited().
//
// Thread safety: every function is safe from any thread of any process;
// a LostTaskAudit object belongs to one thread.
#pragma once

#include <cstdint>
#include <vector>

#include "engine_internal.h"
#include "taskring/recovery.h"

namespace taskring::detail {

// Settles the registry entries of dead workers (all of them, or with
// `only_pid` just that pid's): requeues or fails their running tasks, moves
// their deques back to the queue rings, frees the entries. Reads /proc once
// per registered worker.
void recover_dead_workers(Engine& e, RecoveryReport& report, std::uint32_t only_pid);

// True if registry entry `v` is owned by a process that is no longer running.
bool worker_gone(const Engine& e, int v) noexcept;

// Frees the slots that dead producers had reserved but not submitted.
void free_dead_reservations(Engine& e, RecoveryReport& report);

// Frees finished, unread tasks older than the segment's result_ttl_ns.
void expire_results(Engine& e, std::int64_t now, RecoveryReport& report);

// The idle audit of the free stack: relinks free slots that a true snapshot
// of the stack does not hold and that stayed unchanged for gap_ns while
// nothing was allocated or freed. Returns false (having done nothing) if the
// segment was not idle. Sleeps gap_ns.
bool relink_free_slots(Engine& e, std::int64_t gap_ns, RecoveryReport& report);

struct UnnamedTask {
  std::uint32_t index;
  std::uint64_t word;
};

// The lost-reference audit, in two passes that the caller spaces apart
// (recover() sleeps between them; a worker runs them on two later turns of
// its loop, so it never stalls).
class LostTaskAudit {
 public:
  // Queued tasks (pending, or finished with a name still expected) that no
  // ring or deque names right now, with their state words.
  std::vector<UnnamedTask> pass(const Engine& e);
  // Requeues (under a new tag) or drops the queued bit of every task found
  // unnamed with the same word by both passes.
  void settle(Engine& e, const std::vector<UnnamedTask>& first, const std::vector<UnnamedTask>& second,
              RecoveryReport& report);

 private:
  std::vector<std::uint64_t> words_;
  std::vector<std::uint8_t> named_;
};

// Enforces time limits and cancel requests on tasks other processes run
// (one per process that watches; not shared between threads).
class Watchdog {
 public:
  // Raises the cancel and timed-out flags of running tasks past their
  // deadline, and kills (SIGKILL) a worker whose flagged task has run on
  // for its kill grace since this watchdog first saw the flag. Looks only
  // at the task each registered worker says it runs (current_slot): a few
  // loads per worker, no system call unless it kills.
  WatchdogReport check(Engine& e, std::int64_t now);

 private:
  struct Seen {
    std::uint32_t slot = 0;
    std::uint64_t word = 0;   // the flagged running word
    std::int64_t since = 0;   // when this watchdog first saw it
  };
  std::vector<Seen> seen_;  // per registry index
};

}  // namespace taskring::detail
