// Client and Worker in one process (threads over one mapping, so TSan sees
// every access): submit, run, wait, results, errors, detached tasks.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <deque>
#include <thread>
#include <vector>

#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/status.h"
#include "taskring/worker.h"
#include "test_support.h"

namespace taskring {
namespace {

using testing::SegmentGuard;
using testing::small_config;
using testing::unique_segment;

class ClientWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(create_segment(guard_.name(), small_config()).is_ok());
    auto c = Client::attach(guard_.name());
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    client_.emplace(std::move(c).value());
  }
  std::unique_ptr<Worker> make_worker(WorkerOptions o = {}) {
    auto w = Worker::attach(guard_.name(), o);
    EXPECT_TRUE(w.is_ok()) << w.status().to_string();
    (*w)->register_builtins();
    return std::move(w).value();
  }

  SegmentGuard guard_{unique_segment("cw")};
  std::optional<Client> client_;
};

TEST_F(ClientWorkerTest, EchoRoundTripReturnsPayload) {
  auto worker = make_worker();
  auto id = client_->submit("echo", "hello");
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  ASSERT_TRUE(worker->run_tasks(1).is_ok());
  auto out = client_->wait(*id, 1'000'000'000);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "hello");
  EXPECT_EQ(out->attempts, 1u);
  // A result is read once.
  EXPECT_EQ(client_->wait(*id, 0).status().code(), StatusCode::kNotFound);
}

TEST_F(ClientWorkerTest, LargePayloadGoesThroughArena) {
  auto worker = make_worker();
  std::string big(10000, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  auto id = client_->submit("echo", big);
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(worker->run_tasks(1).is_ok());
  auto out = client_->wait(*id);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->value, big);
}

TEST_F(ClientWorkerTest, ThreadsMoveManyTasksExactlyOnce) {
  constexpr int kProducers = 2, kPerProducer = 5000;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 2; ++i) workers.push_back(make_worker());
  std::vector<std::thread> wt;
  for (auto& w : workers) wt.emplace_back([&w] { EXPECT_TRUE(w->run().is_ok()); });
  std::vector<std::thread> pt;
  std::atomic<int> ok{0};
  for (int p = 0; p < kProducers; ++p) {
    pt.emplace_back([&, p] {
      // A window of in-flight tasks: unread results hold slots, so a
      // producer that never reads would (correctly) block on a full table.
      constexpr int kWindow = 256;
      std::deque<std::pair<TaskId, int>> inflight;
      const auto drain_one = [&] {
        auto out = client_->wait(inflight.front().first);
        ASSERT_TRUE(out.is_ok()) << out.status().to_string();
        ASSERT_EQ(out->value, std::to_string(inflight.front().second));
        inflight.pop_front();
        ok.fetch_add(1);
      };
      for (int i = 0; i < kPerProducer; ++i) {
        const int v = p * kPerProducer + i;
        auto id = client_->submit("echo", std::to_string(v));
        ASSERT_TRUE(id.is_ok()) << id.status().to_string();
        inflight.emplace_back(*id, v);
        if (inflight.size() >= kWindow) drain_one();
      }
      while (!inflight.empty()) drain_one();
    });
  }
  for (auto& t : pt) t.join();
  for (auto& w : workers) w->stop();
  for (auto& t : wt) t.join();
  EXPECT_EQ(ok.load(), kProducers * kPerProducer);
  std::uint64_t done = 0;
  for (auto& w : workers) done += w->stats().succeeded;
  EXPECT_EQ(done, static_cast<std::uint64_t>(kProducers * kPerProducer));
}

