// Priorities: a worker takes critical before high before normal before low,
// except in anti-starvation rounds, which keep the lower levels moving even
// while a higher level never runs dry.
//
// The worker runs on the test thread with claim_batch = 1, so one claim round
// is one task and the order is deterministic.
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "engine_test_util.h"
#include "taskring/client.h"
#include "taskring/worker.h"

namespace taskring {
namespace {

using testing::kHangTimeoutNs;
using testing::TestSegment;

// The anti-starvation rule of docs/architecture.md (worker.cc claim()):
// every kInterval-th claim round starts at high, normal, low in turn, then
// falls back to the usual order; the other rounds go critical..low.
constexpr int kInterval = 8;
constexpr int kLevels = kPriorityCount;

// The level a worker must take in claim round `round` (1-based) given how
// many tasks each level still holds, or -1 if all are empty.
int expected_level(int round, const std::array<int, kLevels>& left) {
  std::array<int, kLevels> order{0, 1, 2, 3};
  if (round % kInterval == 0) {
    const int first = 1 + (round / kInterval) % 3;
    int k = 0;
    order[k++] = first;
    for (int p = 0; p < kLevels; ++p) {
      if (p != first) order[k++] = p;
    }
  }
  for (int p : order) {
    if (left[p] > 0) return p;
  }
  return -1;
}

struct Ran {
  Priority priority;
  int seq;
};

TEST(PriorityTest, WorkerTakesCriticalThenHighThenNormalThenLowExceptInStarvationRounds) {
  TestSegment seg("prio");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  constexpr int kPerLevel = 30;
  // Submitted low first and interleaved, so submission order cannot explain
  // the run order.
  std::vector<TaskId> ids;
  for (int i = 0; i < kPerLevel; ++i) {
    for (int p = kLevels - 1; p >= 0; --p) {
      SubmitOptions o;
      o.priority = static_cast<Priority>(p);
      auto id = seg.client().submit("rec", std::to_string(i), o);
      ASSERT_TRUE(id.is_ok()) << id.status().to_string();
      ids.push_back(*id);
    }
  }
  WorkerOptions wo;
  wo.claim_batch = 1;
  auto w = seg.worker(wo);
  std::vector<Ran> ran;
  ASSERT_TRUE(w->register_handler("rec", [&](TaskContext& ctx) {
                 ran.push_back({ctx.priority(), std::stoi(std::string(ctx.payload()))});
               }).is_ok());
  ASSERT_TRUE(w->run_tasks(kLevels * kPerLevel).is_ok());
  ASSERT_EQ(ran.size(), static_cast<std::size_t>(kLevels * kPerLevel));

  std::array<int, kLevels> left;
  left.fill(kPerLevel);
  std::array<int, kLevels> next_seq{};
  int inversions = 0;  // rounds that took a lower level while a higher one waited
  for (std::size_t i = 0; i < ran.size(); ++i) {
    const int round = static_cast<int>(i) + 1;
    const int got = static_cast<int>(ran[i].priority);
    const int want = expected_level(round, left);
    ASSERT_EQ(got, want) << "claim round " << round << " ran a " << priority_name(ran[i].priority)
                         << " task; expected " << priority_name(static_cast<Priority>(want));
    for (int p = 0; p < got; ++p) {
      if (left[p] > 0) {
        ++inversions;
        EXPECT_EQ(round % kInterval, 0) << "round " << round << " is not an anti-starvation round";
        break;
      }
    }
    // FIFO within a level.
    EXPECT_EQ(ran[i].seq, next_seq[got]) << "level " << got << " out of submission order";
    ++next_seq[got];
    --left[got];
  }
  EXPECT_GT(inversions, 0) << "no anti-starvation round took a lower level";
  for (TaskId id : ids) ASSERT_TRUE(seg.client().wait(id, kHangTimeoutNs).is_ok());
}

TEST(PriorityTest, LowTaskRunsWhileTheCriticalRingKeepsBeingRefilled) {
  TestSegment seg("prio-starve");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  Client& client = seg.client();
  constexpr int kInitialCritical = 200;
  constexpr int kTotalCritical = 1000;
  SubmitOptions crit;
  crit.priority = Priority::kCritical;
  crit.detached = true;
  SubmitOptions low;
  low.priority = Priority::kLow;
  auto low_id = client.submit("low", "", low);
  ASSERT_TRUE(low_id.is_ok());
  for (int i = 0; i < kInitialCritical; ++i) ASSERT_TRUE(client.submit("crit", "", crit).is_ok());

  WorkerOptions wo;
  wo.claim_batch = 1;
  auto w = seg.worker(wo);
  int submitted_critical = kInitialCritical;
  int ran_critical = 0;
  int low_position = -1;          // how many critical tasks ran before it
  std::uint64_t critical_depth_at_low = 0;
  // Every critical task submits another until kTotalCritical: the critical
  // ring is never empty while the low task waits.
  ASSERT_TRUE(w->register_handler("crit", [&](TaskContext&) {
                 ++ran_critical;
                 if (submitted_critical < kTotalCritical) {
                   EXPECT_TRUE(client.submit("crit", "", crit).is_ok());
                   ++submitted_critical;
                 }
               }).is_ok());
  ASSERT_TRUE(w->register_handler("low", [&](TaskContext& ctx) {
                 low_position = ran_critical;
                 critical_depth_at_low = seg.snapshot().queues.at(0).depth[0];
                 ctx.set_result("low ran");
               }).is_ok());
  ASSERT_TRUE(w->run_tasks(kTotalCritical + 1).is_ok());
  ASSERT_EQ(ran_critical, kTotalCritical);
  ASSERT_GE(low_position, 0) << "the low task never ran";
  EXPECT_LT(low_position, kTotalCritical) << "the low task waited for every critical task";
  EXPECT_GT(critical_depth_at_low, 0u) << "the critical ring was empty when the low task ran";
  // The rule gives each lower level a turn every 3 * kInterval rounds.
  EXPECT_LT(low_position, 3 * kInterval) << "low ran only after " << low_position << " critical tasks";
  auto out = client.wait(*low_id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, "low ran");
}

TEST(PriorityTest, EveryLowerLevelGetsItsShareUnderACriticalFlood) {
  TestSegment seg("prio-share");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  constexpr int kCritical = 600, kOthers = 100;
  for (int p = 0; p < kLevels; ++p) {
    SubmitOptions o;
    o.priority = static_cast<Priority>(p);
    o.detached = true;
    for (int i = 0; i < (p == 0 ? kCritical : kOthers); ++i) {
      ASSERT_TRUE(seg.client().submit("rec", "", o).is_ok());
    }
  }
  WorkerOptions wo;
  wo.claim_batch = 1;
  auto w = seg.worker(wo);
  std::vector<int> order;
  ASSERT_TRUE(w->register_handler("rec", [&](TaskContext& ctx) {
                 order.push_back(static_cast<int>(ctx.priority()));
               }).is_ok());
  constexpr int kRounds = 240;  // all levels still non-empty throughout
  ASSERT_TRUE(w->run_tasks(kRounds).is_ok());
  std::array<int, kLevels> count{};
  for (int p : order) ++count[p];
  // Each of high, normal and low: at least one round in 3 * kInterval.
  for (int p = 1; p < kLevels; ++p) {
    EXPECT_GE(count[p], kRounds / (3 * kInterval)) << priority_name(static_cast<Priority>(p));
  }
  // And critical still gets the rest.
  EXPECT_GE(count[0], kRounds - kRounds / kInterval);
}

}  // namespace
}  // namespace taskring
