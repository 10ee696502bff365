// The load harness driven in-process: configuration checks, and the
// accounting of every system on small runs, including runs with a
// deliberately lost or duplicated task.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "load.h"

namespace taskring::bench {
namespace {

LoadConfig small_run(std::uint64_t tasks) {
  LoadConfig c;
  c.producers = 2;
  c.workers = 2;
  c.tasks = tasks;
  c.drain_timeout_ns = 5'000'000'000;
  return c;
}

void expect_error_names(const Status& s, const std::string& flag, const std::string& value) {
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(flag), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(value), std::string::npos) << s.message();
}

TEST(LoadConfigTest, RejectsBadFieldsNamingFlagAndValue) {
  LoadConfig c = small_run(100);
  c.producers = 0;
  expect_error_names(c.validate(), "--producers", "0");
  c = small_run(100);
  c.duration_ns = 1'000'000'000;
  expect_error_names(c.validate(), "--duration", "--tasks");
  c = small_run(0);
  expect_error_names(c.validate(), "--tasks", "--duration");
  c = small_run(100);
  c.payload = 8;
  expect_error_names(c.validate(), "--payload", "8");
  c = small_run(100);
  c.batch = 32;
  c.inflight = 16;
  expect_error_names(c.validate(), "--inflight", "16");
  c = small_run(100);
  c.inject_loss = 64;  // the closed loop's default in-flight limit
  expect_error_names(c.validate(), "--inject-loss", "64");
  c = small_run(100);
  c.inject_duplicate = 51;  // producer 0 has 50 tasks
  expect_error_names(c.validate(), "--inject-duplicate", "51");
  c = small_run(0);
  c.duration_ns = 100'000'000'000;  // 100 s at 10M/s over 2 producers: 5e8 each
  c.rate = 1e7;
  expect_error_names(c.validate(), "--rate", "--duration");
  c.rate = 1e6;  // 5e7 each: fits
  EXPECT_TRUE(c.validate().is_ok()) << c.validate().to_string();
  EXPECT_TRUE(small_run(100).validate().is_ok());
}

TEST(LoadConfigTest, SplitsTasksAndPicksInflightLimits) {
  LoadConfig c = small_run(7);
  c.producers = 3;
  EXPECT_EQ(c.tasks_for_producer(0), 3u);
  EXPECT_EQ(c.tasks_for_producer(1), 2u);
  EXPECT_EQ(c.tasks_for_producer(2), 2u);
  EXPECT_EQ(c.inflight_limit(), 64u);
  c.batch = 100;
  EXPECT_EQ(c.inflight_limit(), 100u);
  c.rate = 1000;
  EXPECT_EQ(c.inflight_limit(), 4096u);
  c.inflight = 200;
  EXPECT_EQ(c.inflight_limit(), 200u);
}

TEST(LoadConfigTest, ParsesHandlers) {
  auto noop = parse_handler("noop");
  ASSERT_TRUE(noop.is_ok());
  EXPECT_EQ(noop->kind, HandlerSpec::Kind::kNoop);
  auto spin = parse_handler("spin:25");
  ASSERT_TRUE(spin.is_ok());
  EXPECT_EQ(spin->kind, HandlerSpec::Kind::kSpin);
  EXPECT_EQ(spin->spin_ns, 25'000);
  EXPECT_EQ(spin->to_string(), "spin:25");
  for (const char* bad : {"", "spin", "spin:", "spin:0", "spin:-3", "spin:1x", "spin:1000001", "sleep:5", "NOOP"}) {
    auto r = parse_handler(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find("noop or spin:US"), std::string::npos) << r.status().message();
  }
}

TEST(LoadConfigTest, ParsesRates) {
  EXPECT_DOUBLE_EQ(*parse_rate("50000"), 50000);
  EXPECT_DOUBLE_EQ(*parse_rate("50k"), 50000);
  EXPECT_DOUBLE_EQ(*parse_rate("1.5M"), 1.5e6);
  EXPECT_DOUBLE_EQ(*parse_rate("0.5"), 0.5);
  for (const char* bad : {"", "0", "k", "-5", "1e6", "2G", "1.2.3", "nan", "1001M"}) {
    auto r = parse_rate(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find("tasks per second"), std::string::npos);
  }
}

TEST(ExecutorTest, RejectsShortPayloadsAndForeignKeys) {
  std::vector<std::uint8_t> counts(2 * 10);
  Executor e(HandlerSpec{}, ExecutionLog(counts.data(), 2, 10));
  Receipt r{};
  EXPECT_FALSE(e.run("short", r));
  TaskHeader h{make_key(2, 0), 5};  // producer 2 of 2
  EXPECT_FALSE(e.run(std::string_view(reinterpret_cast<const char*>(&h), sizeof h), r));
  h = TaskHeader{make_key(1, 10), 5};  // sequence past the capacity
  EXPECT_FALSE(e.run(std::string_view(reinterpret_cast<const char*>(&h), sizeof h), r));
  EXPECT_EQ(e.malformed(), 3u);
  h = TaskHeader{make_key(1, 9), 5};
  std::string payload(std::string_view(reinterpret_cast<const char*>(&h), sizeof h));
  payload += "filler";
  ASSERT_TRUE(e.run(payload, r));
  ASSERT_TRUE(e.run(payload, r));
  EXPECT_EQ(r.key, make_key(1, 9));
  EXPECT_EQ(r.intended_ns, 5);
  EXPECT_LE(r.start_ns, r.end_ns);
  EXPECT_EQ(counts[10 + 9], 2);
  EXPECT_EQ(e.executed(), 2u);
}

TEST(ExecutorTest, SpinHandlerRunsAtLeastItsTime) {
  std::vector<std::uint8_t> counts(1);
  Executor logged(*parse_handler("spin:200"), ExecutionLog(counts.data(), 1, 1));
  TaskHeader h{make_key(0, 0), 0};
  Receipt r{};
  ASSERT_TRUE(logged.run(std::string_view(reinterpret_cast<const char*>(&h), sizeof h), r));
  EXPECT_GE(r.end_ns - r.start_ns, 200'000);
}

class SystemTest : public ::testing::TestWithParam<std::string> {};

void expect_exact(const RunResult& r, std::uint64_t tasks) {
  ASSERT_TRUE(r.status.is_ok()) << r.system << ": " << r.status.to_string();
  EXPECT_EQ(r.submitted, tasks);
  EXPECT_EQ(r.completed, tasks);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.duplicates, 0u);
  EXPECT_EQ(r.malformed, 0u);
  EXPECT_FALSE(r.stalled);
  EXPECT_EQ(r.round_trip.count(), tasks);
  EXPECT_EQ(r.submit_to_start.count(), tasks);
  EXPECT_EQ(r.start_to_complete.count(), tasks);
  EXPECT_GT(r.throughput_tps, 0);
  EXPECT_GT(r.cpu_ns_per_task, 0);
}

TEST_P(SystemTest, ClosedLoopOneTaskApiCompletesEveryTaskOnce) {
  auto system = make_system(GetParam());
  ASSERT_NE(system, nullptr);
  expect_exact(run_load(*system, small_run(20'000)), 20'000);
}

TEST_P(SystemTest, ClosedLoopBatchesCompleteEveryTaskOnce) {
  auto system = make_system(GetParam());
  LoadConfig c = small_run(20'001);  // not a multiple of the batch
  c.batch = 16;
  c.payload = 4096;
  expect_exact(run_load(*system, c), 20'001);
}

TEST_P(SystemTest, ReportsDeliberatelyLostAndDuplicatedTasks) {
  auto system = make_system(GetParam());
  LoadConfig c = small_run(2'000);
  c.inject_loss = 3;
  c.inject_duplicate = 5;
  c.drain_timeout_ns = 2'000'000'000;  // the wait that makes the 3 lost ones count
  const RunResult r = run_load(*system, c);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.submitted, 2'000u);
  EXPECT_EQ(r.lost, 3u);
  EXPECT_EQ(r.completed, 1'997u);
  EXPECT_EQ(r.duplicates, 5u);
  // Every copy of a duplicated task came back and was timed.
  EXPECT_EQ(r.round_trip.count(), 1'997u + 5u);
}

TEST_P(SystemTest, OpenLoopKeepsToTheSchedule) {
  auto system = make_system(GetParam());
  LoadConfig c = small_run(4'000);
  c.rate = 20'000;
  const RunResult r = run_load(*system, c);
  expect_exact(r, 4'000);
  // The last task was not due before 3999 / 20000 s after the start, so the
  // run cannot have ended sooner: the producers kept to the schedule.
  EXPECT_GE(r.elapsed_s, 0.199);
}

INSTANTIATE_TEST_SUITE_P(Systems, SystemTest, ::testing::Values("taskring", "bip_mq", "moodycamel", "tbb"),
                         [](const auto& param_info) { return param_info.param; });

TEST(RunLoadTest, OpenLoopDurationRunIssuesEveryTaskDueBeforeTheEnd) {
  // One worker spinning 100 us per task serves 10k/s; 20k/s are offered, so
  // the producers fall behind. They must still issue every task due before
  // the end, late, instead of stopping at the wall-clock deadline: 2 x 2000.
  auto system = make_taskring_system();
  LoadConfig c = small_run(0);
  c.workers = 1;
  c.rate = 20'000;
  c.duration_ns = 200'000'000;
  c.handler = *parse_handler("spin:100");
  const RunResult r = run_load(*system, c);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.submitted, 4'000u);
  EXPECT_EQ(r.completed, 4'000u);
  EXPECT_EQ(r.lost, 0u);
  // 4000 tasks of 100 us on one worker take 0.4 s: the last ones waited
  // about 0.2 s past their due time, and the round trip shows it.
  EXPECT_GT(r.round_trip.max(), 100'000'000u);
}

TEST(RunLoadTest, DurationRunLosesNothing) {
  auto system = make_taskring_system();
  LoadConfig c = small_run(0);
  c.duration_ns = 300'000'000;
  const RunResult r = run_load(*system, c);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_GT(r.submitted, 0u);
  EXPECT_EQ(r.completed, r.submitted);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.duplicates, 0u);
}

// A system whose producers block inside submit forever, as behind a queue
// lock held by a dead process; its workers block too.
class StuckSystem final : public System {
 public:
  explicit StuckSystem(bool threads) : threads_(threads) {}
  std::string_view name() const override { return "stuck"; }
  bool single_process() const override { return threads_; }
  Status prepare(const LoadConfig&) override { return Status::ok(); }
  Result<std::unique_ptr<ProducerPort>> open_producer(std::uint32_t) override {
    return std::unique_ptr<ProducerPort>(std::make_unique<StuckProducer>());
  }
  Result<std::unique_ptr<WorkerPort>> open_worker(std::uint32_t) override {
    return std::unique_ptr<WorkerPort>(std::make_unique<StuckWorker>());
  }
  void stop_workers(std::span<const pid_t>) override {}
  void cleanup() override {}

 private:
  struct StuckProducer final : ProducerPort {
    Status submit(std::span<const std::string_view>) override {
      for (;;) pause();
    }
    Result<std::size_t> collect(std::span<Receipt>, std::int64_t) override { return std::size_t{0}; }
  };
  struct StuckWorker final : WorkerPort {
    Status run(Executor&) override {
      for (;;) pause();
    }
  };
  bool threads_;
};

class WatchdogTest : public ::testing::TestWithParam<bool> {};

TEST_P(WatchdogTest, ProducerBlockedInsideTheSystemEndsTheRunAndLeavesNoProcess) {
  StuckSystem system(GetParam());
  LoadConfig c = small_run(1'000);
  c.drain_timeout_ns = 200'000'000;  // the watchdog fires after 2 x 0.2 s + 1 s
  const RunResult r = run_load(system, c);
  EXPECT_EQ(r.status.code(), StatusCode::kDeadlineExceeded) << r.status.to_string();
  EXPECT_NE(r.status.message().find("made no progress"), std::string::npos) << r.status.message();
  EXPECT_NE(r.status.message().find("stuck"), std::string::npos) << r.status.message();
  // Every producer and worker process was killed and reaped.
  errno = 0;
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

INSTANTIATE_TEST_SUITE_P(Modes, WatchdogTest, ::testing::Values(false, true),
                         [](const auto& param_info) { return param_info.param ? "threads" : "processes"; });

TEST(RunLoadTest, InvalidConfigFailsBeforeStartingAnything) {
  auto system = make_taskring_system();
  LoadConfig c = small_run(100);
  c.workers = 0;
  const RunResult r = run_load(*system, c);
  EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.submitted, 0u);
}

}  // namespace
}  // namespace taskring::bench
