// Producers and workers in separate processes over one segment: several
// hundred thousand tasks, each completed exactly once with the right result.
//
// Oracles: every producer checks every result against the expected
// transformation of its payload; the workers count handler runs per
// (producer, seq) in shared memory (lost = 0, duplicates = 0); the segment's
// counters agree (submitted == claimed == succeeded == total, no slot held).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "mp_harness.h"
#include "taskring/admin.h"
#include "taskring/status.h"

namespace taskring::stress {
namespace {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Scenario {
  const char* tag;
  int producers;
  int per_producer;
  int workers;
  int window;
};

EngineConfig stress_config() {
  EngineConfig c;
  c.slots = 8192;
  c.ring_capacity = 4096;
  c.max_payload = 4096;
  c.payload_area = 8 << 20;
  c.max_workers = 16;
  c.deque_capacity = 256;
  return c;
}

// Runs the scenario and checks every oracle. Producers alternate between
// one-at-a-time submit and submit_batch; workers between claim batch sizes.
void run_scenario(const Scenario& s) {
  testing::SegmentGuard guard(testing::unique_segment(s.tag));
  const EngineConfig cfg = stress_config();
  ASSERT_TRUE(create_segment(guard.name(), cfg).is_ok());
  RunCounts counts(s.producers, s.per_producer);
  SharedArray<std::atomic<std::uint64_t>> progress(static_cast<std::size_t>(s.producers));
  const std::uint64_t total = static_cast<std::uint64_t>(s.producers) * static_cast<std::uint64_t>(s.per_producer);
  std::fprintf(stderr, "[ scenario ] %d producers x %d tasks, %d workers, window %d\n", s.producers,
               s.per_producer, s.workers, s.window);

  const auto started = steady_clock::now();
  std::vector<pid_t> workers;
  for (int i = 0; i < s.workers; ++i) {
    WorkerOptions o;
    o.claim_batch = i % 3 == 0 ? 16 : (i % 3 == 1 ? 1 : 64);
    workers.push_back(spawn([&, o] { return worker_child(guard.name(), o, &counts); }));
  }
  std::vector<pid_t> producers;
  for (int p = 0; p < s.producers; ++p) {
    ProducerPlan plan;
    plan.producer = p;
    plan.tasks = s.per_producer;
    plan.window = s.window;
    plan.batch = p % 2 == 0 ? 0 : 64;
    plan.progress = &progress[static_cast<std::size_t>(p)];
    producers.push_back(spawn([&, plan] { return producer_child(guard.name(), plan); }));
  }
  const auto pres = reap(producers, started + 240s);
  const auto produced = steady_clock::now();
  // While the workers are still registered: their own counters add up.
  auto live = read_snapshot(guard.name());
  ASSERT_TRUE(live.is_ok()) << live.status().to_string();
  for (pid_t w : workers) kill(w, SIGTERM);
  const auto wres = reap(workers, steady_clock::now() + 30s);
  std::fprintf(stderr, "[ timing   ] producers done after %.2f s\n",
               std::chrono::duration<double>(produced - started).count());
  for (const auto& r : pres) EXPECT_TRUE(r.exited && r.code == kExitOk) << "producer " << describe(r);
  for (const auto& r : wres) EXPECT_TRUE(r.exited && r.code == kExitOk) << "worker " << describe(r);
  for (int p = 0; p < s.producers; ++p) {
    EXPECT_EQ(progress[static_cast<std::size_t>(p)].load(), static_cast<std::uint64_t>(s.per_producer))
        << "producer " << p << " stopped early";
  }

  // Exactly once, from the workers' side.
  std::uint64_t lost = 0, duplicates = 0;
  std::string first_bad;
  for (int p = 0; p < s.producers; ++p) {
    for (int seq = 0; seq < s.per_producer; ++seq) {
      const std::uint32_t n = counts.runs(p, seq);
      if (n == 1) continue;
      if (n == 0) ++lost; else duplicates += n - 1;
      if (first_bad.empty()) first_bad = "(" + std::to_string(p) + ", " + std::to_string(seq) + ") ran " + std::to_string(n) + " times";
    }
  }
  EXPECT_EQ(lost, 0u) << first_bad;
  EXPECT_EQ(duplicates, 0u) << first_bad;
  EXPECT_EQ(counts.out_of_range(), 0u);

  // And from the segment's counters.
  auto snap = read_snapshot(guard.name());
  ASSERT_TRUE(snap.is_ok()) << snap.status().to_string();
  const QueueSnapshot& q = snap->queues.at(0);
  EXPECT_EQ(q.submitted, total);
  EXPECT_EQ(q.claimed, total);
  EXPECT_EQ(q.succeeded, total);
  EXPECT_EQ(q.failed, 0u);
  EXPECT_EQ(q.cancelled, 0u);
  EXPECT_EQ(snap->free_slots, cfg.slots) << "slots still held after every result was read";
  EXPECT_TRUE(snap->workers.empty()) << "a stopped worker left its registry entry in use";

  std::uint64_t by_workers = 0, claimed_by_workers = 0;
  ASSERT_EQ(live->workers.size(), workers.size());
  for (const WorkerSnapshot& w : live->workers) {
    EXPECT_NE(std::find(workers.begin(), workers.end(), static_cast<pid_t>(w.pid)), workers.end())
        << "registry entry of unknown pid " << w.pid;
    by_workers += w.succeeded;
    claimed_by_workers += w.claimed;
  }
  EXPECT_EQ(by_workers, total);
  EXPECT_EQ(claimed_by_workers, total);
}

const int kPerProducer = kSanitized ? 12000 : 60000;

TEST(MultiprocessTest, FourProducersTwoWorkersCompleteEveryTaskExactlyOnce) {
  run_scenario({"mp", 4, kPerProducer, 2, 512});
}

// 3 producers and 4 workers on a 2-core machine: everyone parks and wakes;
// nothing is asserted about time beyond the test's timeout.
TEST(MultiprocessTest, OversubscribedProcessesStillFinish) {
  run_scenario({"mp-over", 3, kPerProducer, 4, 256});
}

// Many small windows: producers park on results all the time.
TEST(MultiprocessTest, ProducersWithTinyWindowsFinish) {
  run_scenario({"mp-tiny", 4, kPerProducer / 6, 3, 2});
}

}  // namespace
}  // namespace taskring::stress
