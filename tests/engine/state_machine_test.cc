// The task state machine observed through the public API: pending, running,
// succeeded, failed, cancelled, released and freed; generations; invalid
// input; detached tasks; try_get and wait on unfinished tasks.
//
// Single-threaded tests run the worker on the test thread (run_tasks); the
// ones that need a task to be running while the test acts run the worker on
// a WorkerThread and observe "running" through read_snapshot (atomic loads
// only), never by peeking from another thread.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "engine_test_util.h"
#include "layout_internal.h"
#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/status.h"
#include "taskring/worker.h"

namespace taskring {
namespace {

using testing::kHangTimeoutNs;
using testing::TestSegment;
using testing::wait_until;
using testing::WorkerThread;
using namespace std::chrono_literals;

// Options for a task that must end at its first failure.
SubmitOptions once() {
  SubmitOptions o;
  o.max_attempts = 1;
  return o;
}

class StateMachineTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(seg_.status().is_ok()) << seg_.status().to_string(); }
  Client& client() { return seg_.client(); }
  std::uint32_t slots() const { return seg_.config().slots; }
  // Waits (bounded) until exactly one task of the segment is running.
  bool one_running() {
    return wait_until([&] { return seg_.tasks_in(TaskState::kRunning) == 1; });
  }

  TestSegment seg_{"sm"};
};

// ---- invalid input (error paths first) ----------------------------------------

TEST_F(StateMachineTest, EmptyTaskNameIsInvalid) {
  auto id = client().submit("", "x");
  ASSERT_FALSE(id.is_ok());
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(id.status().message().find("task name ''"), std::string::npos) << id.status().message();
  EXPECT_NE(id.status().message().find("1 to 47"), std::string::npos) << id.status().message();
}

TEST_F(StateMachineTest, TaskNameOverTheLimitIsInvalidAndTheLimitItselfIsAccepted) {
  const std::string too_long(kMaxTaskNameLength + 1, 'n');
  auto bad = client().submit(too_long, "x");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(too_long), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("47"), std::string::npos) << bad.status().message();

  const std::string longest(kMaxTaskNameLength, 'n');
  auto ok = client().submit(longest, "x");
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  auto info = client().peek(*ok);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->task_name, longest);
}

TEST_F(StateMachineTest, PayloadOverMaxPayloadIsInvalidAndNamesBothSizes) {
  const std::uint32_t max = seg_.config().max_payload;
  auto bad = client().submit("echo", std::string(max + 1, 'p'));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = bad.status().message();
  EXPECT_NE(m.find(std::to_string(max + 1)), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(max)), std::string::npos) << m;
  EXPECT_NE(m.find("max_payload"), std::string::npos) << m;
  // Exactly max_payload is fine, and round-trips.
  auto ok = client().submit("echo", std::string(max, 'q'));
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  auto w = seg_.worker();
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = client().wait(*ok, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, std::string(max, 'q'));
}

TEST(StateMachineQueuesTest, UnknownQueueIsInvalidAndNamesTheQueues) {
  EngineConfig cfg = testing::small_config();
  cfg.queues = {"default", "bulk"};
  TestSegment seg("smq", cfg);
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  SubmitOptions o;
  o.queue = "nope";
  auto bad = seg.client().submit("echo", "x", o);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = bad.status().message();
  EXPECT_NE(m.find("'nope'"), std::string::npos) << m;
  EXPECT_NE(m.find("default"), std::string::npos) << m;
  EXPECT_NE(m.find("bulk"), std::string::npos) << m;
  // A named queue that exists works and is reported back by peek.
  o.queue = "bulk";
  auto ok = seg.client().submit("echo", "x", o);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(seg.client().peek(*ok)->queue, "bulk");
}

TEST_F(StateMachineTest, BadPriorityIsInvalid) {
  SubmitOptions o;
  o.priority = static_cast<Priority>(4);
  auto bad = client().submit("echo", "x", o);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("priority 4"), std::string::npos) << bad.status().message();
}

