// Processes that die at an arbitrary instruction must not block the others:
// a producer SIGKILLed in the middle of submitting, and a worker SIGKILLed
// while parked idle. The survivors complete all their work, exactly once.
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

EngineConfig crash_config(std::uint32_t max_workers) {
  EngineConfig c;
  c.slots = 8192;
  c.ring_capacity = 1024;  // small: a flooding producer spends its time waiting for room
  c.max_payload = 4096;
  c.payload_area = 8 << 20;
  c.max_workers = max_workers;
  c.deque_capacity = 256;
  return c;
}

const int kTasks = kSanitized ? 5000 : 30000;

// Counts lost and duplicated runs of producers [0, n) with `per` tasks each.
void expect_exactly_once(const RunCounts& counts, int n, int per) {
  std::uint64_t lost = 0, duplicates = 0;
  std::string first_bad;
  for (int p = 0; p < n; ++p) {
    for (int seq = 0; seq < per; ++seq) {
      const std::uint32_t r = counts.runs(p, seq);
      if (r == 1) continue;
      if (r == 0) ++lost; else duplicates += r - 1;
      if (first_bad.empty()) first_bad = "(" + std::to_string(p) + ", " + std::to_string(seq) + ") ran " + std::to_string(r) + " times";
    }
  }
  EXPECT_EQ(lost, 0u) << first_bad;
  EXPECT_EQ(duplicates, 0u) << first_bad;
}

