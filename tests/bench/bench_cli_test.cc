// End-to-end tests of the taskring-bench binary: flag errors, the JSON
// document, --compare, and the exit status when the accounting finds a
// problem.
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
  for (const char* h : {"submit_to_start", "start_to_complete", "round_trip"}) {
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

}  // namespace
