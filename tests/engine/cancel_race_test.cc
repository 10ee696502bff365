// Cancel racing claim: "exactly one of cancel and a worker's claim wins".
// Threads in one process, so ThreadSanitizer sees them; note that it only
// relates accesses made through the same mapping (engine_test_util.h).
//
// Oracle, per task: either cancel returned kCancelled, the handler never ran
// for that id and the outcome is cancelled with no attempt; or the handler
// ran exactly once, cancel returned kRequested or kAlreadyFinished, and the
// outcome agrees (kAlreadyFinished: succeeded; kRequested: succeeded or
// cancelled). Randomised delays; the seed is printed (TASKRING_TEST_SEED).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "taskring/client.h"
#include "taskring/worker.h"

namespace taskring {
namespace {

using testing::kHangTimeout;
using testing::kHangTimeoutNs;
using testing::TestSegment;
using testing::WorkerThread;

inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins (yielding now and then, the machine has two cores) until `pred`;
// false after kHangTimeout.
template <typename Pred>
bool spin_until(Pred&& pred) {
  const auto deadline = std::chrono::steady_clock::now() + kHangTimeout;
  for (std::uint32_t i = 0; !pred(); ++i) {
    if ((i & 63) == 63) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::yield();
    } else {
      cpu_pause();
    }
  }
  return true;
}

// A delay drawn from the seed: none, a few pauses, many pauses, or a yield,
// so that cancel lands before, during and after the claim.
void random_delay(std::mt19937_64& rng, bool short_only = false) {
  if (short_only) {
    for (std::uint64_t i = rng() % 64; i > 0; --i) cpu_pause();
    return;
  }
  switch (rng() % 4) {
    case 0: break;
    case 1: for (std::uint64_t i = rng() % 64; i > 0; --i) cpu_pause(); break;
    case 2: for (std::uint64_t i = rng() % 4000; i > 0; --i) cpu_pause(); break;
    default: std::this_thread::yield(); break;
  }
}

const char* outcome_name(CancelOutcome c) {
  switch (c) {
    case CancelOutcome::kCancelled: return "cancelled";
    case CancelOutcome::kRequested: return "requested";
    case CancelOutcome::kAlreadyFinished: return "already finished";
  }
  return "?";
}

// The "target" handler: counts its run, works ~spin_ns while polling the
// cancel flag, returns early (cancelled) if asked, else succeeds with "ran".
// With `sleepy`, it sleeps in short steps instead of spinning, leaving the
// cores to the test's other threads. With an `observer` client, it peeks at
// its own task before it returns and counts in `traced` the runs that show a
// finish time while still running (a losing canceller's leftover).
Handler target_handler(std::vector<std::atomic<int>>& ran, std::int64_t spin_ns, bool sleepy = false,
                       const Client* observer = nullptr, std::vector<std::atomic<int>>* traced = nullptr) {
  return [&ran, spin_ns, sleepy, observer, traced](TaskContext& ctx) {
    const auto r = static_cast<std::size_t>(std::stoi(std::string(ctx.payload())));
    ran[r].fetch_add(1, std::memory_order_relaxed);
    const auto check_trace = [&] {
      if (observer == nullptr) return;
      auto info = observer->peek(ctx.id());
      if (info && info->state == TaskState::kRunning && info->finish_ns != 0) (*traced)[r].fetch_add(1);
    };
    const auto end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns);
    while (std::chrono::steady_clock::now() < end) {
      if (ctx.cancel_requested()) return check_trace();
      if (sleepy) std::this_thread::sleep_for(std::chrono::microseconds(10));
    }
    check_trace();
    if (ctx.cancel_requested()) return;
    ctx.set_result("ran");
  };
}