TEST_F(StateMachineTest, InvalidSubmitsLeaveNoTrace) {
  SubmitOptions bad_queue;
  bad_queue.queue = "nope";
  SubmitOptions bad_prio;
  bad_prio.priority = static_cast<Priority>(9);
  EXPECT_FALSE(client().submit("", "x").is_ok());
  EXPECT_FALSE(client().submit(std::string(kMaxTaskNameLength + 1, 'a'), "x").is_ok());
  EXPECT_FALSE(client().submit("echo", std::string(seg_.config().max_payload + 1, 'x')).is_ok());
  EXPECT_FALSE(client().submit("echo", "x", bad_queue).is_ok());
  EXPECT_FALSE(client().submit("echo", "x", bad_prio).is_ok());
  const SegmentSnapshot snap = seg_.snapshot();
  EXPECT_EQ(snap.free_slots, slots());
  EXPECT_EQ(snap.queues.at(0).submitted, 0u);
  EXPECT_EQ(snap.queues.at(0).depth[static_cast<int>(Priority::kNormal)], 0u);
}

TEST_F(StateMachineTest, IdsThatNeverExistedAreNotFound) {
  const TaskId never[] = {TaskId{0}, TaskId::make(0, 0), TaskId::make(slots(), 1), TaskId::make(3, 7),
                          TaskId{~std::uint64_t{0}}};
  for (TaskId id : never) {
    SCOPED_TRACE(to_string(id));
    EXPECT_EQ(client().wait(id, 0).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().try_get(id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().peek(id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().cancel(id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().release(id).code(), StatusCode::kNotFound);
  }
}

// ---- pending --------------------------------------------------------------------

TEST_F(StateMachineTest, SubmittedTaskIsPendingUntilAWorkerClaimsIt) {
  SubmitOptions o;
  o.priority = Priority::kHigh;
  auto id = client().submit("echo", "abc", o);
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_TRUE(id->valid());
  auto info = client().peek(*id);
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(info->id, *id);
  EXPECT_EQ(info->state, TaskState::kPending);
  EXPECT_EQ(info->task_name, "echo");
  EXPECT_EQ(info->queue, "default");
  EXPECT_EQ(info->priority, Priority::kHigh);
  EXPECT_EQ(info->attempts, 0u);
  EXPECT_EQ(info->owner_worker, -1);
  EXPECT_FALSE(info->cancel_requested);
  EXPECT_EQ(info->payload_bytes, 3u);
  EXPECT_GT(info->submit_ns, 0);
  EXPECT_EQ(info->start_ns, 0);
  EXPECT_EQ(info->finish_ns, 0);
  EXPECT_TRUE(info->value.empty());
  // peek does not consume, and the snapshot agrees.
  EXPECT_EQ(client().peek(*id)->state, TaskState::kPending);
  EXPECT_EQ(seg_.tasks_in(TaskState::kPending), 1u);
  EXPECT_EQ(seg_.snapshot().queues.at(0).depth[static_cast<int>(Priority::kHigh)], 1u);
}

TEST_F(StateMachineTest, TryGetOnUnfinishedTaskReturnsNulloptAndLeavesIt) {
  auto id = client().submit("echo", "later");
  ASSERT_TRUE(id.is_ok());
  for (int i = 0; i < 3; ++i) {
    auto r = client().try_get(*id);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_FALSE(r->has_value());
  }
  EXPECT_EQ(client().peek(*id)->state, TaskState::kPending);
  auto w = seg_.worker();
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto r = client().try_get(*id);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->value, "later");
  EXPECT_EQ((*r)->state, TaskState::kSucceeded);
  // Consumed: read once.
  EXPECT_EQ(client().try_get(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(seg_.free_slots(), slots());
}

TEST_F(StateMachineTest, WaitTimeoutIsDeadlineExceededAndLeavesTheTaskUntouched) {
  auto id = client().submit("echo", "patience");
  ASSERT_TRUE(id.is_ok());
  auto r0 = client().wait(*id, 0);
  EXPECT_EQ(r0.status().code(), StatusCode::kDeadlineExceeded);
  auto r = client().wait(*id, 20'000'000);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(r.status().message().find(to_string(*id)), std::string::npos) << r.status().message();
  auto info = client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kPending);
  EXPECT_EQ(info->attempts, 0u);
  EXPECT_FALSE(info->cancel_requested);
  auto w = seg_.worker();
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, "patience");
}

// ---- running --------------------------------------------------------------------

TEST_F(StateMachineTest, TaskIsRunningWhileItsHandlerRuns) {
  auto w = seg_.worker({}, false);
  std::optional<Result<TaskInfo>> seen;
  TaskId ctx_id;
  std::uint32_t ctx_attempt = 0;
  std::string ctx_payload, ctx_name;
  Priority ctx_priority = Priority::kNormal;
  ASSERT_TRUE(w->register_handler("observe", [&](TaskContext& ctx) {
                 seen.emplace(client().peek(ctx.id()));
                 ctx_id = ctx.id();
                 ctx_attempt = ctx.attempt();
                 ctx_payload = std::string(ctx.payload());
                 ctx_name = std::string(ctx.task_name());
                 ctx_priority = ctx.priority();
                 ctx.set_result("seen");
               }).is_ok());
  SubmitOptions o;
  o.priority = Priority::kLow;
  auto id = client().submit("observe", "pl", o);
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  ASSERT_TRUE(seen.has_value());
  ASSERT_TRUE(seen->is_ok()) << seen->status().to_string();
  const TaskInfo& info = seen->value();
  EXPECT_EQ(info.state, TaskState::kRunning);
  EXPECT_EQ(info.owner_worker, w->index());
  EXPECT_EQ(info.attempts, 1u);
  EXPECT_GT(info.start_ns, 0);
  EXPECT_GE(info.start_ns, info.submit_ns);
  EXPECT_EQ(info.finish_ns, 0);
  EXPECT_FALSE(info.cancel_requested);
  EXPECT_EQ(ctx_id, *id);
  EXPECT_EQ(ctx_attempt, 1u);
  EXPECT_EQ(ctx_payload, "pl");
  EXPECT_EQ(ctx_name, "observe");
  EXPECT_EQ(ctx_priority, Priority::kLow);
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->value, "seen");
}

// ---- succeeded / failed ------------------------------------------------------------

TEST_F(StateMachineTest, SucceededTaskKeepsItsResultUntilReadOnce) {
  auto w = seg_.worker();
  auto id = client().submit("echo", "result-bytes");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  // Peek sees the terminal state without consuming it.
  auto info = client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kSucceeded);
  EXPECT_EQ(info->value, "result-bytes");
  EXPECT_EQ(info->owner_worker, -1);
  EXPECT_EQ(seg_.tasks_in(TaskState::kSucceeded), 1u);
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_TRUE(out->ok());
  EXPECT_EQ(out->id, *id);
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "result-bytes");
  EXPECT_EQ(out->attempts, 1u);
  EXPECT_GT(out->submit_ns, 0);
  EXPECT_LE(out->submit_ns, out->start_ns);
  EXPECT_LE(out->start_ns, out->finish_ns);
  // Read once: every later access is "not found" and the slot is free.
  EXPECT_EQ(client().wait(*id, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client().peek(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(seg_.free_slots(), slots());
  EXPECT_EQ(w->stats().succeeded, 1u);
  EXPECT_EQ(w->stats().claimed, 1u);
}

TEST_F(StateMachineTest, BuiltinFailEndsFailedWithItsMessage) {
  auto w = seg_.worker();
  auto id = client().submit("fail", "disk on fire");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_FALSE(out->ok());
  EXPECT_EQ(out->value, "disk on fire");
  EXPECT_EQ(w->stats().failed, 1u);
  EXPECT_EQ(w->stats().succeeded, 0u);
}

TEST_F(StateMachineTest, ThrowingHandlerEndsFailedWithTheExceptionMessage) {
  auto w = seg_.worker({}, false);
  ASSERT_TRUE(w->register_handler("throws", [](TaskContext& ctx) {
                 ctx.set_result("partial");  // replaced by the error
                 throw std::runtime_error("kaput: bad input");
               }).is_ok());
  ASSERT_TRUE(w->register_handler("throws_int", [](TaskContext&) { throw 42; }).is_ok());
  auto a = client().submit("throws", "", once());
  auto b = client().submit("throws_int", "", once());
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  ASSERT_TRUE(w->run_tasks(2).is_ok());
  auto oa = client().wait(*a, kHangTimeoutNs);
  auto ob = client().wait(*b, kHangTimeoutNs);
  ASSERT_TRUE(oa.is_ok() && ob.is_ok());
  EXPECT_EQ(oa->state, TaskState::kFailed);
  EXPECT_EQ(oa->value, "kaput: bad input");
  EXPECT_EQ(ob->state, TaskState::kFailed);
  EXPECT_NE(ob->value.find("non-std::exception"), std::string::npos) << ob->value;
  EXPECT_EQ(w->stats().failed, 2u);
}

TEST_F(StateMachineTest, UnknownTaskNameFailsWithAMessageNamingTheTask) {
  auto w = seg_.worker();
  auto id = client().submit("no_such_task_here", "x", once());
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_NE(out->value.find("'no_such_task_here'"), std::string::npos) << out->value;
}

TEST_F(StateMachineTest, ResultOverMaxPayloadFailsTheTaskNamingTheSizes) {
  const std::uint32_t max = seg_.config().max_payload;
  auto w = seg_.worker({}, false);
  ASSERT_TRUE(w->register_handler("huge", [max](TaskContext& ctx) {
                 ctx.set_result(std::string(max + 1, 'r'));
               }).is_ok());
  auto id = client().submit("huge", "", once());
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_NE(out->value.find(std::to_string(max + 1)), std::string::npos) << out->value;
  EXPECT_NE(out->value.find(std::to_string(max)), std::string::npos) << out->value;
}

// ---- cancelled --------------------------------------------------------------------

TEST_F(StateMachineTest, CancelledPendingTaskNeverRuns) {
  int runs = 0;
  auto w = seg_.worker();
  ASSERT_TRUE(w->register_handler("count", [&](TaskContext&) { ++runs; }).is_ok());
  auto id = client().submit("count", "");
  ASSERT_TRUE(id.is_ok());
  auto c = client().cancel(*id);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(*c, CancelOutcome::kCancelled);
  EXPECT_EQ(client().peek(*id)->state, TaskState::kCancelled);
  EXPECT_EQ(*client().cancel(*id), CancelOutcome::kAlreadyFinished);
  // The worker pops the cancelled task (FIFO, same ring) before this one and
  // must skip it: one handler call, for the second task only.
  auto after = client().submit("echo", "after");
  ASSERT_TRUE(after.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(client().wait(*after, kHangTimeoutNs)->value, "after");
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kCancelled);
  EXPECT_EQ(out->attempts, 0u);
  EXPECT_EQ(out->start_ns, 0);
  EXPECT_GE(out->finish_ns, out->submit_ns);
  const SegmentSnapshot snap = seg_.snapshot();
  EXPECT_EQ(snap.queues.at(0).cancelled, 1u);
  EXPECT_EQ(snap.queues.at(0).claimed, 1u);
  EXPECT_EQ(snap.free_slots, slots());
  EXPECT_EQ(w->stats().claimed, 1u);
}

TEST_F(StateMachineTest, CancelledTaskReadBeforeAWorkerPopsItIsFreedByThePop) {
  auto id = client().submit("echo", "never");
  ASSERT_TRUE(id.is_ok());
  ASSERT_EQ(*client().cancel(*id), CancelOutcome::kCancelled);
  // Read while a ring still names the slot: the result is handed over now,
  // the slot is freed when a worker pops the index.
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kCancelled);
  EXPECT_EQ(client().wait(*id, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(seg_.free_slots(), slots() - 1);
  auto w = seg_.worker();
  auto next = client().submit("echo", "next");
  ASSERT_TRUE(next.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  ASSERT_TRUE(client().wait(*next, kHangTimeoutNs).is_ok());
  EXPECT_EQ(seg_.free_slots(), slots());
}

TEST_F(StateMachineTest, CancelOfRunningSleepRequestsAndEndsItCancelled) {
  auto id = client().submit("sleep", "60000");  // a minute unless cancelled
  ASSERT_TRUE(id.is_ok());
  WorkerThread wt(seg_.worker(), 1);
  ASSERT_TRUE(one_running());
  auto c = client().cancel(*id);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(*c, CancelOutcome::kRequested);
  // Asking again while it is still running (or just finished) is harmless.
  auto c2 = client().cancel(*id);
  ASSERT_TRUE(c2.is_ok());
  EXPECT_TRUE(*c2 == CancelOutcome::kRequested || *c2 == CancelOutcome::kAlreadyFinished);
  auto out = client().wait(*id, kHangTimeoutNs);  // far less than the minute
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kCancelled);
  EXPECT_EQ(out->attempts, 1u);
  EXPECT_GT(out->start_ns, 0);
  ASSERT_TRUE(wt.join_within());
  EXPECT_EQ(wt.last_stats().cancelled, 1u);
  EXPECT_EQ(wt.last_stats().succeeded, 0u);
  EXPECT_EQ(seg_.free_slots(), slots());
}

TEST_F(StateMachineTest, HandlerSeesTheCancelRequestAndPeekReportsIt) {
  auto w = seg_.worker({}, false);
  std::optional<Result<TaskInfo>> seen;
  // The handler runs on the worker's thread and peeks through a client of
  // its own. Each attach maps the segment at its own address, and TSan
  // tracks synchronisation per address: had the handler read the slot
  // through the test's client, whose mapping the test thread later frees
  // the slot through, TSan would not see the worker's completion (made
  // through the worker's mapping) order the two, and would report a race.
  auto observer = Client::attach(seg_.name());
  ASSERT_TRUE(observer.is_ok()) << observer.status().to_string();
  ASSERT_TRUE(w->register_handler("until_cancelled", [&](TaskContext& ctx) {
                 // Bounded, so a lost cancel fails the test instead of hanging it.
                 const auto deadline = std::chrono::steady_clock::now() + testing::kHangTimeout;
                 while (!ctx.cancel_requested() && std::chrono::steady_clock::now() < deadline) {
                   std::this_thread::sleep_for(1ms);
                 }
                 seen.emplace(observer->peek(ctx.id()));
               }).is_ok());
  auto id = client().submit("until_cancelled", "");
  ASSERT_TRUE(id.is_ok());
  WorkerThread wt(std::move(w), 1);
  ASSERT_TRUE(one_running());
  EXPECT_EQ(*client().cancel(*id), CancelOutcome::kRequested);
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kCancelled);
  ASSERT_TRUE(wt.join_within());
  ASSERT_TRUE(seen.has_value());
  ASSERT_TRUE(seen->is_ok());
  EXPECT_TRUE((*seen)->cancel_requested);
  EXPECT_EQ((*seen)->state, TaskState::kRunning);
}

TEST_F(StateMachineTest, HandlerThatSetsAResultDespiteACancelRequestSucceeds) {
  auto w = seg_.worker({}, false);
  ASSERT_TRUE(w->register_handler("stubborn", [&](TaskContext& ctx) {
                 const auto deadline = std::chrono::steady_clock::now() + testing::kHangTimeout;
                 while (!ctx.cancel_requested() && std::chrono::steady_clock::now() < deadline) {
                   std::this_thread::sleep_for(1ms);
                 }
                 ctx.set_result("finished anyway");
               }).is_ok());
  auto id = client().submit("stubborn", "");
  ASSERT_TRUE(id.is_ok());
  WorkerThread wt(std::move(w), 1);
  ASSERT_TRUE(one_running());
  EXPECT_EQ(*client().cancel(*id), CancelOutcome::kRequested);
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "finished anyway");
  ASSERT_TRUE(wt.join_within());
}

TEST_F(StateMachineTest, CancelOfFinishedUnreadTaskSaysAlreadyFinishedAndKeepsTheResult) {
  auto w = seg_.worker();
  auto id = client().submit("echo", "kept");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  EXPECT_EQ(*client().cancel(*id), CancelOutcome::kAlreadyFinished);
  auto out = client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "kept");
  EXPECT_EQ(client().cancel(*id).status().code(), StatusCode::kNotFound);
}

