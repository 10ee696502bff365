// Retries and crash recovery, one behaviour at a time: a failed attempt is
// retried while attempts are left; a worker process killed while running a
// task, or holding claimed tasks, gives them back with the exit reason on
// the task; a dead producer's reserved slot is freed; a ring name lost in a
// dead process's hands is found by the audit, and the stale name is then
// ignored; a free slot missing from the free list is relinked; drain stops
// the workers attached before it.
//
// White-box where a death must land between two particular instructions:
// those tests reach into the segment through detail::Engine to leave the
// state such a death leaves. Forking tests: not run under TSan.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>

#include "engine_internal.h"
#include "engine_test_util.h"
#include "taskring/recovery.h"

namespace taskring::testing {
namespace {

using namespace std::chrono_literals;

SubmitOptions attempts(std::uint32_t n) {
  SubmitOptions o;
  o.max_attempts = n;
  return o;
}

// Forks a worker process that serves `segment` with a handler "block" that
// never returns (until killed) and the built-ins. Returns its pid.
pid_t fork_blocking_worker(const std::string& segment, std::uint32_t claim_batch = 1,
                           std::int64_t kill_grace_ns = HandlerOptions{}.kill_grace_ns) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  WorkerOptions o;
  o.claim_batch = claim_batch;
  auto w = Worker::attach(segment, o);
  if (!w) _exit(10);
  (*w)->register_builtins();
  HandlerOptions h;
  h.kill_grace_ns = kill_grace_ns;
  if (!(*w)->register_handler("block", [](TaskContext&) {
         for (;;) pause();
       }, h).is_ok()) {
    _exit(11);
  }
  (void)(*w)->run();
  _exit(0);
}

// Waits until task `id` is running; false after kHangTimeout.
bool running(Client& c, TaskId id) {
  return wait_until([&] {
    auto info = c.peek(id);
    return info.is_ok() && info->state == TaskState::kRunning;
  });
}

int kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// ---- retries --------------------------------------------------------------------

TEST(RetryTest, FailingTwiceThenSucceedingEndsSucceededOnTheThirdAttempt) {
  TestSegment seg("retry-3");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto w = seg.worker({}, false);
  int calls = 0;
  ASSERT_TRUE(w->register_handler("flaky", [&](TaskContext& ctx) {
                 if (++calls < 3) return ctx.fail("try " + std::to_string(ctx.attempt()));
                 ctx.set_result("third time");
               }).is_ok());
  auto id = seg.client().submit("flaky", "", attempts(3));
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(3).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "third time");
  EXPECT_EQ(out->attempts, 3u);
  EXPECT_EQ(w->stats().retried, 2u);
  EXPECT_EQ(w->stats().succeeded, 1u);
  EXPECT_EQ(w->stats().failed, 0u);
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(RetryTest, ExhaustedAttemptsEndFailedWithTheLastError) {
  TestSegment seg("retry-out");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  ASSERT_TRUE(w->register_handler("bad", [](TaskContext& ctx) {
                 ctx.fail("attempt " + std::to_string(ctx.attempt()) + " failed");
               }).is_ok());
  auto id = seg.client().submit("bad", "", attempts(2));
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(2).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_EQ(out->value, "attempt 2 failed");
  EXPECT_EQ(out->attempts, 2u);
  EXPECT_EQ(w->stats().retried, 1u);
  EXPECT_EQ(w->stats().failed, 1u);
}

TEST(RetryTest, HandlerDefaultAppliesUnlessTheSubmitterSays) {
  TestSegment seg("retry-default");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  ASSERT_TRUE(w->register_handler("bad", [](TaskContext& ctx) { ctx.fail("no"); }, HandlerOptions{4}).is_ok());
  auto by_handler = seg.client().submit("bad", "");
  auto by_submitter = seg.client().submit("bad", "", attempts(1));
  ASSERT_TRUE(by_handler.is_ok() && by_submitter.is_ok());
  ASSERT_TRUE(w->run_tasks(5).is_ok());
  EXPECT_EQ(seg.client().wait(*by_handler, kHangTimeoutNs)->attempts, 4u);
  EXPECT_EQ(seg.client().wait(*by_submitter, kHangTimeoutNs)->attempts, 1u);
}

TEST(RetryTest, UnknownHandlerGetsTheEngineDefault) {
  TestSegment seg("retry-engine-default");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  auto id = seg.client().submit("nobody_serves_this", "");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(kDefaultMaxAttempts).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_EQ(out->attempts, kDefaultMaxAttempts);
}

TEST(RetryTest, MaxAttemptsOverTheLimitIsRejectedNamingTheField) {
  TestSegment seg("retry-limit");
  ASSERT_TRUE(seg.status().is_ok());
  auto id = seg.client().submit("noop", "", attempts(kMaxAttemptsLimit + 1));
  ASSERT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(id.status().message().find("max_attempts 256"), std::string::npos) << id.status().message();
  auto w = seg.worker({}, false);
  const Status s = w->register_handler("x", [](TaskContext&) {}, HandlerOptions{kMaxAttemptsLimit + 1});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("max_attempts 256"), std::string::npos) << s.message();
}