// Checks one task's cancel result against its outcome; returns a description
// of the violation, or empty.
std::string check_outcome(CancelOutcome c, const TaskOutcome& out) {
  switch (c) {
    case CancelOutcome::kCancelled:
      if (out.state != TaskState::kCancelled) return "cancel won but the task ended " + std::string(state_name(out.state));
      if (out.attempts != 0) return "cancel won but the task was claimed " + std::to_string(out.attempts) + " times";
      if (out.start_ns != 0) return "cancel won but the task has a start time";
      return {};
    case CancelOutcome::kRequested:
      if (out.attempts != 1) return "running task claimed " + std::to_string(out.attempts) + " times";
      if (out.state == TaskState::kCancelled) return {};
      if (out.state == TaskState::kSucceeded && out.value == "ran") return {};
      return "cancel requested but the task ended " + std::string(state_name(out.state)) + " '" + out.value + "'";
    case CancelOutcome::kAlreadyFinished:
      if (out.attempts != 1) return "finished task claimed " + std::to_string(out.attempts) + " times";
      if (out.state == TaskState::kSucceeded && out.value == "ran") return {};
      return "cancel came too late but the task ended " + std::string(state_name(out.state)) + " '" + out.value + "'";
  }
  return "unknown cancel outcome";
}

TEST(CancelRaceTest, CancelAndClaimOfOnePendingTaskExactlyOneWins) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  const int kRounds = testing::scaled(5000, 3000, 5000);
  TestSegment seg("cancel-race");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  Client& client = seg.client();

  std::vector<std::atomic<int>> ran(static_cast<std::size_t>(kRounds));
  std::atomic<int> gate_in{-1};
  std::atomic<int> gate_go{-1};
  WorkerOptions wo;
  wo.claim_batch = 1;  // the target stays in the ring while the gate runs
  auto w = seg.worker(wo, false);
  // The target sleeps in steps (on a loaded machine the worker and the test
  // may share a core, and a spinning handler would hold it until it ends),
  // and peeks at its own task through a client of its own (see
  // state_machine_test.cc on why not the test's client).
  auto observer = Client::attach(seg.name());
  ASSERT_TRUE(observer.is_ok()) << observer.status().to_string();
  std::vector<std::atomic<int>> traced(static_cast<std::size_t>(kRounds));
  ASSERT_TRUE(w->register_handler("target", target_handler(ran, 200'000, /*sleepy=*/true, &*observer, &traced)).is_ok());
  // Holds the worker until the test releases it, so that the worker's next
  // claim (of the target) and the test's cancel start together.
  ASSERT_TRUE(w->register_handler("gate", [&](TaskContext& ctx) {
                 const int r = std::stoi(std::string(ctx.payload()));
                 gate_in.store(r, std::memory_order_release);
                 EXPECT_TRUE(spin_until([&] { return gate_go.load(std::memory_order_acquire) >= r; }));
               }).is_ok());
  ASSERT_TRUE(w->register_handler("fence", [](TaskContext& ctx) { ctx.set_result("fence"); }).is_ok());
  WorkerThread wt(std::move(w));

  SubmitOptions detached;
  detached.detached = true;
  std::vector<CancelOutcome> results(static_cast<std::size_t>(kRounds));
  std::array<int, 3> tally{};
  int cancelled_while_running = 0;
  for (int r = 0; r < kRounds; ++r) {
    const std::string p = std::to_string(r);
    ASSERT_TRUE(client.submit("gate", p, detached).is_ok());
    auto id = client.submit("target", p);
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ASSERT_TRUE(spin_until([&] { return gate_in.load(std::memory_order_acquire) >= r; })) << "round " << r;
    gate_go.store(r, std::memory_order_release);
    // Most rounds race the cancel against the claim. On a loaded two-core
    // machine the worker and the test often share a core, so the claim
    // rarely lands inside a short delay; one round in four therefore
    // waits for the handler to start before cancelling, which races the
    // cancel against the handler's end instead.
    if (rng() % 4 == 0) {
      ASSERT_TRUE(spin_until([&] { return ran[static_cast<std::size_t>(r)].load() > 0; })) << "round " << r;
    }
    random_delay(rng);
    auto c = client.cancel(*id);
    ASSERT_TRUE(c.is_ok()) << "round " << r << ": " << c.status().to_string();
    results[static_cast<std::size_t>(r)] = *c;
    ++tally[static_cast<int>(*c)];
    auto out = client.wait(*id, kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << "round " << r << ": " << out.status().to_string();
    const std::string violation = check_outcome(*c, *out);
    ASSERT_TRUE(violation.empty()) << "round " << r << " (cancel said " << outcome_name(*c) << "): " << violation;
    if (*c != CancelOutcome::kCancelled && out->state == TaskState::kCancelled) ++cancelled_while_running;
  }
  // Same ring, one worker, claim_batch 1: once the fence ran, every target
  // was popped, and a cancelled one can never run any more.
  auto fence = client.submit("fence", "");
  ASSERT_TRUE(fence.is_ok());
  ASSERT_TRUE(client.wait(*fence, kHangTimeoutNs).is_ok());
  ASSERT_TRUE(wt.stop_and_join());

  int handler_runs = 0, traces = 0, first_traced = -1;
  for (int r = 0; r < kRounds; ++r) {
    if (traced[static_cast<std::size_t>(r)].load() > 0 && traces++ == 0) first_traced = r;
  }
  // A cancel that loses to the claim must leave the task as it found it.
  EXPECT_EQ(traces, 0) << traces << " running tasks showed a finish time, written by a cancel that lost the race "
                       << "to the claim (first in round " << first_traced << "; client.cc cancel() stores "
                       << "finish_ns before its CAS)";
  for (int r = 0; r < kRounds; ++r) {
    const int n = ran[static_cast<std::size_t>(r)].load();
    const int want = results[static_cast<std::size_t>(r)] == CancelOutcome::kCancelled ? 0 : 1;
    ASSERT_EQ(n, want) << "round " << r << ": cancel said " << outcome_name(results[static_cast<std::size_t>(r)])
                       << " but the handler ran " << n << " times";
    handler_runs += n;
  }
  std::fprintf(stderr, "[ outcomes ] cancelled %d, requested %d, already finished %d (ended cancelled while running: %d)\n",
               tally[0], tally[1], tally[2], cancelled_while_running);
  const WorkerStats& st = wt.last_stats();
  // Gates (kRounds) + the fence + the targets the worker won.
  EXPECT_EQ(st.claimed, static_cast<std::uint64_t>(kRounds + 1 + handler_runs));
  EXPECT_EQ(st.cancelled, static_cast<std::uint64_t>(cancelled_while_running));
  const SegmentSnapshot snap = seg.snapshot();
  EXPECT_EQ(snap.queues.at(0).cancelled, static_cast<std::uint64_t>(tally[0] + cancelled_while_running));
  EXPECT_EQ(snap.free_slots, seg.config().slots) << "a slot leaked";
}

TEST(CancelRaceTest, CancelRacingBatchClaimsAndStealsExactlyOneWins) {
  const std::uint64_t seed = testing::test_seed();
  const int kTasks = testing::scaled(2000, 300, 800);
  constexpr std::size_t kWindow = 24;  // few tasks in flight: most sit in deques
  TestSegment seg("cancel-steal");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  Client& client = seg.client();

  std::vector<std::atomic<int>> ran(static_cast<std::size_t>(kTasks));
  std::vector<std::unique_ptr<WorkerThread>> workers;
  for (int i = 0; i < 2; ++i) {
    WorkerOptions wo;
    wo.claim_batch = 8;  // tasks wait in deques, where thieves take them
    auto w = seg.worker(wo, false);
    ASSERT_TRUE(w->register_handler("target", target_handler(ran, 50'000, /*sleepy=*/true)).is_ok());
    workers.push_back(std::make_unique<WorkerThread>(std::move(w)));
  }

  // The producer keeps a small window in flight and reads each outcome; the
  // canceller cancels about half of the tasks, chosen by the seed, as soon
  // as their ids appear. A cancel that comes after the producer has read the
  // result finds no task (kNotFound): it must then have run and succeeded.
  std::vector<std::atomic<std::uint64_t>> ids(static_cast<std::size_t>(kTasks));
  std::vector<int> chosen(static_cast<std::size_t>(kTasks), 0);
  std::vector<int> results(static_cast<std::size_t>(kTasks), -1);  // CancelOutcome, or 3: not found
  std::vector<std::string> errors;
  std::atomic<std::size_t> canceller_at{0};  // tasks the canceller is done with
  testing::StartBarrier start(2);
  std::thread canceller([&] {
    std::mt19937_64 rng(seed);
    start.arrive_and_wait();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      canceller_at.store(i, std::memory_order_release);
      if (!spin_until([&] { return ids[i].load(std::memory_order_acquire) != 0; })) {
        errors.push_back("task " + std::to_string(i) + " never published");
        return;
      }
      if (rng() % 2 == 0) continue;
      // Mostly at once; sometimes after a sleep of up to a few tasks' time,
      // so that the cancel also meets claimed, running and finished tasks.
      if (rng() % 3 == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
      } else {
        random_delay(rng, /*short_only=*/true);
      }
      chosen[i] = 1;
      auto c = client.cancel(TaskId{ids[i].load(std::memory_order_relaxed)});
      if (c) {
        results[i] = static_cast<int>(*c);
      } else if (c.status().code() == StatusCode::kNotFound) {
        results[i] = 3;
      } else {
        errors.push_back("cancel of task " + std::to_string(i) + ": " + c.status().to_string());
      }
    }
  });
  start.arrive_and_wait();
  std::vector<std::optional<TaskOutcome>> outcomes(static_cast<std::size_t>(kTasks));
  std::deque<std::size_t> inflight;
  const auto read_oldest = [&] {
    const std::size_t k = inflight.front();
    inflight.pop_front();
    auto out = client.wait(TaskId{ids[k].load()}, kHangTimeoutNs);
    if (out) outcomes[k] = std::move(out).value();
    else errors.push_back("wait for task " + std::to_string(k) + ": " + out.status().to_string());
  };
  // The producer lets the canceller fall behind by a random 0..2*kWindow
  // tasks, so that cancels meet tasks in the ring, in a deque, being claimed
  // or stolen, running, finished and already read.
  std::mt19937_64 lag_rng(seed ^ 0x5eed);
  for (int i = 0; i < kTasks; ++i) {
    const std::size_t lag = lag_rng() % (2 * kWindow + 1);
    ASSERT_TRUE(spin_until([&] { return canceller_at.load(std::memory_order_acquire) + lag >= static_cast<std::size_t>(i); }));
    auto id = client.submit("target", std::to_string(i));
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ids[static_cast<std::size_t>(i)].store(id->value, std::memory_order_release);
    inflight.push_back(static_cast<std::size_t>(i));
    if (inflight.size() >= kWindow) read_oldest();
  }
  while (!inflight.empty()) read_oldest();
  canceller.join();
  ASSERT_TRUE(errors.empty()) << errors.size() << " errors, first: " << errors.front();

  std::uint64_t claimed = 0;
  for (auto& w : workers) {
    ASSERT_TRUE(w->stop_and_join());
    claimed += w->last_stats().claimed;
  }
  // The workers are gone: a task that has not run by now never will.
  std::array<int, 4> tally{};
  int handler_runs = 0, cancelled_total = 0;
  for (int i = 0; i < kTasks; ++i) {
    const auto k = static_cast<std::size_t>(i);
    ASSERT_TRUE(outcomes[k].has_value()) << "task " << i;
    const TaskOutcome& out = *outcomes[k];
    const int n = ran[k].load();
    handler_runs += n;
    if (out.state == TaskState::kCancelled) ++cancelled_total;
    if (!chosen[k] || results[k] == 3) {
      // Never cancelled, or cancelled only after its result was read.
      ASSERT_EQ(out.state, TaskState::kSucceeded) << "task " << i;
      ASSERT_EQ(out.attempts, 1u) << "task " << i;
      ASSERT_EQ(n, 1) << "task " << i;
      if (chosen[k]) ++tally[3];
      continue;
    }
    const auto c = static_cast<CancelOutcome>(results[k]);
    ++tally[static_cast<std::size_t>(results[k])];
    const std::string violation = check_outcome(c, out);
    ASSERT_TRUE(violation.empty()) << "task " << i << " (cancel said " << outcome_name(c) << "): " << violation;
    ASSERT_EQ(n, c == CancelOutcome::kCancelled ? 0 : 1)
        << "task " << i << ": cancel said " << outcome_name(c) << " but the handler ran " << n << " times";
  }
  EXPECT_EQ(claimed, static_cast<std::uint64_t>(handler_runs));
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
  std::fprintf(stderr,
               "[ outcomes ] cancelled %d, requested %d, already finished %d, after the read %d; %d ended cancelled\n",
               tally[0], tally[1], tally[2], tally[3], cancelled_total);
}

// A cancel request that reaches a detached (released) task while its worker
// is completing it: the worker must still free the slot and move on. The
// handler stores a large result, so complete() spends a while copying it
// between reading the state word and freeing the slot; the cancel lands in
// that window in most rounds.
TEST(CancelRaceTest, CancelRacingTheCompletionOfADetachedTaskNeverWedgesTheWorker) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  const int kRounds = testing::scaled(300, 60, 150);
  EngineConfig cfg = testing::small_config();
  cfg.max_payload = (4 << 20) - 64;  // a copy of a few hundred microseconds
  cfg.payload_area = 32 << 20;
  TestSegment seg("cancel-complete", cfg);
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  Client& client = seg.client();

  const std::string big(cfg.max_payload, 'r');
  std::atomic<int> returning{-1};
  auto w = seg.worker({}, false);
  ASSERT_TRUE(w->register_handler("big", [&](TaskContext& ctx) {
                 ctx.set_result(big);
                 returning.store(std::stoi(std::string(ctx.payload())), std::memory_order_release);
               }).is_ok());
  WorkerThread wt(std::move(w));
  SubmitOptions detached;
  detached.detached = true;
  std::array<int, 3> tally{};
  for (int r = 0; r < kRounds; ++r) {
    auto id = client.submit("big", std::to_string(r), detached);
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ASSERT_TRUE(spin_until([&] { return returning.load(std::memory_order_acquire) >= r; })) << "round " << r;
    if (rng() % 4 != 0) {
      for (std::uint64_t i = rng() % 300; i > 0; --i) cpu_pause();
    }
    auto c = client.cancel(*id);
    // The slot may already be free (kNotFound): that is fine too.
    if (c) ++tally[static_cast<int>(*c)];
    const bool moved_on = testing::wait_until([&] {
      const WorkerStats st = wt.worker().stats();
      return st.succeeded + st.cancelled + st.failed >= static_cast<std::uint64_t>(r + 1);
    }, std::chrono::seconds(10));
    if (!moved_on) wt.stop_and_join(std::chrono::seconds(1));  // leaks the stuck thread quickly
    ASSERT_TRUE(moved_on) << "round " << r << ": the worker never finished completing a detached task that "
                          << "was cancelled while it completed (cancel said "
                          << (c ? outcome_name(*c) : c.status().to_string().c_str())
                          << "); worker.cc complete() retries free_slot with a stale state word";
  }
  std::fprintf(stderr, "[ outcomes ] requested %d, already finished %d, cancelled %d\n", tally[1], tally[2], tally[0]);
  EXPECT_EQ(tally[0], 0) << "a running task was reported cancelled before it ran";
  ASSERT_TRUE(wt.stop_and_join());
  EXPECT_EQ(seg.free_slots(), cfg.slots);
}

// A cancel that loses its race, or acts on a stale view of the slot, must
// leave no trace on the task: a pending or running task never shows a finish
// time, and an outcome's times are in order (submit <= start <= finish).
// Cancellers outnumber the cores, so some are preempted between reading the
// slot and acting on it while the tiny slot table is reused many times over.
TEST(CancelRaceTest, LosingOrStaleCancelsLeaveNoTraceOnTasks) {
  const std::uint64_t seed = testing::test_seed();
  // Stops at the first violation; a correct engine uses the whole budget.
  const auto budget = std::chrono::milliseconds(testing::scaled(5000, 3000, 8000));
  EngineConfig cfg = testing::small_config();
  cfg.slots = 8;
  TestSegment seg("cancel-stale", cfg);
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  Client& client = seg.client();
  WorkerThread wt(seg.worker());

  // One producer: every slot is refilled by the same thread. (With two, a
  // slot freed by the worker and refilled by the other producer would be
  // ordered only through the worker's mapping, which TSan does not relate to
  // the client's: see engine_test_util.h.)
  constexpr int kProducers = 1, kCancellers = 6;
  std::array<std::atomic<std::uint64_t>, kProducers> current{};  // each producer's task in flight
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> problems;  // guarded by mu
  const auto report = [&](std::string p) {
    std::lock_guard<std::mutex> lock(mu);
    if (problems.size() < 20) problems.push_back(std::move(p));
    stop.store(true);
  };
  std::atomic<std::uint64_t> rounds{0}, cancels{0}, peeks{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      while (!stop.load()) {
        auto id = client.submit("noop", "");
        if (!id) return report("submit: " + id.status().to_string());
        current[static_cast<std::size_t>(p)].store(id->value);
        auto out = client.wait(*id, kHangTimeoutNs);
        if (!out) return report("wait: " + out.status().to_string());
        if (out->finish_ns < out->submit_ns || (out->start_ns != 0 && out->finish_ns < out->start_ns) ||
            (out->start_ns != 0 && out->start_ns < out->submit_ns)) {
          report("outcome " + std::string(state_name(out->state)) + " with submit " + std::to_string(out->submit_ns) +
                 ", start " + std::to_string(out->start_ns) + ", finish " + std::to_string(out->finish_ns));
        }
        rounds.fetch_add(1);
      }
    });
  }
  for (int c = 0; c < kCancellers; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(seed + static_cast<std::uint64_t>(c));
      std::array<std::uint64_t, kProducers> last{};
      int misses = 0;
      while (!stop.load()) {
        const std::size_t p = rng() % kProducers;
        const std::uint64_t v = current[p].load();
        if (v == 0 || v == last[p]) {  // each canceller cancels each task once
          // Yield a few times, then sleep briefly: six threads that only
          // yield hand a loaded machine's cores to other processes for whole
          // time slices and starve the producer and the worker.
          if (++misses < 16) {
            std::this_thread::yield();
          } else {
            std::this_thread::sleep_for(std::chrono::microseconds(20));
          }
          continue;
        }
        misses = 0;
        last[p] = v;
        for (std::uint64_t i = rng() % 256; i > 0; --i) cpu_pause();
        (void)client.cancel(TaskId{v});
        cancels.fetch_add(1);
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load()) {
      for (auto& cur : current) {
        const std::uint64_t v = cur.load();
        if (v == 0) continue;
        auto info = client.peek(TaskId{v});
        if (!info) continue;
        peeks.fetch_add(1);
        if (info->state == TaskState::kPending && (info->start_ns != 0 || info->finish_ns != 0)) {
          report("pending task " + std::to_string(v) + " with start " + std::to_string(info->start_ns) +
                 ", finish " + std::to_string(info->finish_ns));
        }
        if (info->state == TaskState::kRunning && info->finish_ns != 0) {
          report("running task " + std::to_string(v) + " with finish time " + std::to_string(info->finish_ns));
        }
      }
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + budget;
  while (!stop.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop.store(true);
  for (auto& t : threads) t.join();
  std::fprintf(stderr, "[ counts   ] %llu tasks, %llu cancels, %llu peeks\n",
               static_cast<unsigned long long>(rounds.load()), static_cast<unsigned long long>(cancels.load()),
               static_cast<unsigned long long>(peeks.load()));
  EXPECT_TRUE(problems.empty()) << problems.size() << " tasks carry a losing or stale canceller's finish time, first: "
                                << problems.front() << " (client.cc cancel() stores finish_ns before its CAS)";
  EXPECT_GT(rounds.load(), 0u);
}

}  // namespace
}  // namespace taskring
