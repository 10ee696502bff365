// Work stealing: a worker that claimed a batch into its deque and is busy
// running the first task has the rest taken by an idle worker. Every task
// still completes exactly once. Controls: a worker with steal = false, and a
// worker of another queue, take nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine_test_util.h"
#include "taskring/client.h"
#include "taskring/worker.h"

namespace taskring {
namespace {

using testing::kHangTimeoutNs;
using testing::TestSegment;
using testing::wait_until;
using testing::WorkerThread;

constexpr std::uint32_t kBatch = 32;
constexpr int kTasks = 32;  // all fit in A's first claim: the ring is then empty

// Counts handler runs per task id, across worker threads.
class RunLog {
 public:
  void record(TaskId id, int worker) {
    std::lock_guard<std::mutex> lock(mu_);
    ++runs_[id.value];
    ++by_worker_[worker];
  }
  int runs(TaskId id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(id.value);
    return it == runs_.end() ? 0 : it->second;
  }
  int by_worker(int worker) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_worker_.find(worker);
    return it == by_worker_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, int> runs_;
  std::unordered_map<int, int> by_worker_;
};

// A worker whose "slow" handler records the run, sleeps for the payload's
// milliseconds and returns the task id as its result.
std::unique_ptr<Worker> slow_worker(TestSegment& seg, const WorkerOptions& o, RunLog& log, int tag) {
  auto w = seg.worker(o);
  if (!w) return w;
  EXPECT_TRUE(w->register_handler("slow", [&log, tag](TaskContext& ctx) {
                 log.record(ctx.id(), tag);
                 const int ms = std::stoi(std::string(ctx.payload()));
                 std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                 ctx.set_result(std::to_string(ctx.id().value));
               }).is_ok());
  return w;
}

std::vector<TaskId> submit_backlog(Client& c, const char* task, const char* payload, int n,
                                   std::string_view queue = {}) {
  std::vector<TaskId> ids;
  SubmitOptions o;
  o.queue = queue;
  for (int i = 0; i < n; ++i) {
    auto id = c.submit(task, payload, o);
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    if (id) ids.push_back(*id);
  }
  return ids;
}

// Starts A and waits until it has claimed the whole backlog (the ring is
// empty, A holds the rest in its deque).
bool a_took_everything(TestSegment& seg) {
  return wait_until([&] {
    const SegmentSnapshot s = seg.snapshot();
    std::uint64_t depth = 0;
    for (const QueueSnapshot& q : s.queues) {
      for (std::uint64_t d : q.depth) depth += d;
    }
    return depth == 0 && s.tasks_by_state[static_cast<int>(TaskState::kRunning)] >= 1;
  });
}

TEST(StealingTest, IdleWorkerStealsFromABusyWorkersDeque) {
  TestSegment seg("steal");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto ids = submit_backlog(seg.client(), "sleep", "20", kTasks);  // the built-in sleep
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(kTasks));
  WorkerOptions oa;
  oa.claim_batch = kBatch;
  WorkerThread a(seg.worker(oa));
  ASSERT_TRUE(a_took_everything(seg));
  WorkerThread b(seg.worker());
  for (TaskId id : ids) {
    auto out = seg.client().wait(id, kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    EXPECT_EQ(out->state, TaskState::kSucceeded);
    EXPECT_EQ(out->attempts, 1u) << "task " << to_string(id) << " was claimed more than once";
  }
  ASSERT_TRUE(a.stop_and_join());
  ASSERT_TRUE(b.stop_and_join());
  const WorkerStats& sa = a.last_stats();
  const WorkerStats& sb = b.last_stats();
  EXPECT_GT(sb.stolen, 0u) << "the idle worker stole nothing";
  EXPECT_GT(sb.succeeded, 0u) << "the idle worker ran nothing";
  EXPECT_EQ(sa.claimed + sb.claimed, static_cast<std::uint64_t>(kTasks)) << "a task was claimed twice or never";
  EXPECT_EQ(sa.succeeded + sb.succeeded, static_cast<std::uint64_t>(kTasks));
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(StealingTest, EveryStolenTaskRunsExactlyOnce) {
  TestSegment seg("steal-once");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  RunLog log;
  auto ids = submit_backlog(seg.client(), "slow", "5", kTasks);
  WorkerOptions oa;
  oa.claim_batch = kBatch;
  WorkerThread a(slow_worker(seg, oa, log, 0));
  ASSERT_TRUE(a_took_everything(seg));
  // Two thieves, who may also steal from each other.
  WorkerOptions ob;
  ob.claim_batch = 4;
  WorkerThread b(slow_worker(seg, ob, log, 1));
  WorkerThread c(slow_worker(seg, ob, log, 2));
  for (TaskId id : ids) {
    auto out = seg.client().wait(id, kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    EXPECT_EQ(out->value, std::to_string(id.value)) << "result of another task";
  }
  ASSERT_TRUE(a.stop_and_join() && b.stop_and_join() && c.stop_and_join());
  for (TaskId id : ids) EXPECT_EQ(log.runs(id), 1) << "task " << to_string(id);
  EXPECT_GT(b.last_stats().stolen + c.last_stats().stolen, 0u);
  EXPECT_EQ(log.by_worker(0) + log.by_worker(1) + log.by_worker(2), kTasks);
  EXPECT_EQ(static_cast<std::uint64_t>(log.by_worker(1)), b.last_stats().succeeded);
  EXPECT_EQ(static_cast<std::uint64_t>(log.by_worker(2)), c.last_stats().succeeded);
  EXPECT_EQ(a.last_stats().claimed + b.last_stats().claimed + c.last_stats().claimed,
            static_cast<std::uint64_t>(kTasks));
}

TEST(StealingTest, WorkerWithStealingOffTakesNothingFromADeque) {
  TestSegment seg("steal-off");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  RunLog log;
  auto ids = submit_backlog(seg.client(), "slow", "3", 16);
  WorkerOptions oa;
  oa.claim_batch = kBatch;
  WorkerThread a(slow_worker(seg, oa, log, 0));
  ASSERT_TRUE(a_took_everything(seg));
  WorkerOptions ob;
  ob.steal = false;
  WorkerThread b(slow_worker(seg, ob, log, 1));
  for (TaskId id : ids) ASSERT_TRUE(seg.client().wait(id, kHangTimeoutNs).is_ok());
  ASSERT_TRUE(a.stop_and_join() && b.stop_and_join());
  EXPECT_EQ(b.last_stats().stolen, 0u);
  EXPECT_EQ(log.by_worker(1), 0);
  EXPECT_EQ(log.by_worker(0), 16);
}

TEST(StealingTest, WorkerNeverStealsTasksOfAQueueItDoesNotServe) {
  EngineConfig cfg = testing::small_config();
  cfg.queues = {"default", "other"};
  TestSegment seg("steal-queues", cfg);
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  RunLog log;
  auto ids = submit_backlog(seg.client(), "slow", "3", 16, "default");
  WorkerOptions oa;
  oa.claim_batch = kBatch;
  oa.queues = {"default"};
  WorkerThread a(slow_worker(seg, oa, log, 0));
  ASSERT_TRUE(a_took_everything(seg));
  WorkerOptions ob;
  ob.queues = {"other"};
  WorkerThread b(slow_worker(seg, ob, log, 1));
  for (TaskId id : ids) ASSERT_TRUE(seg.client().wait(id, kHangTimeoutNs).is_ok());
  ASSERT_TRUE(a.stop_and_join() && b.stop_and_join());
  EXPECT_EQ(b.last_stats().stolen, 0u);
  EXPECT_EQ(log.by_worker(1), 0) << "a worker of queue 'other' ran a task of queue 'default'";
}

TEST(StealingTest, ManyTasksAcrossStealingWorkersCompleteExactlyOnce) {
  TestSegment seg("steal-many");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const int kN = testing::scaled(3000, 600, 1000);
  RunLog log;
  WorkerOptions o;
  o.claim_batch = 16;
  std::vector<std::unique_ptr<WorkerThread>> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<WorkerThread>(slow_worker(seg, o, log, i)));
  std::vector<TaskId> ids;
  for (int i = 0; i < kN; ++i) {
    auto id = seg.client().submit("slow", "0");
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ids.push_back(*id);
  }
  for (TaskId id : ids) {
    auto out = seg.client().wait(id, kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    ASSERT_EQ(out->value, std::to_string(id.value));
  }
  std::uint64_t claimed = 0, succeeded = 0;
  for (auto& w : workers) {
    ASSERT_TRUE(w->stop_and_join());
    claimed += w->last_stats().claimed;
    succeeded += w->last_stats().succeeded;
  }
  for (TaskId id : ids) ASSERT_EQ(log.runs(id), 1) << "task " << to_string(id);
  EXPECT_EQ(claimed, static_cast<std::uint64_t>(kN));
  EXPECT_EQ(succeeded, static_cast<std::uint64_t>(kN));
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

}  // namespace
}  // namespace taskring
