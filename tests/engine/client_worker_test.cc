// Client and Worker in one process (threads over one mapping, so TSan sees
// every access): submit, run, wait, results, errors, detached tasks.
#include <gtest/gtest.h>

#include <deque>
#include <thread>
#include <vector>

#include "taskring/admin.h"
#include "taskring/client.h"
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

}  // namespace
}  // namespace taskring
