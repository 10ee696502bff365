// Task progress (TaskContext::set_progress seen by Client::peek) and
// completion listeners (listen_completions / wait_completions): one thread
// waiting for many tasks at once, as the Python bindings' completion thread
// does.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "taskring/client.h"
#include "taskring/worker.h"

namespace taskring {
namespace {

using testing::kHangTimeoutNs;
using testing::TestSegment;
using testing::wait_until;

std::unique_ptr<Worker> attach_worker(const std::string& segment) {
  auto w = Worker::attach(segment);
  EXPECT_TRUE(w.is_ok()) << w.status().to_string();
  return w.is_ok() ? std::move(w).value() : nullptr;
}

TEST(ProgressTest, PeekSeesTheHandlersLatestProgressAndKeepsItOnceFinished) {
  TestSegment seg("progress");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto worker = attach_worker(seg.name());
  ASSERT_NE(worker, nullptr);
  std::atomic<int> step{0};
  ASSERT_TRUE(worker
                  ->register_handler("steps",
                                     [&](TaskContext& ctx) {
                                       ctx.set_progress(3, 10);
                                       step.store(1);
                                       while (step.load() != 2) std::this_thread::yield();
                                       ctx.set_progress(10, 10);
                                     })
                  .is_ok());
  std::thread t([&] { ASSERT_TRUE(worker->run_tasks(1).is_ok()); });
  auto id = seg.client().submit("steps", "");
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  ASSERT_TRUE(wait_until([&] { return step.load() == 1; }));
  auto running = seg.client().peek(*id);
  ASSERT_TRUE(running.is_ok());
  EXPECT_EQ(running->state, TaskState::kRunning);
  EXPECT_EQ(running->progress_done, 3u);
  EXPECT_EQ(running->progress_total, 10u);
  step.store(2);
  t.join();
  auto done = seg.client().peek(*id);
  ASSERT_TRUE(done.is_ok());
  EXPECT_EQ(done->state, TaskState::kSucceeded);
  EXPECT_EQ(done->progress_done, 10u);
  EXPECT_EQ(done->progress_total, 10u);
}

TEST(ProgressTest, ARetryStartsAgainFromNoProgress) {
  TestSegment seg("progress-retry");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto worker = attach_worker(seg.name());
  ASSERT_NE(worker, nullptr);
  HandlerOptions no_backoff;
  no_backoff.retry_backoff_ns = 0;
  no_backoff.retry_backoff_max_ns = 0;
  ASSERT_TRUE(worker
                  ->register_handler("flaky",
                                     [](TaskContext& ctx) {
                                       if (ctx.attempt() == 1) {
                                         ctx.set_progress(5, 6);
                                         ctx.fail("first attempt fails");
                                       }
                                     },
                                     no_backoff)
                  .is_ok());
  std::thread t([&] { ASSERT_TRUE(worker->run_tasks(2).is_ok()); });
  SubmitOptions two;
  two.max_attempts = 2;
  auto id = seg.client().submit("flaky", "", two);
  ASSERT_TRUE(id.is_ok());
  t.join();
  // The second attempt reported nothing: the first attempt's 5 of 6 is gone.
  auto info = seg.client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kSucceeded);
  EXPECT_EQ(info->attempts, 2u);
  EXPECT_EQ(info->progress_done, 0u);
  EXPECT_EQ(info->progress_total, 0u);
}

TEST(CompletionListenerTest, WaitTimesOutWhenNothingFinishes) {
  TestSegment seg("listen-idle");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const std::uint32_t seq = seg.client().listen_completions();
  EXPECT_FALSE(seg.client().wait_completions(seq, 20'000'000));
  seg.client().unlisten_completions();
}

TEST(CompletionListenerTest, AWorkerFinishingATaskWakesAParkedListener) {
  TestSegment seg("listen-wake");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto worker = attach_worker(seg.name());
  ASSERT_NE(worker, nullptr);
  worker->register_builtins();
  const std::uint32_t seq = seg.client().listen_completions();
  auto id = seg.client().submit("noop", "");
  ASSERT_TRUE(id.is_ok());
  std::thread t([&] { ASSERT_TRUE(worker->run_tasks(1).is_ok()); });
  // Parks in 100 ms slices until the worker's notify bumps the sequence.
  const auto deadline = std::chrono::steady_clock::now() + testing::kHangTimeout;
  bool woken = false;
  while (!woken && std::chrono::steady_clock::now() < deadline) {
    woken = seg.client().wait_completions(seq, 100'000'000);
  }
  seg.client().unlisten_completions();
  t.join();
  EXPECT_TRUE(woken);
  auto info = seg.client().peek(*id);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->state, TaskState::kSucceeded);
}

// One listener thread collects many tasks run by two workers, with the
// listen, check, wait, unlisten protocol; every task is seen exactly once.
TEST(CompletionListenerTest, OneListenerCollectsEveryTaskOfTwoWorkers) {
  TestSegment seg("listen-many");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const int n = testing::scaled(2000, 300, 500);
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(attach_worker(seg.name()));
    ASSERT_NE(workers.back(), nullptr);
    workers.back()->register_builtins();
  }
  for (auto& w : workers) threads.emplace_back([&w] { ASSERT_TRUE(w->run().is_ok()); });
  std::vector<TaskId> ids;
  for (int i = 0; i < n; ++i) {
    auto id = seg.client().submit("echo", std::to_string(i));
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ids.push_back(*id);
  }
  std::set<std::string> results;
  std::vector<TaskId> pending = ids;
  const auto deadline = std::chrono::steady_clock::now() + testing::kHangTimeout;
  while (!pending.empty() && std::chrono::steady_clock::now() < deadline) {
    const std::uint32_t seq = seg.client().listen_completions();
    std::vector<TaskId> still;
    for (TaskId id : pending) {
      auto r = seg.client().try_get(id);
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      if (r->has_value()) {
        EXPECT_TRUE(results.insert((*r)->value).second) << "result seen twice: " << (*r)->value;
      } else {
        still.push_back(id);
      }
    }
    if (still.size() == pending.size()) seg.client().wait_completions(seq, 100'000'000);
    seg.client().unlisten_completions();
    pending.swap(still);
  }
  for (auto& w : workers) w->stop();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(pending.empty()) << pending.size() << " tasks never seen";
  EXPECT_EQ(results.size(), static_cast<std::size_t>(n));
}

}  // namespace
}  // namespace taskring