// ---- worker crashes -------------------------------------------------------------

TEST(RecoveryTest, KilledWorkersRunningTaskIsRequeuedWithTheExitReason) {
  TestSegment seg("crash-requeue");
  ASSERT_TRUE(seg.status().is_ok());
  auto id = seg.client().submit("block", "", attempts(3));
  ASSERT_TRUE(id.is_ok());
  const pid_t child = fork_blocking_worker(seg.name());
  ASSERT_TRUE(running(seg.client(), *id));
  const int status = kill_and_reap(child);
  auto report = worker_exited(seg.name(), static_cast<std::uint32_t>(child), status);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->workers_recovered, 1u);
  EXPECT_EQ(report->tasks_requeued, 1u);
  auto info = seg.client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kPending);
  EXPECT_EQ(info->crashes, 1u);
  EXPECT_EQ(info->last_crash_pid, static_cast<std::uint32_t>(child));
  EXPECT_EQ(info->last_crash, (ExitReason{ExitReason::Kind::kSignaled, SIGKILL}));

  // The next worker runs it to the end; the crash stays on the record.
  auto w = seg.worker({}, false);
  ASSERT_TRUE(w->register_handler("block", [](TaskContext& ctx) { ctx.set_result("done"); }).is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "done");
  EXPECT_EQ(out->attempts, 2u);
  EXPECT_EQ(out->crashes, 1u);
  EXPECT_EQ(out->last_crash.describe(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(RecoveryTest, CrashOnTheLastAttemptFailsTheTaskNamingTheSignal) {
  TestSegment seg("crash-last");
  ASSERT_TRUE(seg.status().is_ok());
  auto id = seg.client().submit("block", "", attempts(1));
  ASSERT_TRUE(id.is_ok());
  const pid_t child = fork_blocking_worker(seg.name());
  ASSERT_TRUE(running(seg.client(), *id));
  const int status = kill_and_reap(child);
  auto report = worker_exited(seg.name(), static_cast<std::uint32_t>(child), status);
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->tasks_failed, 1u);
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_NE(out->value.find("signal 9"), std::string::npos) << out->value;
  EXPECT_NE(out->value.find("1 of 1"), std::string::npos) << out->value;
  EXPECT_EQ(out->crashes, 1u);
}

TEST(RecoveryTest, PeerWorkerFindsAnUnreapedDeadWorkerAndRunsItsTask) {
  TestSegment seg("crash-peer");
  ASSERT_TRUE(seg.status().is_ok());
  auto id = seg.client().submit("block", "", attempts(3));
  ASSERT_TRUE(id.is_ok());
  const pid_t child = fork_blocking_worker(seg.name());
  ASSERT_TRUE(running(seg.client(), *id));
  kill(child, SIGKILL);  // not reaped: a zombie, as when a parent is slow to wait
  // A worker in this process, parked with a short timeout, notices on its
  // own; nobody calls worker_exited or recover.
  WorkerOptions o;
  o.park_timeout_ns = 5'000'000;
  auto w = seg.worker(o, false);
  ASSERT_TRUE(w->register_handler("block", [](TaskContext& ctx) { ctx.set_result("recovered"); }).is_ok());
  WorkerThread t(std::move(w));
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, "recovered");
  EXPECT_EQ(out->crashes, 1u);
  // The zombie's wait status was still in /proc.
  EXPECT_EQ(out->last_crash, (ExitReason{ExitReason::Kind::kSignaled, SIGKILL}));
  EXPECT_TRUE(t.stop_and_join());
  int status = 0;
  waitpid(child, &status, 0);
}