// ---- release -----------------------------------------------------------------------

TEST_F(StateMachineTest, ReleaseBeforeCompletionFreesTheSlotWhenTheTaskEnds) {
  auto w = seg_.worker();
  auto id = client().submit("echo", "unwanted");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(client().release(*id).is_ok());
  EXPECT_EQ(client().release(*id).code(), StatusCode::kNotFound);
  EXPECT_EQ(client().wait(*id, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client().try_get(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(seg_.free_slots(), slots() - 1);  // still pending, still queued
  ASSERT_TRUE(w->run_tasks(1).is_ok());        // it still runs
  EXPECT_EQ(w->stats().succeeded, 1u);
  EXPECT_EQ(seg_.free_slots(), slots());
  EXPECT_EQ(client().peek(*id).status().code(), StatusCode::kNotFound);
}

TEST_F(StateMachineTest, ReleaseAfterCompletionFreesTheSlotAtOnce) {
  auto w = seg_.worker();
  auto id = client().submit("echo", "done");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  EXPECT_EQ(seg_.free_slots(), slots() - 1);
  ASSERT_TRUE(client().release(*id).is_ok());
  EXPECT_EQ(seg_.free_slots(), slots());
  EXPECT_EQ(client().peek(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client().wait(*id, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client().release(*id).code(), StatusCode::kNotFound);
}

TEST_F(StateMachineTest, ReleaseWhileRunningFreesTheSlotWhenTheTaskEnds) {
  auto id = client().submit("sleep", "200");
  ASSERT_TRUE(id.is_ok());
  WorkerThread wt(seg_.worker(), 1);
  ASSERT_TRUE(one_running());
  ASSERT_TRUE(client().release(*id).is_ok());
  EXPECT_EQ(client().wait(*id, 0).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(wt.join_within()) << "the worker did not finish a released task";
  EXPECT_EQ(wt.last_stats().succeeded, 1u);
  EXPECT_EQ(seg_.free_slots(), slots());
}

TEST_F(StateMachineTest, ReleasedTaskCancelledWhileRunningEndsAndFreesItsSlot) {
  // Released first, cancelled second: the order in which the flags reach the
  // state word after the claim. Must end like any cancelled running task.
  auto id = client().submit("sleep", "60000");
  ASSERT_TRUE(id.is_ok());
  WorkerThread wt(seg_.worker(), 1);
  ASSERT_TRUE(one_running());
  ASSERT_TRUE(client().release(*id).is_ok());
  EXPECT_EQ(*client().cancel(*id), CancelOutcome::kRequested);
  ASSERT_TRUE(wt.join_within()) << "the worker never finished a released, cancelled task";
  EXPECT_EQ(wt.last_stats().cancelled, 1u);
  EXPECT_EQ(seg_.free_slots(), slots());
}

TEST_F(StateMachineTest, TaskReleasedWhilePendingThenCancelledWhileRunningEndsAndFreesItsSlot) {
  // The release reaches the word before the claim, so the claim word already
  // carries "released"; the cancel request changes the word afterwards.
  // complete() must not keep retrying with the claim-time word.
  auto id = client().submit("sleep", "60000");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(client().release(*id).is_ok());
  WorkerThread wt(seg_.worker(), 1);
  ASSERT_TRUE(one_running());
  EXPECT_EQ(*client().cancel(*id), CancelOutcome::kRequested);
  ASSERT_TRUE(wt.join_within())
      << "the worker never finished a task released before its claim and cancelled while running";
  EXPECT_EQ(wt.last_stats().cancelled, 1u);
  EXPECT_EQ(seg_.free_slots(), slots());
}

// ---- detached ---------------------------------------------------------------------

TEST_F(StateMachineTest, DetachedTaskRunsAndIsFreedOnCompletion) {
  auto w = seg_.worker();
  SubmitOptions o;
  o.detached = true;
  auto ok = client().submit("echo", "fire", o);
  auto bad = client().submit("fail", "and forget", o);
  ASSERT_TRUE(ok.is_ok() && bad.is_ok());
  for (TaskId id : {*ok, *bad}) {
    EXPECT_EQ(client().wait(id, 0).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().try_get(id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().release(id).code(), StatusCode::kNotFound);
  }
  EXPECT_EQ(seg_.free_slots(), slots() - 2);
  ASSERT_TRUE(w->run_tasks(2).is_ok());
  EXPECT_EQ(w->stats().succeeded, 1u);
  EXPECT_EQ(w->stats().failed, 1u);
  // The success is freed at once; the failure stays as a dead letter.
  EXPECT_EQ(seg_.free_slots(), slots() - 1);
  EXPECT_EQ(client().peek(*ok).status().code(), StatusCode::kNotFound);
  auto dead = client().dead_letters();
  ASSERT_TRUE(dead.is_ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].id, *bad);
  EXPECT_EQ((*dead)[0].value, "and forget");
  ASSERT_TRUE(client().release(*bad).is_ok());  // purge
  EXPECT_EQ(seg_.free_slots(), slots());
}

TEST_F(StateMachineTest, DetachedPendingTaskCancelledIsFreedWhenPopped) {
  SubmitOptions o;
  o.detached = true;
  auto id = client().submit("echo", "x", o);
  ASSERT_TRUE(id.is_ok());
  EXPECT_EQ(*client().cancel(*id), CancelOutcome::kCancelled);
  auto w = seg_.worker();
  auto next = client().submit("echo", "y");
  ASSERT_TRUE(next.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  ASSERT_TRUE(client().wait(*next, kHangTimeoutNs).is_ok());
  EXPECT_EQ(w->stats().succeeded, 1u);
  EXPECT_EQ(seg_.free_slots(), slots());
}

TEST_F(StateMachineTest, DetachedRunningTaskCancelledEndsAndFreesItsSlot) {
  SubmitOptions o;
  o.detached = true;
  auto id = client().submit("sleep", "60000", o);
  ASSERT_TRUE(id.is_ok());
  WorkerThread wt(seg_.worker(), 1);
  ASSERT_TRUE(one_running());
  auto c = client().cancel(*id);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(*c, CancelOutcome::kRequested);
  ASSERT_TRUE(wt.join_within()) << "the worker never finished a detached task cancelled while running";
  EXPECT_EQ(wt.last_stats().cancelled, 1u);
  EXPECT_EQ(seg_.free_slots(), slots());
}

// ---- generations --------------------------------------------------------------------

TEST_F(StateMachineTest, OldIdOfAReusedSlotIsNotFoundAndNeverSeesTheNewTask) {
  auto w = seg_.worker();
  auto old_id = client().submit("echo", "first");
  ASSERT_TRUE(old_id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  ASSERT_EQ(client().wait(*old_id, kHangTimeoutNs)->value, "first");
  // The free-slot stack is LIFO: the next task reuses the slot.
  auto new_id = client().submit("echo", "second");
  ASSERT_TRUE(new_id.is_ok());
  ASSERT_EQ(new_id->slot(), old_id->slot()) << "expected the freed slot to be reused";
  EXPECT_NE(new_id->generation(), old_id->generation());
  EXPECT_NE(*new_id, *old_id);
  const auto all_not_found = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(client().peek(*old_id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().try_get(*old_id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().wait(*old_id, 1'000'000).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().cancel(*old_id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(client().release(*old_id).code(), StatusCode::kNotFound);
  };
  all_not_found("new task pending");
  EXPECT_EQ(client().peek(*new_id)->state, TaskState::kPending);  // the cancel above did not touch it
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  all_not_found("new task finished");
  auto out = client().wait(*new_id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, "second");
  EXPECT_EQ(out->id, *new_id);
}

TEST_F(StateMachineTest, GenerationsAdvanceOnEveryReuseOfASlot) {
  auto w = seg_.worker();
  TaskId prev{};
  for (int i = 0; i < 20; ++i) {
    auto id = client().submit("echo", std::to_string(i));
    ASSERT_TRUE(id.is_ok());
    ASSERT_TRUE(w->run_tasks(1).is_ok());
    if (i > 0) {
      ASSERT_EQ(id->slot(), prev.slot());
      EXPECT_GT(id->generation(), prev.generation());
      EXPECT_EQ(client().wait(prev, 0).status().code(), StatusCode::kNotFound);
    }
    ASSERT_EQ(client().wait(*id, kHangTimeoutNs)->value, std::to_string(i));
    prev = *id;
  }
}

}  // namespace
}  // namespace taskring
