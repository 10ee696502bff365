// End-to-end tests of the taskring-bench binary: flag errors, the JSON
// document, --compare, the exit status when the accounting finds a problem,
// and the durability scenarios at tiny sizes (their fields and accounting,
// never their timings).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "program_runner.h"

namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr const char* kBench = TASKRING_BENCH_PATH;

taskring::testing::ProgramResult run_bench(const std::vector<std::string>& args) {
  return taskring::testing::run_program(kBench, args, 120s);
}

// A JSON output path unique to this process and test, removed at scope exit.
class TempJson {
 public:
  TempJson() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = ::testing::TempDir() + "trbench-" + std::to_string(getpid()) + "-" + info->name() + ".json";
  }
  ~TempJson() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }
  nlohmann::json read() const {
    std::ifstream in(path_);
    return nlohmann::json::parse(in);
  }

 private:
  std::string path_;
};

TEST(BenchCliTest, BadHandlerNamesFlagAndValue) {
  auto r = run_bench({"--handler", "sleep:5"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--handler"));
  EXPECT_THAT(r.err, HasSubstr("sleep:5"));
  EXPECT_THAT(r.err, HasSubstr("noop or spin:US"));
}

TEST(BenchCliTest, TasksAndDurationExcludeEachOther) {
  auto r = run_bench({"--tasks", "10", "--duration", "1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--duration"));
}

TEST(BenchCliTest, InflightBelowBatchIsRefused) {
  auto r = run_bench({"--tasks", "100", "--batch", "32", "--inflight", "8"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--inflight 8"));
}

TEST(BenchCliTest, UnknownSystemIsRefused) {
  auto r = run_bench({"--system", "redis"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("redis"));
}

TEST(BenchCliTest, JsonHasMetaConfigAndResults) {
  TempJson json;
  auto r = run_bench({"--tasks", "3000", "--producers", "2", "--workers", "2", "--batch", "8", "--json", json.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("taskring"));
  const nlohmann::json doc = json.read();
  for (const char* key : {"commit", "cpu", "cores", "compiler", "build_type"}) {
    EXPECT_TRUE(doc["meta"].contains(key)) << key;
  }
  EXPECT_GE(doc["meta"]["cores"].get<int>(), 1);
  const auto& c = doc["config"];
  EXPECT_EQ(c["producers"], 2);
  EXPECT_EQ(c["workers"], 2);
  EXPECT_EQ(c["tasks"], 3000);
  EXPECT_EQ(c["batch"], 8);
  EXPECT_EQ(c["payload"], 32);
  EXPECT_EQ(c["handler"], "noop");
  ASSERT_EQ(doc["results"].size(), 1u);
  const auto& res = doc["results"][0];
  EXPECT_EQ(res["system"], "taskring");
  EXPECT_EQ(res["submitted"], 3000);
  EXPECT_EQ(res["completed"], 3000);
  EXPECT_EQ(res["lost"], 0);
  EXPECT_EQ(res["duplicates"], 0);
  EXPECT_GT(res["throughput_tps"].get<double>(), 0);
  EXPECT_GT(res["cpu_ns_per_task"].get<double>(), 0);
  EXPECT_FALSE(res.contains("sidecar"));
  for (const char* h : {"submit_to_start", "start_to_complete", "round_trip", "submit_call"}) {
    const auto& l = res["latency_ns"][h];
    EXPECT_LE(l["p50"].get<std::int64_t>(), l["p99"].get<std::int64_t>()) << h;
    EXPECT_LE(l["p99"].get<std::int64_t>(), l["p999"].get<std::int64_t>()) << h;
    EXPECT_LE(l["p999"].get<std::int64_t>(), l["max"].get<std::int64_t>()) << h;
  }
}

TEST(BenchCliTest, CompareRunsEveryBaselineOnTheSameWorkload) {
  TempJson json;
  auto r = run_bench({"--compare", "--tasks", "2000", "--json", json.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json doc = json.read();
  ASSERT_EQ(doc["results"].size(), 4u);
  const char* names[] = {"taskring", "bip_mq", "moodycamel", "tbb"};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(doc["results"][i]["system"], names[i]);
    EXPECT_EQ(doc["results"][i]["completed"], 2000) << names[i];
    EXPECT_THAT(r.out, HasSubstr(names[i]));
  }
}

TEST(BenchCliTest, LostAndDuplicatedTasksFailTheRun) {
  TempJson json;
  auto r = run_bench({"--tasks", "1000", "--inject-loss", "2", "--inject-duplicate", "4", "--drain-timeout", "2",
                      "--json", json.path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("accounting found 2 lost, 4 duplicated"));
  const nlohmann::json doc = json.read();
  EXPECT_EQ(doc["results"][0]["lost"], 2);
  EXPECT_EQ(doc["results"][0]["duplicates"], 4);
  EXPECT_EQ(doc["results"][0]["completed"], 998);
}

// --- durability ---------------------------------------------------------

// The log directories of the durability runs go to the test's temp dir.
std::string log_parent() {
  std::string dir = ::testing::TempDir();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

void expect_latency_fields(const nlohmann::json& l, const std::string& what) {
  for (const char* key : {"p50", "p90", "p99", "p999", "max"}) EXPECT_TRUE(l.contains(key)) << what << " " << key;
  EXPECT_LE(l["p50"].get<std::int64_t>(), l["p99"].get<std::int64_t>()) << what;
  EXPECT_LE(l["p99"].get<std::int64_t>(), l["max"].get<std::int64_t>()) << what;
}

void expect_sidecar_fields(const nlohmann::json& s) {
  for (const char* key : {"fsync", "journal", "events", "records", "writes", "fdatasyncs", "sync_ns_total",
                          "sync_ns_mean", "sync_ns_max", "submits_synced", "tasks_per_fdatasync", "resyncs",
                          "dropped", "holes", "compactions", "cpu_ns", "cpu_ns_per_task"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
}

TEST(BenchCliTest, DurabilityNeedsAScenario) {
  auto r = run_bench({"durability"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("subcommand is required"));
  EXPECT_THAT(r.err, HasSubstr("durability --help"));
}

TEST(BenchCliTest, DurabilityThroughputRefusesJournalOff) {
  auto r = run_bench({"durability", "throughput", "--journal", "off"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--journal"));
  EXPECT_THAT(r.err, HasSubstr("durable or best-effort"));
}

TEST(BenchCliTest, DurabilityAckRefusesAnUnknownFsyncPolicy) {
  auto r = run_bench({"durability", "ack", "--fsync", "sometimes"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--fsync"));
  EXPECT_THAT(r.err, HasSubstr("sometimes"));
  EXPECT_THAT(r.err, HasSubstr("interval:MS"));
}

TEST(BenchCliTest, DurabilityRefusesAMissingLogDir) {
  auto r = run_bench({"durability", "throughput", "--tasks", "100", "--log-dir", "/nonexistent/trbench"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--log-dir '/nonexistent/trbench'"));
}

TEST(BenchCliTest, DurabilityRecoveryRefusesTooFewRecords) {
  auto r = run_bench({"durability", "recovery", "--records", "100", "--slots", "1024", "--live", "10"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--records 100"));
}

TEST(BenchCliTest, DurabilityThroughputRunsWithAndWithoutASidecar) {
  TempJson json;
  auto r = run_bench({"durability", "throughput", "--tasks", "3000", "--batch", "4", "--log-dir", log_parent(),
                      "--json", json.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("journal off"));
  EXPECT_THAT(r.out, HasSubstr("sidecar (never)"));
  const nlohmann::json doc = json.read();
  EXPECT_EQ(doc["scenario"], "throughput");
  EXPECT_EQ(doc["config"]["fsync"], "never");
  EXPECT_EQ(doc["config"]["journal"], "durable");
  EXPECT_EQ(doc["config"]["tasks"], 3000);
  ASSERT_EQ(doc["results"].size(), 2u);
  const auto& off = doc["results"][0];
  const auto& on = doc["results"][1];
  EXPECT_EQ(off["label"], "journal off");
  EXPECT_FALSE(off.contains("sidecar"));
  EXPECT_EQ(on["label"], "sidecar");
  for (const auto* res : {&off, &on}) {
    EXPECT_TRUE((*res)["ok"].get<bool>());
    EXPECT_EQ((*res)["submitted"], 3000);
    EXPECT_EQ((*res)["completed"], 3000);
    EXPECT_EQ((*res)["lost"], 0);
    EXPECT_EQ((*res)["duplicates"], 0);
    EXPECT_EQ((*res)["malformed"], 0);
  }
  ASSERT_TRUE(on.contains("sidecar"));
  const auto& sc = on["sidecar"];
  expect_sidecar_fields(sc);
  EXPECT_EQ(sc["fsync"], "never");
  // Submitted, started, succeeded and freed for every task, all in the log;
  // a durable journal drops nothing. (SidecarStats::events leaves out what
  // the sidecar's final flush read, so only the records are exact here.)
  EXPECT_GE(sc["records"].get<std::uint64_t>(), 4u * 3000);
  EXPECT_LE(sc["events"].get<std::uint64_t>(), 4u * 3000);
  EXPECT_EQ(sc["dropped"], 0);
  EXPECT_EQ(sc["submits_synced"], 3000);
  EXPECT_GT(sc["cpu_ns"].get<std::int64_t>(), 0);
  EXPECT_GT(doc["ratio"].get<double>(), 0);
  EXPECT_EQ(doc["target"]["ratio_at_least"], 0.9);
  EXPECT_TRUE(doc["target"].contains("met"));
}

TEST(BenchCliTest, DurabilityAckReportsTasksPerSyncBesideTheProbe) {
  TempJson json;
  auto r = run_bench({"durability", "ack", "--tasks", "4000", "--producers", "2", "--batch", "64", "--inflight",
                      "128", "--probes", "5", "--log-dir", log_parent(), "--json", json.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tasks per fdatasync"));
  const nlohmann::json doc = json.read();
  EXPECT_EQ(doc["scenario"], "ack");
  EXPECT_EQ(doc["config"]["fsync"], "always");
  EXPECT_TRUE(doc["config"]["durable"].get<bool>());
  const auto& probe = doc["fdatasync_probe"];
  EXPECT_EQ(probe["count"], 5);
  EXPECT_EQ(probe["bytes"], 4096);
  EXPECT_TRUE(probe.contains("filesystem"));
  expect_latency_fields(probe["latency_ns"], "fdatasync probe");
  expect_latency_fields(probe["before_run_ns"], "fdatasync probe before the run");
  expect_latency_fields(probe["after_run_ns"], "fdatasync probe after the run");
  ASSERT_EQ(doc["results"].size(), 1u);
  const auto& res = doc["results"][0];
  EXPECT_EQ(res["completed"], 4000);
  EXPECT_EQ(res["lost"], 0);
  EXPECT_EQ(res["duplicates"], 0);
  expect_latency_fields(doc["durable_ack_ns"], "durable ack");
  EXPECT_EQ(doc["durable_ack_ns"], res["latency_ns"]["submit_call"]);
  const auto& sc = res["sidecar"];
  expect_sidecar_fields(sc);
  EXPECT_EQ(sc["fsync"], "always");
  // Every durable submit returned after its record was synced.
  EXPECT_EQ(sc["submits_synced"], 4000);
  EXPECT_GE(sc["fdatasyncs"].get<std::uint64_t>(), 1u);
  EXPECT_DOUBLE_EQ(doc["tasks_per_fdatasync"].get<double>(), sc["tasks_per_fdatasync"].get<double>());
  EXPECT_GT(doc["ack_p99_over_fdatasync_p99"].get<double>(), 0);
  for (const char* key : {"tasks_per_fdatasync_at_least", "ack_p99_over_fdatasync_p99_at_most",
                          "tasks_per_fdatasync_met", "ack_met"}) {
    EXPECT_TRUE(doc["target"].contains(key)) << key;
  }
}

TEST(BenchCliTest, DurabilityRecoveryFindsTheLiveTasksItWrote) {
  TempJson json;
  auto r = run_bench({"durability", "recovery", "--records", "20000", "--slots", "1024", "--live", "30",
                      "--restore", "--log-dir", log_parent(), "--json", json.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json doc = json.read();
  EXPECT_EQ(doc["scenario"], "recovery");
  EXPECT_TRUE(doc["ok"].get<bool>());
  EXPECT_EQ(doc["log"]["records"], 20000);
  EXPECT_EQ(doc["found"]["records"], 20000);
  const auto& want = doc["log"]["expected_live"];
  const auto& found = doc["found"];
  EXPECT_EQ(found["pending"], want["pending"]);
  EXPECT_EQ(found["running"], want["running"]);
  EXPECT_EQ(found["succeeded"], want["succeeded"]);
  // The 30 kept on purpose and those in flight at the cut.
  EXPECT_GE(found["live"].get<std::uint64_t>(), 30u);
  EXPECT_EQ(found["live"].get<std::uint64_t>(), want["pending"].get<std::uint64_t>() +
                                                    want["running"].get<std::uint64_t>() +
                                                    want["succeeded"].get<std::uint64_t>());
  EXPECT_EQ(found["invalid"], 0);
  const auto& restore = doc["restore"];
  EXPECT_EQ(restore["resubmitted"].get<std::uint64_t>() + restore["results_restored"].get<std::uint64_t>(),
            found["live"].get<std::uint64_t>());
  EXPECT_EQ(restore["skipped"], 0);
  for (const char* key : {"cold_s", "warm_read_s", "warm_s", "recovery_s", "cached_fraction_before_cold"}) {
    EXPECT_TRUE(doc.contains(key)) << key;
  }
  EXPECT_TRUE(doc["target"].contains("met"));
}

}  // namespace