TEST(RecoveryTest, TasksClaimedByADeadWorkerGoBackToTheirQueue) {
  TestSegment seg("crash-deque");
  ASSERT_TRUE(seg.status().is_ok());
  constexpr int kTasks = 8;
  std::vector<TaskId> ids;
  for (int i = 0; i < kTasks; ++i) {
    auto id = seg.client().submit("block", std::to_string(i), attempts(3));
    ASSERT_TRUE(id.is_ok());
    ids.push_back(*id);
  }
  const pid_t child = fork_blocking_worker(seg.name(), kTasks);  // claims all: runs one, holds seven
  ASSERT_TRUE(running(seg.client(), ids[0]));
  const int status = kill_and_reap(child);
  auto report = worker_exited(seg.name(), static_cast<std::uint32_t>(child), status);
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->tasks_requeued, 1u);
  EXPECT_EQ(report->deque_tasks_returned, static_cast<std::uint64_t>(kTasks - 1));
  auto w = seg.worker({}, false);
  // The registry entry (and its counters) may be the dead worker's.
  const std::uint64_t claimed_before = w->stats().claimed;
  ASSERT_TRUE(w->register_handler("block", [](TaskContext& ctx) { ctx.set_result(ctx.payload()); }).is_ok());
  ASSERT_TRUE(w->run_tasks(kTasks).is_ok());
  for (int i = 0; i < kTasks; ++i) {
    auto out = seg.client().wait(ids[i], kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok());
    EXPECT_EQ(out->value, std::to_string(i));
    EXPECT_EQ(out->crashes, i == 0 ? 1u : 0u) << i;
  }
  EXPECT_EQ(w->stats().claimed - claimed_before, static_cast<std::uint64_t>(kTasks));  // once each, no duplicate
}

// ---- dead producers ---------------------------------------------------------

TEST(RecoveryTest, SlotReservedByADeadProducerIsFreed) {
  EngineConfig c = small_config();
  c.max_payload = 4096;
  c.payload_area = 64 << 10;  // filled below
  TestSegment seg("crash-producer", c);
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const std::string big(4096, 'p');
  SubmitOptions fail_fast;
  fail_fast.on_full = FullPolicy::kFail;
  int held = 0;
  while (seg.client().submit("noop", big, fail_fast).is_ok()) ++held;
  ASSERT_GT(held, 0);
  const std::uint64_t free_before = seg.free_slots();
  const pid_t child = fork();
  if (child == 0) {
    auto cl = Client::attach(seg.name());
    if (!cl) _exit(10);
    (void)cl->submit("noop", big);  // waits for payload room, holding a reserved slot
    _exit(0);
  }
  ASSERT_TRUE(wait_until([&] { return seg.free_slots() == free_before - 1; }));
  kill_and_reap(child);
  auto report = recover(seg.name());
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->reserved_slots_freed, 1u);
  EXPECT_EQ(seg.free_slots(), free_before);
}

// ---- the audits --------------------------------------------------------------