// Several threads wait for the same task: a result is read once, so exactly
// one of them gets the outcome and every other one is told "not found".
TEST_F(ClientWorkerTest, ConcurrentWaitersOnOneTaskReadItsResultExactlyOnce) {
  constexpr int kReaders = 3;
#if defined(__SANITIZE_THREAD__)
  constexpr int kRounds = 100;
#else
  constexpr int kRounds = 500;
#endif
  auto worker = make_worker();
  std::thread wt([&] { EXPECT_TRUE(worker->run().is_ok()); });
  for (int r = 0; r < kRounds; ++r) {
    auto id = client_->submit("echo", std::to_string(r));
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    testing::StartBarrier start(kReaders);
    std::array<int, kReaders> got{};       // 1: outcome, 2: not found, 3: other error
    std::array<std::string, kReaders> value;
    std::vector<std::thread> readers;
    for (int k = 0; k < kReaders; ++k) {
      readers.emplace_back([&, k] {
        start.arrive_and_wait();
        auto out = client_->wait(*id, 30'000'000'000);
        if (out.is_ok()) {
          got[k] = 1;
          value[k] = out->value;
        } else {
          got[k] = out.status().code() == StatusCode::kNotFound ? 2 : 3;
          value[k] = out.status().to_string();
        }
      });
    }
    for (auto& t : readers) t.join();
    int winners = 0;
    for (int k = 0; k < kReaders; ++k) {
      ASSERT_NE(got[k], 3) << "round " << r << ": " << value[k];
      if (got[k] == 1) {
        ++winners;
        EXPECT_EQ(value[k], std::to_string(r)) << "round " << r;
      }
    }
    ASSERT_EQ(winners, 1) << "round " << r << ": the result was handed out " << winners << " times";
  }
  worker->stop();
  wt.join();
  auto snap = read_snapshot(guard_.name());
  ASSERT_TRUE(snap.is_ok());
  EXPECT_EQ(snap->free_slots, small_config().slots);
}

// peek is safe from any thread while workers run, and what it returns is a
// consistent snapshot: a running task has started and has an owner, a
// finished one has a start and finish time in order. The observer watches
// the tasks at the claim frontier, where the transitions happen.
TEST_F(ClientWorkerTest, PeekFromAnotherThreadSeesConsistentSnapshots) {
#if defined(__SANITIZE_THREAD__)
  constexpr int kTasks = 300, kRounds = 5;
#else
  constexpr int kTasks = 1000, kRounds = 20;  // one ring (1024): submitted before the worker starts
#endif
  auto worker = make_worker();
  std::vector<std::string> problems;
  std::array<int, kTaskStateCount> seen{};
  for (int round = 0; round < kRounds && problems.empty(); ++round) {
    std::vector<TaskId> ids;
    for (int i = 0; i < kTasks; ++i) {
      // 1 µs each (many claim transitions), every 10th 50 µs (surely seen running).
      auto id = client_->submit("spin", i % 10 == 9 ? "50" : "1");
      ASSERT_TRUE(id.is_ok()) << id.status().to_string();
      ids.push_back(*id);
    }
    std::atomic<bool> done{false};
    const std::uint64_t base = worker->stats().succeeded;
    std::thread observer([&] {
      std::size_t front = 0;  // tasks before it have finished
      while (!done.load(std::memory_order_acquire) && front < ids.size()) {
        // One worker, one ring: tasks finish in order. Catch up if we lag.
        front = std::max<std::size_t>(front, worker->stats().succeeded - base);
        for (std::size_t k = front; k < std::min(front + 4, ids.size()); ++k) {
          auto info = client_->peek(ids[k]);
          if (!info) continue;
          ++seen[static_cast<int>(info->state)];
          if (k == front && is_terminal(info->state)) ++front;
          if (info->state == TaskState::kRunning && (info->start_ns == 0 || info->owner_worker < 0)) {
            problems.push_back("task " + to_string(ids[k]) + " running with start_ns " +
                               std::to_string(info->start_ns) + ", owner " + std::to_string(info->owner_worker));
          }
          if (info->state == TaskState::kPending && (info->start_ns != 0 || info->finish_ns != 0)) {
            problems.push_back("task " + to_string(ids[k]) + " pending with start_ns " +
                               std::to_string(info->start_ns) + ", finish_ns " + std::to_string(info->finish_ns));
          }
          if (is_terminal(info->state) && info->finish_ns < info->start_ns) {
            problems.push_back("task " + to_string(ids[k]) + " finished before it started");
          }
          if (info->task_name != "spin") problems.push_back("task name '" + info->task_name + "'");
        }
      }
    });
    std::thread wt([&] { EXPECT_TRUE(worker->run_tasks(static_cast<std::uint64_t>(kTasks)).is_ok()); });
    wt.join();
    done.store(true, std::memory_order_release);
    observer.join();
    for (TaskId id : ids) ASSERT_TRUE(client_->wait(id, 30'000'000'000).is_ok());
  }
  EXPECT_TRUE(problems.empty()) << problems.size() << " inconsistent snapshots, first: " << problems.front();
  EXPECT_GT(seen[static_cast<int>(TaskState::kRunning)], 0) << "the observer never saw a running task";
}

}  // namespace
}  // namespace taskring
