// Delayed tasks and retry backoff: a delayed task waits in the segment's
// timer ring and never starts before its time; due tasks leave in due
// order; a parked worker wakes for one; cancelling one frees it; a failed
// attempt waits out its backoff before the retry.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "engine_test_util.h"

namespace taskring::testing {
namespace {

constexpr std::int64_t kMs = 1'000'000;

SubmitOptions after(std::int64_t delay_ns) {
  SubmitOptions o;
  o.delay_ns = delay_ns;
  return o;
}

TEST(DelayTest, DelayedTaskDoesNotStartBeforeItsTime) {
  TestSegment seg("delay-one");
  ASSERT_TRUE(seg.status().is_ok());
  WorkerThread t(seg.worker());
  auto id = seg.client().submit("echo", "later", after(50 * kMs));
  ASSERT_TRUE(id.is_ok());
  auto info = seg.client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kPending);
  EXPECT_EQ(info->run_at_ns, info->submit_ns + 50 * kMs);
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, "later");
  EXPECT_GE(out->start_ns - out->submit_ns, 50 * kMs);
}

TEST(DelayTest, RunAtInThePastRunsAtOnce) {
  TestSegment seg("delay-past");
  ASSERT_TRUE(seg.status().is_ok());
  SubmitOptions o;
  o.run_at_ns = 1;  // long gone
  auto id = seg.client().submit("echo", "now", o);
  ASSERT_TRUE(id.is_ok());
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  EXPECT_EQ(seg.client().wait(*id, kHangTimeoutNs)->value, "now");
}

TEST(DelayTest, DueTasksStartInDueOrder) {
  TestSegment seg("delay-order");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  std::mutex mu;
  std::vector<std::string> order;
  ASSERT_TRUE(w->register_handler("log", [&](TaskContext& ctx) {
                 std::lock_guard<std::mutex> lock(mu);
                 order.emplace_back(ctx.payload());
               }).is_ok());
  std::vector<TaskId> ids;
  for (auto [name, delay] : {std::pair{"c", 90}, std::pair{"a", 30}, std::pair{"b", 60}}) {
    auto id = seg.client().submit("log", name, after(delay * kMs));
    ASSERT_TRUE(id.is_ok());
    ids.push_back(*id);
  }
  WorkerThread t(std::move(w));
  for (TaskId id : ids) ASSERT_TRUE(seg.client().wait(id, kHangTimeoutNs).is_ok());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(DelayTest, ParkedWorkerWakesForADelayedTask) {
  TestSegment seg("delay-wake");
  ASSERT_TRUE(seg.status().is_ok());
  WorkerOptions o;
  o.park_timeout_ns = 3'600'000'000'000;  // an hour: only the timer can wake it in time
  WorkerThread t(seg.worker(o));
  ASSERT_TRUE(wait_until([&] {
    auto snap = seg.snapshot();
    return !snap.workers.empty() && snap.workers[0].state == WorkerState::kParked;
  }));
  auto id = seg.client().submit("echo", "wake", after(20 * kMs));
  ASSERT_TRUE(id.is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, "wake");
}

TEST(DelayTest, CancelledDelayedTaskNeverRunsAndItsSlotIsFreed) {
  TestSegment seg("delay-cancel");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  int ran = 0;
  ASSERT_TRUE(w->register_handler("count", [&](TaskContext&) { ++ran; }).is_ok());
  auto id = seg.client().submit("count", "", after(20 * kMs));
  ASSERT_TRUE(id.is_ok());
  ASSERT_EQ(*seg.client().cancel(*id), CancelOutcome::kCancelled);
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kCancelled);
  // A later task runs once the timer has passed; the cancelled one's name
  // is dropped on the way.
  auto probe = seg.client().submit("count", "", after(40 * kMs));
  ASSERT_TRUE(probe.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  EXPECT_TRUE(seg.client().wait(*probe, kHangTimeoutNs).is_ok());
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(DelayTest, BadDelaysAreRejectedNamingTheField) {
  TestSegment seg("delay-bad");
  ASSERT_TRUE(seg.status().is_ok());
  auto negative = seg.client().submit("noop", "", after(-1));
  ASSERT_EQ(negative.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(negative.status().message().find("delay_ns -1"), std::string::npos) << negative.status().message();
  SubmitOptions both;
  both.delay_ns = kMs;
  both.run_at_ns = 5 * kMs;
  auto two = seg.client().submit("noop", "", both);
  ASSERT_EQ(two.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(two.status().message().find("at most one"), std::string::npos) << two.status().message();
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(DelayTest, BatchOfDelayedTasksWaitsAndRuns) {
  TestSegment seg("delay-batch");
  ASSERT_TRUE(seg.status().is_ok());
  std::vector<TaskSpec> specs(100, TaskSpec{"echo", "b"});
  std::vector<TaskId> ids(specs.size());
  auto n = seg.client().submit_batch(specs, ids, after(30 * kMs));
  ASSERT_TRUE(n.is_ok());
  ASSERT_EQ(*n, specs.size());
  WorkerThread t(seg.worker());
  for (TaskId id : ids) {
    auto out = seg.client().wait(id, kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok());
    EXPECT_GE(out->start_ns - out->submit_ns, 30 * kMs);
  }
}

TEST(RetryBackoffTest, RetriesWaitAtLeastHalfTheirDoublingBackoff) {
  TestSegment seg("retry-backoff");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  std::vector<std::int64_t> starts;
  HandlerOptions h;
  h.max_attempts = 3;
  h.retry_backoff_ns = 20 * kMs;
  h.retry_backoff_max_ns = 1000 * kMs;
  ASSERT_TRUE(w->register_handler("flaky", [&](TaskContext& ctx) {
                 starts.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::steady_clock::now().time_since_epoch())
                                      .count());
                 if (ctx.attempt() < 3) ctx.fail("not yet");
               }, h).is_ok());
  auto id = seg.client().submit("flaky", "");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(3).is_ok());
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  ASSERT_EQ(starts.size(), 3u);
  // Backoff after failure 1: in [10, 20] ms; after failure 2: in [20, 40] ms.
  EXPECT_GE(starts[1] - starts[0], 10 * kMs);
  EXPECT_GE(starts[2] - starts[1], 20 * kMs);
}

TEST(RetryBackoffTest, TaskWaitingToRetryShowsItsLastErrorAndWhenItRuns) {
  TestSegment seg("retry-peek");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  HandlerOptions h;
  h.retry_backoff_ns = 60'000'000'000;  // a minute: it is still waiting when we look
  h.retry_backoff_max_ns = h.retry_backoff_ns;
  ASSERT_TRUE(w->register_handler("flaky", [](TaskContext& ctx) { ctx.fail("first try failed"); }, h).is_ok());
  auto id = seg.client().submit("flaky", "");
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto info = seg.client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kPending);
  EXPECT_EQ(info->attempts, 1u);
  EXPECT_EQ(info->max_attempts, kDefaultMaxAttempts);
  EXPECT_EQ(info->last_error, "first try failed");
  EXPECT_GE(info->run_at_ns - info->start_ns, 30'000'000'000);  // the upper half of a minute
  ASSERT_EQ(*seg.client().cancel(*id), CancelOutcome::kCancelled);
}

TEST(RetryBackoffTest, NegativeBackoffIsRejected) {
  TestSegment seg("retry-backoff-bad");
  ASSERT_TRUE(seg.status().is_ok());
  auto w = seg.worker({}, false);
  HandlerOptions h;
  h.retry_backoff_ns = -1;
  const Status s = w->register_handler("x", [](TaskContext&) {}, h);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("retry_backoff_ns -1"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace taskring::testing