TEST(RecoveryTest, RingNameLostInADeadProcessIsRequeuedAndTheStaleNameIgnored) {
  TestSegment seg("audit-lost");
  ASSERT_TRUE(seg.status().is_ok());
  auto id = seg.client().submit("echo", "once");
  ASSERT_TRUE(id.is_ok());
  // What a worker killed between popping the name and running it leaves:
  // a pending task that no ring names.
  auto engine = detail::Engine::attach(seg.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(engine.is_ok());
  ipc::Ring ring = (*engine)->ring(0, Priority::kNormal);
  std::uint32_t stale = 0;
  ASSERT_TRUE(ring.try_pop(stale));
  EXPECT_EQ(detail::sw::ref_slot(stale), id->slot());

  RecoverOptions o;
  o.audit_gap_ns = 1'000'000;
  auto report = recover(seg.name(), o);
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->lost_tasks_requeued, 1u);
  // The old name comes back (the "dead" process was only slow): it must not
  // run the task a second time.
  ASSERT_TRUE(ring.try_push(stale));
  auto w = seg.worker();
  int ran = 0;
  ASSERT_TRUE(w->register_handler("count", [&](TaskContext&) { ++ran; }).is_ok());
  WorkerThread t(std::move(w));
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->value, "once");
  EXPECT_EQ(out->attempts, 1u);
  // Nothing else is queued: one more task proves the stale name was dropped
  // rather than run (the worker drains the ring in order).
  auto probe = seg.client().submit("echo", "probe");
  ASSERT_TRUE(probe.is_ok());
  EXPECT_EQ(seg.client().wait(*probe, kHangTimeoutNs)->value, "probe");
  ASSERT_TRUE(t.stop_and_join());
  EXPECT_EQ(t.last_stats().claimed, 2u);
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(RecoveryTest, IdleAuditLeavesABusyOrHealthySegmentAlone) {
  TestSegment seg("audit-healthy");
  ASSERT_TRUE(seg.status().is_ok());
  auto pending = seg.client().submit("echo", "x");
  ASSERT_TRUE(pending.is_ok());
  RecoverOptions o;
  o.audit_gap_ns = 1'000'000;
  auto report = recover(seg.name(), o);
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->total(), 0u);
}

TEST(RecoveryTest, FreeSlotMissingFromTheFreeListIsRelinked) {
  TestSegment seg("audit-free");
  ASSERT_TRUE(seg.status().is_ok());
  auto engine = detail::Engine::attach(seg.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(engine.is_ok());
  // What a producer killed between popping a slot and reserving it leaves.
  std::uint32_t index = 0;
  ASSERT_EQ((*engine)->free_slots().pop(index), ipc::FreeStack::PopResult::kOk);
  EXPECT_EQ((*engine)->free_slots().size_quiescent(), seg.config().slots - 1u);
  RecoverOptions o;
  o.audit_gap_ns = 1'000'000;
  auto report = recover(seg.name(), o);
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->free_slots_relinked, 1u);
  EXPECT_EQ((*engine)->free_slots().size_quiescent(), seg.config().slots);
  // The relinked slot is on the list, once.
  std::vector<std::uint32_t> popped;
  std::uint32_t next = 0;
  while ((*engine)->free_slots().pop(next) == ipc::FreeStack::PopResult::kOk) popped.push_back(next);
  EXPECT_EQ(std::count(popped.begin(), popped.end(), index), 1);
  for (std::uint32_t i : popped) (*engine)->free_slots().push(i);
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

// ---- time limits and cancelling running tasks ----------------------------------

// Runs a watchdog until `done` holds or kHangTimeout passes; returns its totals.
template <typename Done>
WatchdogReport watch_until(const std::string& segment, Done&& done) {
  WatchdogReport total;
  auto dog = Watchdog::attach(segment);
  EXPECT_TRUE(dog.is_ok());
  if (!dog) return total;
  wait_until([&] {
    const WatchdogReport r = (*dog)->check();
    total.timed_out += r.timed_out;
    total.killed += r.killed;
    return done();
  });
  return total;
}

TEST(TimeLimitTest, HandlerThatChecksTheFlagEndsItsAttemptAsTimedOut) {
  TestSegment seg("limit-coop");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  ASSERT_TRUE(w->register_handler("polite", [](TaskContext& ctx) {
                 while (!ctx.cancel_requested()) std::this_thread::sleep_for(1ms);
               }).is_ok());
  SubmitOptions o = attempts(1);
  o.time_limit_ns = 30'000'000;
  auto id = seg.client().submit("polite", "", o);
  ASSERT_TRUE(id.is_ok());
  WorkerThread t(std::move(w));
  ASSERT_TRUE(running(seg.client(), *id));
  auto info = seg.client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->deadline_ns - info->start_ns, 30'000'000);
  // This process's watchdog raises the flag (it would not kill its own worker).
  const WatchdogReport r = watch_until(seg.name(), [&] {
    auto now = seg.client().peek(*id);
    return !now.is_ok() || now->state != TaskState::kRunning;
  });
  EXPECT_EQ(r.timed_out, 1u);
  EXPECT_EQ(r.killed, 0u);
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_TRUE(out->timed_out);
  EXPECT_EQ(out->value, "time limit of 30 ms exceeded");
}