// Polls the registry until a worker with `pid` is parked.
bool parked(const std::string& segment, pid_t pid) {
  const auto deadline = steady_clock::now() + 30s;
  while (steady_clock::now() < deadline) {
    auto snap = read_snapshot(segment);
    if (snap) {
      for (const WorkerSnapshot& w : snap->workers) {
        if (static_cast<pid_t>(w.pid) == pid && w.state == WorkerState::kParked) return true;
      }
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// Waits until no queue ring or worker deque holds anything and nothing runs.
bool quiescent(const std::string& segment) {
  const auto deadline = steady_clock::now() + 60s;
  while (steady_clock::now() < deadline) {
    auto snap = read_snapshot(segment);
    if (snap) {
      std::uint64_t held = snap->tasks_by_state[static_cast<int>(TaskState::kRunning)];
      for (const QueueSnapshot& q : snap->queues) {
        for (std::uint64_t d : q.depth) held += d;
      }
      for (const WorkerSnapshot& w : snap->workers) held += w.deque_depth;
      if (held == 0) return true;
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

TEST(CrashTest, IdleWorkerKilledWhileParkedBlocksNobodyAndItsEntryIsReused) {
  testing::SegmentGuard guard(testing::unique_segment("crash-idle"));
  // Two registry entries: after the kill, the two survivors need the dead
  // worker's entry as well.
  const EngineConfig cfg = crash_config(2);
  ASSERT_TRUE(create_segment(guard.name(), cfg).is_ok());
  RunCounts counts(2, kTasks);

  const pid_t idle = spawn([&] { return worker_child(guard.name(), WorkerOptions{}, &counts); });
  ASSERT_TRUE(parked(guard.name(), idle)) << "the idle worker never parked";
  kill(idle, SIGKILL);
  const auto killed = reap({idle}, steady_clock::now() + 10s);
  ASSERT_FALSE(killed[0].exited);
  ASSERT_EQ(killed[0].code, SIGKILL);

  std::vector<pid_t> workers;
  for (int i = 0; i < 2; ++i) workers.push_back(spawn([&] { return worker_child(guard.name(), WorkerOptions{}, &counts); }));
  std::vector<pid_t> producers;
  for (int p = 0; p < 2; ++p) {
    ProducerPlan plan;
    plan.producer = p;
    plan.tasks = kTasks;
    plan.batch = p == 0 ? 0 : 32;
    producers.push_back(spawn([&, plan] { return producer_child(guard.name(), plan); }));
  }
  const auto pres = reap(producers, steady_clock::now() + 240s);
  auto live = read_snapshot(guard.name());
  for (pid_t w : workers) kill(w, SIGTERM);
  const auto wres = reap(workers, steady_clock::now() + 30s);
  for (const auto& r : pres) EXPECT_TRUE(r.exited && r.code == kExitOk) << "producer " << describe(r);
  for (const auto& r : wres) EXPECT_TRUE(r.exited && r.code == kExitOk) << "worker " << describe(r);
  ASSERT_TRUE(live.is_ok()) << live.status().to_string();
  EXPECT_EQ(live->workers.size(), 2u);
  for (const WorkerSnapshot& w : live->workers) {
    EXPECT_NE(static_cast<pid_t>(w.pid), idle) << "the dead worker is still registered";
    EXPECT_TRUE(w.alive);
  }
  expect_exactly_once(counts, 2, kTasks);
  auto snap = read_snapshot(guard.name());
  ASSERT_TRUE(snap.is_ok());
  EXPECT_EQ(snap->queues.at(0).succeeded, 2u * kTasks);
  EXPECT_EQ(snap->free_slots, cfg.slots);
}

// Floods the segment with detached batches until killed.
int flooding_producer(const std::string& segment, int producer, int cap, std::atomic<std::uint64_t>* progress) {
  auto c = Client::attach(segment);
  if (!c) {
    child_log("victim attach: %s", c.status().to_string().c_str());
    return kExitAttach;
  }
  SubmitOptions o;
  o.detached = true;
  constexpr int kBatch = 64;
  std::vector<std::string> payloads;
  std::vector<TaskSpec> specs;
  std::vector<TaskId> ids(kBatch);
  int seq = 0;
  while (seq + kBatch <= cap) {
    payloads.clear();
    specs.clear();
    for (int i = 0; i < kBatch; ++i) payloads.push_back(make_payload(producer, seq + i));
    for (const auto& p : payloads) specs.push_back({"xform", p});
    std::size_t done = 0;
    while (done < specs.size()) {
      auto got = c->submit_batch(std::span<const TaskSpec>(specs).subspan(done), std::span<TaskId>(ids).subspan(done), o);
      if (!got) {
        child_log("victim submit_batch: %s", got.status().to_string().c_str());
        return kExitSubmit;
      }
      done += *got;
    }
    seq += kBatch;
    progress->store(static_cast<std::uint64_t>(seq), std::memory_order_relaxed);
  }
  pause();  // should be killed long before
  return kExitOk;
}

TEST(CrashTest, ProducerKilledMidSubmitBlocksNobody) {
  testing::SegmentGuard guard(testing::unique_segment("crash-producer"));
  const EngineConfig cfg = crash_config(8);
  ASSERT_TRUE(create_segment(guard.name(), cfg).is_ok());
  constexpr int kVictim = 2;
  const int victim_cap = 2'000'000;
  RunCounts counts(3, victim_cap);  // rows 0, 1: survivors; row 2: the victim
  SharedArray<std::atomic<std::uint64_t>> progress(3);

  std::vector<pid_t> workers;
  for (int i = 0; i < 2; ++i) {
    WorkerOptions o;
    o.claim_batch = i == 0 ? 16 : 1;
    workers.push_back(spawn([&, o] { return worker_child(guard.name(), o, &counts); }));
  }
  const pid_t victim = spawn([&] { return flooding_producer(guard.name(), kVictim, victim_cap, &progress[kVictim]); });
  std::vector<pid_t> producers;
  for (int p = 0; p < 2; ++p) {
    ProducerPlan plan;
    plan.producer = p;
    plan.tasks = kTasks;
    plan.batch = p == 0 ? 0 : 32;
    plan.progress = &progress[static_cast<std::size_t>(p)];
    producers.push_back(spawn([&, plan] { return producer_child(guard.name(), plan); }));
  }
  // Kill the victim once it is well into its flood and the survivors are
  // under way, so that they have work left after the kill.
  const auto deadline = steady_clock::now() + 60s;
  while (steady_clock::now() < deadline &&
         (progress[kVictim].load() < 4096 || progress[0].load() < static_cast<std::uint64_t>(kTasks) / 10)) {
    std::this_thread::sleep_for(1ms);
  }
  const std::uint64_t survivor_progress_at_kill = std::min(progress[0].load(), progress[1].load());
  kill(victim, SIGKILL);
  const auto vres = reap({victim}, steady_clock::now() + 10s);
  EXPECT_FALSE(vres[0].exited) << "the victim " << describe(vres[0]) << " before it was killed";
  std::fprintf(stderr, "[ killed   ] victim after %llu submitted; survivors at %llu of %d\n",
               static_cast<unsigned long long>(progress[kVictim].load()),
               static_cast<unsigned long long>(survivor_progress_at_kill), kTasks);

  const auto pres = reap(producers, steady_clock::now() + 240s);
  // Let the workers finish what the victim left in the rings before they
  // are stopped (a stopping worker hands its deque back unrun).
  EXPECT_TRUE(quiescent(guard.name())) << "work left in rings or deques";
  for (pid_t w : workers) kill(w, SIGTERM);
  const auto wres = reap(workers, steady_clock::now() + 30s);
  for (const auto& r : pres) EXPECT_TRUE(r.exited && r.code == kExitOk) << "producer " << describe(r);
  for (const auto& r : wres) EXPECT_TRUE(r.exited && r.code == kExitOk) << "worker " << describe(r);
  expect_exactly_once(counts, 2, kTasks);
  // The victim's tasks: none ran twice, and those it had finished handing
  // over before the kill ran (they were all in a ring by then).
  std::uint64_t victim_dups = 0, victim_ran = 0;
  const auto handed_over = static_cast<int>(progress[kVictim].load());
  int victim_lost = 0;
  for (int seq = 0; seq < victim_cap; ++seq) {
    const std::uint32_t r = counts.runs(kVictim, seq);
    if (r > 1) victim_dups += r - 1;
    victim_ran += r;
    if (seq < handed_over && r == 0) ++victim_lost;
  }
  EXPECT_EQ(victim_dups, 0u);
  EXPECT_EQ(victim_lost, 0) << "tasks the victim had submitted before it died never ran";
  EXPECT_GE(victim_ran, static_cast<std::uint64_t>(handed_over));
  EXPECT_EQ(counts.out_of_range(), 0u);
  // What the victim held when it died (at most one batch chunk of slots) may
  // stay lost; everything else is back.
  auto snap = read_snapshot(guard.name());
  ASSERT_TRUE(snap.is_ok());
  EXPECT_GE(snap->free_slots, cfg.slots - 64);
  EXPECT_EQ(snap->tasks_by_state[static_cast<int>(TaskState::kRunning)], 0u);
}

// A worker SIGKILLed while parked leaves its "parked" flag raised. The next
// wake-up for its queue must still reach a live parked worker, not be spent
// on the dead one: the live worker here parks for a minute between checks,
// so a lost wake-up shows as a task that does not run.
TEST(CrashTest, WorkerKilledWhileParkedDoesNotSwallowTheNextWake) {
  testing::SegmentGuard guard(testing::unique_segment("crash-wake"));
  ASSERT_TRUE(create_segment(guard.name(), crash_config(4)).is_ok());
  WorkerOptions sleepy;
  sleepy.park_timeout_ns = 60'000'000'000;
  // The victim registers first, so it sits before the survivor in the
  // registry that wakers scan.
  const pid_t victim = spawn([&] { return worker_child(guard.name(), sleepy, nullptr); });
  ASSERT_TRUE(parked(guard.name(), victim)) << "the victim never parked";
  const pid_t survivor = spawn([&] { return worker_child(guard.name(), sleepy, nullptr); });
  ASSERT_TRUE(parked(guard.name(), survivor)) << "the survivor never parked";
  kill(victim, SIGKILL);
  const auto killed = reap({victim}, steady_clock::now() + 10s);
  ASSERT_EQ(killed[0].code, SIGKILL);

  auto client = Client::attach(guard.name());
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  std::vector<TaskId> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = client->submit("echo", "wake " + std::to_string(i));
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    auto out = client->wait(*id, 10'000'000'000);
    EXPECT_TRUE(out.is_ok()) << "task " << i << " did not run within 10 s of its submit: "
                             << out.status().to_string()
                             << " (engine.cc notify_work: the wake went to the dead worker's entry)";
    if (!out) break;
    EXPECT_EQ(out->value, "wake " + std::to_string(i));
  }
  kill(survivor, SIGTERM);
  const auto sres = reap({survivor}, steady_clock::now() + 30s);
  EXPECT_TRUE(sres[0].exited && sres[0].code == kExitOk) << "survivor " << describe(sres[0]);
}

}  // namespace
}  // namespace taskring::stress