TEST(TimeLimitTest, WorkerOfAHandlerThatIgnoresTheFlagIsKilledAndTheTaskRetried) {
  TestSegment seg("limit-kill");
  ASSERT_TRUE(seg.status().is_ok());
  SubmitOptions o = attempts(2);
  o.time_limit_ns = 20'000'000;
  auto id = seg.client().submit("block", "", o);
  ASSERT_TRUE(id.is_ok());
  const pid_t child = fork_blocking_worker(seg.name(), 1, 30'000'000);
  ASSERT_TRUE(running(seg.client(), *id));
  int status = 0;
  const WatchdogReport r = watch_until(seg.name(), [&] { return waitpid(child, &status, WNOHANG) == child; });
  EXPECT_EQ(r.timed_out, 1u);
  EXPECT_EQ(r.killed, 1u);
  auto report = worker_exited(seg.name(), static_cast<std::uint32_t>(child), status);
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->tasks_requeued, 1u);
  auto w = seg.worker({}, false);
  ASSERT_TRUE(w->register_handler("block", [](TaskContext& ctx) { ctx.set_result("in time"); }).is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->attempts, 2u);
  EXPECT_EQ(out->crashes, 1u);
  EXPECT_FALSE(out->timed_out);  // the last attempt was in time
}

TEST(TimeLimitTest, LastAttemptKilledForItsTimeLimitFailsSayingSo) {
  TestSegment seg("limit-last");
  ASSERT_TRUE(seg.status().is_ok());
  SubmitOptions o = attempts(1);
  o.time_limit_ns = 20'000'000;
  auto id = seg.client().submit("block", "", o);
  ASSERT_TRUE(id.is_ok());
  const pid_t child = fork_blocking_worker(seg.name(), 1, 10'000'000);
  ASSERT_TRUE(running(seg.client(), *id));
  int status = 0;
  watch_until(seg.name(), [&] { return waitpid(child, &status, WNOHANG) == child; });
  ASSERT_TRUE(worker_exited(seg.name(), static_cast<std::uint32_t>(child), status).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_TRUE(out->timed_out);
  EXPECT_NE(out->value.find("time limit exceeded"), std::string::npos) << out->value;
}

TEST(TimeLimitTest, BadTimeLimitsAreRejectedNamingTheField) {
  TestSegment seg("limit-bad");
  ASSERT_TRUE(seg.status().is_ok());
  SubmitOptions o;
  o.time_limit_ns = 1'500'000;  // not whole milliseconds
  auto id = seg.client().submit("noop", "", o);
  ASSERT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(id.status().message().find("time_limit_ns 1500000"), std::string::npos) << id.status().message();
  auto w = seg.worker({}, false);
  HandlerOptions h;
  h.kill_grace_ns = -1'000'000;
  EXPECT_EQ(w->register_handler("x", [](TaskContext&) {}, h).code(), StatusCode::kInvalidArgument);
}

TEST(CancelRunningTest, HandlerThatIgnoresACancelHasItsWorkerKilledAndEndsCancelled) {
  TestSegment seg("cancel-kill");
  ASSERT_TRUE(seg.status().is_ok());
  auto id = seg.client().submit("block", "", attempts(3));
  ASSERT_TRUE(id.is_ok());
  const pid_t child = fork_blocking_worker(seg.name(), 1, 20'000'000);
  ASSERT_TRUE(running(seg.client(), *id));
  ASSERT_EQ(*seg.client().cancel(*id), CancelOutcome::kRequested);
  int status = 0;
  const WatchdogReport r = watch_until(seg.name(), [&] { return waitpid(child, &status, WNOHANG) == child; });
  EXPECT_EQ(r.killed, 1u);
  EXPECT_EQ(r.timed_out, 0u);
  ASSERT_TRUE(worker_exited(seg.name(), static_cast<std::uint32_t>(child), status).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kCancelled);  // not retried: cancelled is final
  EXPECT_NE(out->value.find("cancelled"), std::string::npos) << out->value;
  EXPECT_EQ(out->attempts, 1u);
}

// ---- dead letters, quarantine, retention ---------------------------------------

TEST(DeadLetterTest, FailedTasksAreListedOldestFirstAndCanBeRequeued) {
  TestSegment seg("dead-requeue");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  bool heal = false;
  ASSERT_TRUE(w->register_handler("sick", [&](TaskContext& ctx) {
                 if (!heal) return ctx.fail("still sick: " + std::string(ctx.payload()));
                 ctx.set_result("healed");
               }).is_ok());
  SubmitOptions detached = attempts(1);
  detached.detached = true;
  auto first = seg.client().submit("sick", "1", detached);
  ASSERT_TRUE(first.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto second = seg.client().submit("sick", "2", attempts(1));
  ASSERT_TRUE(second.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto dead = seg.client().dead_letters();
  ASSERT_TRUE(dead.is_ok());
  ASSERT_EQ(dead->size(), 2u);
  EXPECT_EQ((*dead)[0].id, *first);
  EXPECT_EQ((*dead)[0].value, "still sick: 1");
  EXPECT_EQ((*dead)[1].id, *second);
  EXPECT_EQ(seg.client().dead_letters(1)->size(), 1u);

  heal = true;
  ASSERT_TRUE(seg.client().requeue(*first).is_ok());
  EXPECT_EQ(seg.client().requeue(*first).code(), StatusCode::kFailedPrecondition);  // pending now
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = seg.client().wait(*first, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "healed");
  EXPECT_EQ(out->attempts, 1u);  // fresh attempts
  EXPECT_EQ(seg.client().dead_letters()->size(), 1u);
  EXPECT_EQ(seg.client().requeue(TaskId::make(0, 12345)).code(), StatusCode::kNotFound);
}

TEST(DeadLetterTest, PurgeFreesOnlyAFailedTask) {
  TestSegment seg("dead-purge");
  ASSERT_TRUE(seg.status().is_ok());
  auto pending = seg.client().submit("echo", "wait for me");
  auto failed = seg.client().submit("fail", "broken");
  ASSERT_TRUE(pending.is_ok() && failed.is_ok());
  const Status not_dead = seg.client().purge(*pending);
  EXPECT_EQ(not_dead.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(not_dead.message().find("is pending"), std::string::npos) << not_dead.message();
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(2).is_ok());
  // A requeued dead letter keeps showing its last error while it waits.
  ASSERT_TRUE(seg.client().requeue(*failed).is_ok());
  auto info = seg.client().peek(*failed);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kPending);
  EXPECT_EQ(info->attempts, 0u);
  EXPECT_EQ(info->last_error, "broken");
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  ASSERT_TRUE(seg.client().purge(*failed).is_ok());
  EXPECT_EQ(seg.client().purge(*failed).code(), StatusCode::kNotFound);
  EXPECT_EQ(seg.client().wait(*pending, kHangTimeoutNs)->value, "wait for me");
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(DeadLetterTest, TaskThatKeepsCrashingItsWorkersIsQuarantined) {
  TestSegment seg("dead-poison");
  ASSERT_TRUE(seg.status().is_ok());
  SubmitOptions o = attempts(10);
  o.max_crashes = 2;
  auto id = seg.client().submit("block", "", o);
  ASSERT_TRUE(id.is_ok());
  for (int crash = 1; crash <= 2; ++crash) {
    const pid_t child = fork_blocking_worker(seg.name());
    ASSERT_TRUE(running(seg.client(), *id)) << crash;
    const int status = kill_and_reap(child);
    ASSERT_TRUE(worker_exited(seg.name(), static_cast<std::uint32_t>(child), status).is_ok());
  }
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_EQ(out->crashes, 2u);
  EXPECT_EQ(out->attempts, 2u);  // 8 attempts left, not used
  EXPECT_NE(out->value.find("quarantined after 2 crashes"), std::string::npos) << out->value;
}

TEST(RetentionTest, UnreadResultIsFreedOnceItsRetentionPasses) {
  EngineConfig c = small_config();
  c.result_ttl_ns = 1'000'000'000;  // long enough that a loaded machine reaches the first check in time
  TestSegment seg("retention", c);
  ASSERT_TRUE(seg.status().is_ok());
  auto id = seg.client().submit("echo", "forgotten");
  ASSERT_TRUE(id.is_ok());
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  RecoverOptions o;
  o.audit = false;
  o.relink_free_slots = false;
  EXPECT_EQ(recover(seg.name(), o)->results_expired, 0u);  // still within its retention
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(recover(seg.name(), o)->results_expired, 1u);
  EXPECT_EQ(seg.client().wait(*id, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

// ---- drain -------------------------------------------------------------------

TEST(DrainTest, WorkersAttachedBeforeADrainReturnAndLaterOnesRun) {
  TestSegment seg("drain");
  ASSERT_TRUE(seg.status().is_ok());
  WorkerThread before(seg.worker());
  ASSERT_TRUE(drain_segment(seg.name()).is_ok());
  ASSERT_TRUE(before.join_within());
  auto after = seg.worker();
  auto id = seg.client().submit("echo", "still served");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(after->run_tasks(1).is_ok());
  EXPECT_FALSE(after->drained());
  EXPECT_EQ(seg.client().wait(*id, kHangTimeoutNs)->value, "still served");
}

TEST(DrainTest, DrainedWorkerSaysSo) {
  TestSegment seg("drain-flag");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker();
  ASSERT_TRUE(drain_segment(seg.name()).is_ok());
  ASSERT_TRUE(w->run().is_ok());  // returns at once
  EXPECT_TRUE(w->drained());
  EXPECT_EQ(drain_segment("no-such-segment-here").code(), StatusCode::kNotFound);
}

// ---- exit reasons ------------------------------------------------------------

TEST(ExitReasonTest, DescribesSignalsExitCodesAndTheUnknown) {
  EXPECT_EQ((ExitReason{ExitReason::Kind::kSignaled, SIGSEGV}).describe(), "killed by signal 11 (SIGSEGV)");
  EXPECT_EQ((ExitReason{ExitReason::Kind::kExited, 3}).describe(), "exited with code 3");
  EXPECT_EQ(ExitReason{}.describe(), "died (exit reason unknown)");
  const pid_t child = fork();
  if (child == 0) _exit(7);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_EQ(ExitReason::from_wait_status(status), (ExitReason{ExitReason::Kind::kExited, 7}));
}

}  // namespace
}  // namespace taskring::testing
