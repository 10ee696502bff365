// End-to-end tests of the taskring CLI: every test runs the real binary
// (fork/exec, output captured) against a segment named after this process
// and the test, and destroys that segment when it ends, whatever happened.
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "program_runner.h"

namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr const char* kCli = TASKRING_CLI_PATH;
constexpr const char* kPlugin = TASKRING_EXAMPLE_PLUGIN_PATH;

// Small sizes: quick to create, and limits are reachable.
const std::vector<std::string> kSmall = {"--slots",       "256", "--ring-capacity", "64",
                                         "--max-payload", "4K",  "--payload-area",  "1M",
                                         "--max-workers", "8",   "--deque-capacity", "16"};

using RunResult = taskring::testing::ProgramResult;

pid_t spawn(const std::vector<std::string>& args, int out_fd, int err_fd) {
  return taskring::testing::spawn_program(kCli, args, out_fd, err_fd);
}

RunResult run_cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
  return taskring::testing::run_program(kCli, args, timeout);
}

// A CLI process running in the background (a worker), output kept in
// temporary files. Killed at scope exit if still running.
class Background {
 public:
  explicit Background(const std::vector<std::string>& args) {
    out_ = fileno(out_file_);
    err_ = fileno(err_file_);
    pid_ = spawn(args, out_, err_);
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::fclose(out_file_);
    std::fclose(err_file_);
  }

  pid_t pid() const { return pid_; }

  // The exit status, or -1 (and the process killed) if it has not exited
  // within `timeout`.
  int wait(std::chrono::milliseconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return taskring::testing::decode_status(status);
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return -1;
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

  std::string err() const { return read_all(err_); }

 private:
  static std::string read_all(int fd) {
    std::string text;
    char buf[4096];
    off_t offset = 0;
    for (;;) {
      const ssize_t n = pread(fd, buf, sizeof buf, offset);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
      offset += n;
    }
    return text;
  }

  std::FILE* out_file_ = std::tmpfile();
  std::FILE* err_file_ = std::tmpfile();
  int out_ = -1;
  int err_ = -1;
  pid_t pid_ = -1;
};

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// The private (anonymous) resident memory of process `pid`, as the
// supervisor's --max-rss measures it: resident minus shared in statm.
std::int64_t private_memory_bytes(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/statm").c_str(), "r");
  if (f == nullptr) return -1;
  unsigned long long size = 0, resident = 0, shared = 0;
  const int n = std::fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
  std::fclose(f);
  if (n != 3) return -1;
  return static_cast<std::int64_t>(resident - shared) * sysconf(_SC_PAGESIZE);
}

// Polls `done` every 20 ms until it is true or `timeout` passed.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

// The pids of the "worker N (pid P) attached" lines in a worker's or a
// supervisor's stderr.
std::set<int> attached_pids(const std::string& err) {
  std::set<int> pids;
  const std::regex re("\\(pid ([0-9]+)\\) attached");
  for (auto it = std::sregex_iterator(err.begin(), err.end(), re); it != std::sregex_iterator(); ++it) {
    pids.insert(std::stoi((*it)[1]));
  }
  return pids;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    segment_ = "trcli-" + std::to_string(getpid()) + "-" + info->name();
    for (char& c : segment_) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
    }
  }
  void TearDown() override {
    // Destroy through the CLI (closing wakes any worker still running),
    // then remove the name directly in case the CLI could not.
    (void)run_cli({"destroy", "--segment", segment_});
    shm_unlink(("/" + segment_).c_str());
  }

  RunResult cli(std::vector<std::string> args) { return run_cli(args); }

  // `taskring CMD --segment <ours> ARGS...`
  RunResult on_segment(const std::string& cmd, std::vector<std::string> args = {}) {
    std::vector<std::string> all = {cmd, "--segment", segment_};
    all.insert(all.end(), args.begin(), args.end());
    return run_cli(all);
  }

  // Creates the segment with `extra` plus those of kSmall that `extra` does
  // not set (a flag given twice is an error); the caller ASSERTs.
  RunResult init(std::vector<std::string> extra = {}) {
    const auto sets = [&](const std::string& flag) {
      for (const std::string& e : extra) {
        if (e == flag || e.rfind(flag + "=", 0) == 0) return true;
      }
      return false;
    };
    std::vector<std::string> args = extra;
    for (std::size_t i = 0; i + 1 < kSmall.size(); i += 2) {
      if (!sets(kSmall[i])) args.insert(args.end(), {kSmall[i], kSmall[i + 1]});
    }
    return on_segment("init", args);
  }

  std::vector<std::string> worker_args(std::vector<std::string> extra) {
    std::vector<std::string> all = {"worker", "--segment", segment_};
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  }

  nlohmann::json status_json() {
    const RunResult r = on_segment("status", {"--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  // The registered workers whose process exists.
  std::vector<nlohmann::json> alive_workers() {
    std::vector<nlohmann::json> out;
    const nlohmann::json s = status_json();
    if (!s.is_object()) return out;
    for (const auto& w : s["workers"]) {
      if (w["alive"] == true) out.push_back(w);
    }
    return out;
  }

  // Polls status until exactly `n` registered workers are alive.
  bool wait_for_alive_workers(std::size_t n) {
    return eventually([&] { return alive_workers().size() == n; });
  }

  // `get ID --keep --json`, parsed; a null document if it failed.
  nlohmann::json peek_task(const std::string& id) {
    const RunResult r = on_segment("get", {id, "--keep", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  // Polls status until a worker with `pid` is registered.
  bool wait_for_worker(pid_t pid) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      const nlohmann::json s = status_json();
      if (s.is_object()) {
        for (const auto& w : s["workers"]) {
          if (w["pid"] == pid) return true;
        }
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::string segment_;
};

// Matches "<id> <state>[ <value>]".
::testing::AssertionResult is_result_line(const std::string& line, const std::string& state,
                                          const std::string& value) {
  const std::regex re("^([0-9]+) " + state + (value.empty() ? "" : " " + value) + "$");
  if (std::regex_match(line, re)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << line << "' is not '<id> " << state << " " << value << "'";
}

// ---- usage errors ----

TEST_F(CliTest, InitRejectsRingCapacityThree) {
  const RunResult r = init({"--ring-capacity", "3"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--ring-capacity"));
  EXPECT_THAT(r.err, HasSubstr("ring_capacity 3"));
  EXPECT_THAT(r.err, HasSubstr("power of two"));
  EXPECT_EQ(on_segment("status").code, 1) << "a rejected init must not create the segment";
}

TEST_F(CliTest, InitRejectsZeroSlots) {
  const RunResult r = init({"--slots", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--slots"));
  EXPECT_THAT(r.err, HasSubstr("slots 0"));
  EXPECT_EQ(on_segment("status").code, 1);
}

TEST_F(CliTest, InitRejectsByteSizeWithJunkSuffix) {
  const RunResult r = init({"--max-payload", "12x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("error: --max-payload"));
  EXPECT_THAT(r.err, HasSubstr("'12x'"));
  EXPECT_EQ(on_segment("status").code, 1);
}

TEST_F(CliTest, InitRejectsNegativeByteSize) {
  const RunResult r = init({"--payload-area=-4096"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--payload-area"));
  EXPECT_THAT(r.err, HasSubstr("'-4096'"));
}

TEST_F(CliTest, InitRejectsOverflowingByteSize) {
  // 2^34 GiB = 2^64 bytes: one more than fits.
  const RunResult r = init({"--payload-area", "17179869184G"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("'17179869184G'"));
  EXPECT_THAT(r.err, HasSubstr("too large"));
}

TEST_F(CliTest, InitRejectsEmptyQueueName) {
  const RunResult r = init({"--queues", "a,,b"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--queues"));
  EXPECT_THAT(r.err, HasSubstr("queue name ''"));
}

TEST_F(CliTest, SubmitRejectsUnknownPriority) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--priority", "urgent"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--priority"));
  EXPECT_THAT(r.err, HasSubstr("'urgent'"));
  EXPECT_EQ(status_json()["queues"][0]["submitted"], 0);
}

TEST_F(CliTest, SubmitRejectsUnknownQueue) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--queue", "nope"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--queue"));
  EXPECT_THAT(r.err, HasSubstr("'nope'"));
}

TEST_F(CliTest, GetRejectsMalformedTaskId) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("get", {"12abc"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("'12abc'"));
}

TEST_F(CliTest, WorkerRejectsMissingPluginFile) {
  ASSERT_EQ(init().code, 0);
  const std::string missing = "/nonexistent-dir/" + segment_ + ".so";
  const RunResult r = run_cli(worker_args({"--plugin", missing, "--tasks", "1"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr(missing));
}

TEST_F(CliTest, WorkerRejectsPluginWithoutRegisterFunction) {
  ASSERT_EQ(init().code, 0);
  // libc is a loadable shared object that certainly lacks the symbol.
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&::getpid), &info), 0);
  const RunResult r = run_cli(worker_args({"--plugin", info.dli_fname, "--tasks", "1"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("taskring_register_handlers"));
  EXPECT_THAT(r.err, HasSubstr(info.dli_fname));
}

TEST_F(CliTest, StatusOfMissingSegmentNamesIt) {
  const RunResult r = on_segment("status");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("'" + segment_ + "'"));
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
}

TEST_F(CliTest, VersionFlagPrintsVersion) {
  const RunResult r = cli({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(std::regex_search(r.out, std::regex("^taskring [0-9]+\\.[0-9]+"))) << r.out;
}

TEST_F(CliTest, EveryCommandHasHelp) {
  for (const char* cmd : {"init", "destroy", "status", "drain", "recover", "submit", "get", "cancel", "worker"}) {
    const RunResult r = cli({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_THAT(r.out, HasSubstr("taskring " + std::string(cmd))) << cmd;
    EXPECT_THAT(r.out, HasSubstr("--segment")) << cmd;
  }
}

TEST_F(CliTest, MissingCommandIsUsageError) {
  const RunResult r = cli({});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("Usage"));
}

// ---- segments ----

TEST_F(CliTest, InitStatusDestroyRoundTrip) {
  const RunResult created = init({"--queues", "alpha,beta"});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("'" + segment_ + "'"));

  const RunResult status = on_segment("status");
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr(segment_));
  EXPECT_THAT(status.out, HasSubstr("slots 256"));
  EXPECT_TRUE(std::regex_search(status.out, std::regex("\nalpha +0 +0 +0 +0 +0 +0 +0 +0 +0 +0\n"))) << status.out;
  EXPECT_TRUE(std::regex_search(status.out, std::regex("\nbeta +0 +0 +0 +0 +0 +0 +0 +0 +0 +0\n"))) << status.out;
  EXPECT_THAT(status.out, HasSubstr("no workers attached"));

  const RunResult destroyed = on_segment("destroy");
  EXPECT_EQ(destroyed.code, 0) << destroyed.err;
  const RunResult after = on_segment("status");
  EXPECT_EQ(after.code, 1);
  EXPECT_THAT(after.err, HasSubstr("does not exist"));
}

TEST_F(CliTest, InitRefusesExistingSegmentWithoutForce) {
  ASSERT_EQ(init().code, 0);
  const RunResult again = init();
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr("'" + segment_ + "'"));
  EXPECT_THAT(again.err, HasSubstr("already exists"));
}

TEST_F(CliTest, InitForceReplacesExistingSegment) {
  ASSERT_EQ(init({"--queues", "first"}).code, 0);
  const RunResult replaced = init({"--queues", "second", "--force"});
  ASSERT_EQ(replaced.code, 0) << replaced.err;
  EXPECT_EQ(status_json()["queues"][0]["name"], "second");
}

TEST_F(CliTest, InitAcceptsByteSizeSuffixes) {
  const RunResult r = init({"--max-payload", "2k", "--payload-area", "2MiB"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json s = status_json();
  EXPECT_EQ(s["config"]["max_payload"], 2048);
  EXPECT_EQ(s["config"]["payload_area"], 2 * 1024 * 1024);
}

// ---- tasks through a worker ----

TEST_F(CliTest, SubmitWaitReturnsEchoPayloads) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({"--tasks", "3"}));

  const RunResult two = on_segment("submit", {"--task", "echo", "--payload", "hello world", "--count", "2", "--wait"});
  ASSERT_EQ(two.code, 0) << two.err;
  const std::vector<std::string> got = lines(two.out);
  ASSERT_EQ(got.size(), 2u) << two.out;
  EXPECT_TRUE(is_result_line(got[0], "succeeded", "hello world"));
  EXPECT_TRUE(is_result_line(got[1], "succeeded", "hello world"));
  EXPECT_NE(got[0], got[1]) << "two tasks must have two ids";

  const RunResult one = on_segment("submit", {"--task", "echo", "--payload", "second", "--wait"});
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_TRUE(is_result_line(trim(one.out), "succeeded", "second"));

  EXPECT_EQ(worker.wait(), 0) << worker.err();
  EXPECT_THAT(worker.err(), HasSubstr("succeeded 3"));
}

TEST_F(CliTest, SubmitWaitQuietPrintsSummaryOnly) {
  // More tasks than slots: --wait must read results while it submits.
  ASSERT_EQ(init({"--slots", "8"}).code, 0);
  Background worker(worker_args({"--tasks", "100"}));
  const RunResult r =
      on_segment("submit", {"--task", "echo", "--count", "100", "--batch", "16", "--wait", "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> got = lines(r.out);
  ASSERT_EQ(got.size(), 1u) << r.out;
  EXPECT_THAT(got[0], HasSubstr("100 tasks: 100 succeeded, 0 failed, 0 cancelled, 0 timed out"));
  EXPECT_EQ(worker.wait(), 0) << worker.err();
}

TEST_F(CliTest, FailHandlerGivesFailedStateAndExitCode) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({"--tasks", "1"}));
  const RunResult r = on_segment("submit", {"--task", "fail", "--payload", "boom", "--wait"});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(is_result_line(trim(r.out), "failed", "boom"));
  EXPECT_EQ(worker.wait(), 0) << worker.err();
  EXPECT_THAT(worker.err(), HasSubstr("failed 1"));
}

TEST_F(CliTest, PluginUpperHandlerUpperCasesPayload) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({"--plugin", kPlugin, "--tasks", "1"}));
  const RunResult r = on_segment("submit", {"--task", "upper", "--payload", "Hello, taskring", "--wait"});
  ASSERT_EQ(r.code, 0) << r.err << worker.err();
  EXPECT_TRUE(is_result_line(trim(r.out), "succeeded", "HELLO, TASKRING"));
  EXPECT_EQ(worker.wait(), 0) << worker.err();
  EXPECT_THAT(worker.err(), HasSubstr("upper"));
}

TEST_F(CliTest, StatusJsonHasQueueCountersAfterRun) {
  ASSERT_EQ(init({"--queues", "fast,slow"}).code, 0);
  Background worker(worker_args({"--tasks", "4"}));
  const RunResult ok = on_segment("submit", {"--task", "echo", "--queue", "fast", "--count", "3", "--wait", "--quiet"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  const RunResult bad = on_segment("submit", {"--task", "fail", "--queue", "slow", "--priority", "high", "--wait"});
  EXPECT_EQ(bad.code, 3) << bad.err;
  ASSERT_EQ(worker.wait(), 0) << worker.err();

  const nlohmann::json s = status_json();
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["segment"], segment_);
  ASSERT_EQ(s["queues"].size(), 2u);
  const nlohmann::json& fast = s["queues"][0];
  EXPECT_EQ(fast["name"], "fast");
  EXPECT_EQ(fast["submitted"], 3);
  EXPECT_EQ(fast["claimed"], 3);
  EXPECT_EQ(fast["succeeded"], 3);
  EXPECT_EQ(fast["failed"], 0);
  EXPECT_EQ(fast["cancelled"], 0);
  const nlohmann::json& slow = s["queues"][1];
  EXPECT_EQ(slow["name"], "slow");
  EXPECT_EQ(slow["submitted"], 1);
  EXPECT_EQ(slow["claimed"], 1);
  EXPECT_EQ(slow["succeeded"], 0);
  EXPECT_EQ(slow["failed"], 1);
  for (const char* p : {"critical", "high", "normal", "low"}) {
    EXPECT_EQ(fast["depth"][p], 0) << p;
    EXPECT_EQ(slow["depth"][p], 0) << p;
  }
  EXPECT_EQ(s["tasks"]["pending"], 0);
  EXPECT_EQ(s["tasks"]["running"], 0);
}

TEST_F(CliTest, GetKeepLeavesResultForALaterGet) {
  ASSERT_EQ(init().code, 0);
  const RunResult submitted = on_segment("submit", {"--task", "echo", "--payload", "kept"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  Background worker(worker_args({"--tasks", "1"}));
  ASSERT_EQ(worker.wait(), 0) << worker.err();

  const RunResult kept = on_segment("get", {id, "--keep", "--json"});
  ASSERT_EQ(kept.code, 0) << kept.err;
  const nlohmann::json k = nlohmann::json::parse(kept.out);
  EXPECT_EQ(k["id"], id);
  EXPECT_EQ(k["state"], "succeeded");
  EXPECT_EQ(k["value"], "kept");
  EXPECT_EQ(k["consumed"], false);

  const RunResult read = on_segment("get", {id, "--json"});
  ASSERT_EQ(read.code, 0) << read.err;
  const nlohmann::json g = nlohmann::json::parse(read.out);
  EXPECT_EQ(g["value"], "kept");
  EXPECT_EQ(g["consumed"], true);

  const RunResult gone = on_segment("get", {id});
  EXPECT_EQ(gone.code, 1);
  EXPECT_THAT(gone.err, HasSubstr(id));
}

TEST_F(CliTest, CancelPendingTaskReportsCancelled) {
  ASSERT_EQ(init().code, 0);
  const RunResult submitted = on_segment("submit", {"--task", "echo", "--payload", "never"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  ASSERT_TRUE(std::regex_match(id, std::regex("[0-9]+"))) << id;

  const RunResult cancelled = on_segment("cancel", {id});
  ASSERT_EQ(cancelled.code, 0) << cancelled.err;
  EXPECT_THAT(cancelled.out, HasSubstr(id + " cancelled"));

  const RunResult got = on_segment("get", {id, "--keep"});
  ASSERT_EQ(got.code, 0) << got.err;
  EXPECT_TRUE(std::regex_search(got.out, std::regex("\nstate +cancelled\n"))) << got.out;
  EXPECT_EQ(status_json()["tasks"]["cancelled"], 1);
}

TEST_F(CliTest, CancelRunningTaskRequestsCancel) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({"--tasks", "1"}));
  // sleep polls its cancel flag, so a requested cancel ends it early.
  const RunResult submitted = on_segment("submit", {"--task", "sleep", "--payload", "60000"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::string state;
  while (state != "running" && std::chrono::steady_clock::now() < deadline) {
    const RunResult peek = on_segment("get", {id, "--keep", "--json"});
    ASSERT_EQ(peek.code, 0) << peek.err;
    state = nlohmann::json::parse(peek.out)["state"];
  }
  ASSERT_EQ(state, "running");

  const RunResult cancelled = on_segment("cancel", {id});
  ASSERT_EQ(cancelled.code, 0) << cancelled.err;
  EXPECT_THAT(cancelled.out, HasSubstr(id + " cancel-requested"));
  EXPECT_EQ(worker.wait(), 0) << worker.err();
  const RunResult got = on_segment("get", {id, "--json"});
  ASSERT_EQ(got.code, 0) << got.err;
  EXPECT_EQ(nlohmann::json::parse(got.out)["state"], "cancelled");
}

TEST_F(CliTest, PayloadFileIsSentAndResultEscaped) {
  ASSERT_EQ(init().code, 0);
  const std::string path = ::testing::TempDir() + segment_ + ".payload";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("line one\nback\\slash", f);
  std::fclose(f);
  Background worker(worker_args({"--tasks", "1"}));
  const RunResult r = on_segment("submit", {"--task", "echo", "--payload-file", path, "--wait"});
  std::remove(path.c_str());
  ASSERT_EQ(r.code, 0) << r.err;
  // One line per task: the newline and the backslash come back escaped.
  EXPECT_TRUE(is_result_line(trim(r.out), "succeeded", "line one\\\\nback\\\\\\\\slash")) << r.out;
  EXPECT_EQ(worker.wait(), 0) << worker.err();
}

TEST_F(CliTest, SubmitNoBlockFailsWhenSlotsAreFull) {
  ASSERT_EQ(init({"--slots", "1"}).code, 0);
  ASSERT_EQ(on_segment("submit", {"--task", "echo"}).code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--no-block"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("submitted 0 of 1"));
  EXPECT_THAT(r.err, HasSubstr("hint:"));
}

TEST_F(CliTest, SubmitWaitTimeoutReportsUnfinishedTask) {
  ASSERT_EQ(init().code, 0);  // no worker: the task stays pending
  const RunResult r = on_segment("submit", {"--task", "echo", "--wait", "--timeout", "0.2"});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(is_result_line(trim(r.out), "timeout", "")) << r.out;
  EXPECT_THAT(r.err, HasSubstr("taskring get --segment " + segment_));
}

TEST_F(CliTest, WorkerStopsCleanlyOnSigterm) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({}));
  ASSERT_TRUE(wait_for_worker(worker.pid())) << worker.err();
  ASSERT_EQ(kill(worker.pid(), SIGTERM), 0);
  EXPECT_EQ(worker.wait(), 0) << worker.err();
  EXPECT_THAT(worker.err(), HasSubstr("stopped by SIGTERM"));
}

TEST_F(CliTest, DestroyStopsRunningWorker) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({}));
  ASSERT_TRUE(wait_for_worker(worker.pid())) << worker.err();
  ASSERT_EQ(on_segment("destroy").code, 0);
  EXPECT_EQ(worker.wait(), 0) << worker.err();
  EXPECT_THAT(worker.err(), HasSubstr("segment is closing"));
}

// ---- task lifecycle: attempts, crashes, recovery ----

TEST_F(CliTest, SubmitRejectsMaxAttemptsZero) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--max-attempts", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-attempts"));
  EXPECT_THAT(r.err, HasSubstr("'0'"));
  EXPECT_THAT(r.err, HasSubstr("between 1 and 255"));
  EXPECT_EQ(status_json()["queues"][0]["submitted"], 0);
}

TEST_F(CliTest, SubmitRejectsMaxAttemptsOverLimit) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--max-attempts", "256"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-attempts"));
  EXPECT_THAT(r.err, HasSubstr("'256'"));
}

TEST_F(CliTest, GetShowsAttemptsOfMaxAttemptsAndNoCrash) {
  ASSERT_EQ(init().code, 0);
  const RunResult submitted = on_segment("submit", {"--task", "echo", "--payload", "x", "--max-attempts", "5"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  Background worker(worker_args({"--tasks", "1"}));
  ASSERT_EQ(worker.wait(), 0) << worker.err();

  const nlohmann::json j = peek_task(id);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["state"], "succeeded");
  EXPECT_EQ(j["attempts"], 1);
  EXPECT_EQ(j["max_attempts"], 5);
  EXPECT_EQ(j["crashes"], 0);
  EXPECT_TRUE(j["last_crash"].is_null()) << j.dump();

  const RunResult text = on_segment("get", {id});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nattempts +1 of 5\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\ncrashes +0\n"))) << text.out;
  EXPECT_THAT(text.out, ::testing::Not(HasSubstr("last crash")));
}

TEST_F(CliTest, RecoverOnIdleSegmentHasNothingToDo) {
  ASSERT_EQ(init().code, 0);
  const RunResult text = on_segment("recover");
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("recovered segment '" + segment_ + "': nothing to do"));
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nrunning tasks requeued +0\n"))) << text.out;

  const RunResult json = on_segment("recover", {"--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["segment"], segment_);
  EXPECT_EQ(j["audit"], true);
  EXPECT_EQ(j["total"], 0);
  for (const char* key : {"workers_recovered", "tasks_requeued", "tasks_failed", "deque_tasks_returned",
                          "reserved_slots_freed", "results_expired", "lost_tasks_requeued", "lost_refs_dropped",
                          "free_slots_relinked"}) {
    EXPECT_EQ(j[key], 0) << key;
  }

  const RunResult quick = on_segment("recover", {"--no-audit", "--json"});
  ASSERT_EQ(quick.code, 0) << quick.err;
  EXPECT_EQ(nlohmann::json::parse(quick.out)["audit"], false);
}

TEST_F(CliTest, RecoverOfMissingSegmentFails) {
  const RunResult r = on_segment("recover");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("'" + segment_ + "'"));
}

TEST_F(CliTest, DrainOfMissingSegmentFails) {
  const RunResult r = on_segment("drain");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("'" + segment_ + "'"));
}

TEST_F(CliTest, DrainStopsSingleWorker) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({}));
  ASSERT_TRUE(wait_for_worker(worker.pid())) << worker.err();
  const RunResult drained = on_segment("drain");
  ASSERT_EQ(drained.code, 0) << drained.err;
  EXPECT_THAT(drained.out, HasSubstr("drained segment '" + segment_ + "': 1 worker attached now"));
  EXPECT_EQ(worker.wait(), 0) << worker.err();
  EXPECT_THAT(worker.err(), HasSubstr("the segment was drained"));
}

// ---- worker --processes: flag validation ----

TEST_F(CliTest, WorkerRejectsZeroProcesses) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "0"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--processes"));
  EXPECT_THAT(r.err, HasSubstr("'0'"));
  EXPECT_THAT(r.err, HasSubstr("between 1 and 254"));
}

TEST_F(CliTest, WorkerRejectsMoreProcessesThanRegistryEntries) {
  ASSERT_EQ(init({"--max-workers", "2"}).code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "3"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--processes"));
  EXPECT_THAT(r.err, HasSubstr("'3'"));
  EXPECT_THAT(r.err, HasSubstr("--max-workers"));
  EXPECT_TRUE(status_json()["workers"].empty()) << "nothing may start";
}

TEST_F(CliTest, WorkerRejectsMaxTasksPerChildWithoutProcesses) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--max-tasks-per-child", "10"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-tasks-per-child"));
  EXPECT_THAT(r.err, HasSubstr("--processes"));
}

TEST_F(CliTest, WorkerRejectsZeroMaxTasksPerChild) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "1", "--max-tasks-per-child", "0"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-tasks-per-child"));
  EXPECT_THAT(r.err, HasSubstr("'0'"));
}

TEST_F(CliTest, WorkerRejectsMaxRssWithoutProcesses) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--max-rss", "512"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-rss"));
  EXPECT_THAT(r.err, HasSubstr("--processes"));
}

TEST_F(CliTest, WorkerRejectsNoWatchdogWithoutProcesses) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--no-watchdog"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--no-watchdog"));
  EXPECT_THAT(r.err, HasSubstr("--processes"));
}

TEST_F(CliTest, WorkerRejectsMaxRssWithUnit) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "1", "--max-rss", "512M"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-rss"));
  EXPECT_THAT(r.err, HasSubstr("'512M'"));
}

TEST_F(CliTest, WorkerRejectsTasksWithProcesses) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "2", "--tasks", "5"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--tasks"));
  EXPECT_THAT(r.err, HasSubstr("--processes"));
}

TEST_F(CliTest, WorkerRejectsCpuListWithoutProcesses) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--cpu", "0,0"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--cpu"));
  EXPECT_THAT(r.err, HasSubstr("'0,0'"));
  EXPECT_THAT(r.err, HasSubstr("--processes"));
  EXPECT_TRUE(status_json()["workers"].empty());
}

TEST_F(CliTest, WorkerRejectsCpuListWithJunkEntry) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "2", "--cpu", "0,x"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--cpu"));
  EXPECT_THAT(r.err, HasSubstr("'0,x'"));
  EXPECT_THAT(r.err, HasSubstr("'x'"));
}

TEST_F(CliTest, WorkerRejectsCpuListEntryOverCpuCount) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "2", "--cpu", "0,100000"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--cpu"));
  EXPECT_THAT(r.err, HasSubstr("cpu 100000"));
  EXPECT_TRUE(status_json()["workers"].empty()) << "nothing may start";
}

TEST_F(CliTest, SupervisorOfMissingSegmentFails) {
  const RunResult r = run_cli(worker_args({"--processes", "2"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("'" + segment_ + "'"));
}

TEST_F(CliTest, SupervisorExitsWithFirstWorkersUsageError) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = run_cli(worker_args({"--processes", "2", "--queues", "nope"}));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("'nope'"));
  EXPECT_THAT(r.err, HasSubstr("before it was ready"));
  EXPECT_EQ(attached_pids(r.err).size(), 0u) << r.err;
}

// ---- worker --processes: supervision ----

TEST_F(CliTest, SupervisorRunsWorkersThatProcessTasks) {
  ASSERT_EQ(init().code, 0);
  Background supervisor(worker_args({"--processes", "2", "--cpu", "0,0"}));
  // A worker records its CPU when it starts running, just after it registers.
  ASSERT_TRUE(eventually([&] {
    const std::vector<nlohmann::json> alive = alive_workers();
    return alive.size() == 2 && alive[0]["cpu"] == 0 && alive[1]["cpu"] == 0;
  })) << supervisor.err();
  for (const nlohmann::json& w : alive_workers()) {
    EXPECT_NE(w["pid"], supervisor.pid()) << "the supervisor itself is no worker";
  }

  const RunResult r = on_segment("submit", {"--task", "echo", "--count", "40", "--wait", "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err << supervisor.err();
  EXPECT_THAT(r.out, HasSubstr("40 tasks: 40 succeeded"));
  EXPECT_EQ(attached_pids(supervisor.err()).size(), 2u) << supervisor.err();

  ASSERT_EQ(kill(supervisor.pid(), SIGTERM), 0);
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
}

TEST_F(CliTest, SupervisorStopsEveryWorkerOnSigterm) {
  ASSERT_EQ(init().code, 0);
  Background supervisor(worker_args({"--processes", "2", "--no-watchdog"}));
  ASSERT_TRUE(wait_for_alive_workers(2)) << supervisor.err();
  ASSERT_EQ(kill(supervisor.pid(), SIGTERM), 0);
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
  const std::string err = supervisor.err();
  EXPECT_THAT(err, HasSubstr("no watchdog"));
  EXPECT_THAT(err, HasSubstr("supervisor: stopped by SIGTERM"));
  // Each child says how it stopped: the supervisor forwarded the signal.
  const std::regex stopped("worker [0-9]+: claimed [^\n]*stopped by SIGTERM\n");
  EXPECT_EQ(std::distance(std::sregex_iterator(err.begin(), err.end(), stopped), std::sregex_iterator()), 2) << err;
  EXPECT_TRUE(status_json()["workers"].empty()) << "every worker deregistered";
}

TEST_F(CliTest, SupervisorReplacesKilledWorkerAndItsTaskCompletes) {
  ASSERT_EQ(init().code, 0);
  Background supervisor(worker_args({"--processes", "2"}));
  ASSERT_TRUE(wait_for_alive_workers(2)) << supervisor.err();

  // A task long enough to be running when its worker is killed.
  const RunResult submitted = on_segment("submit", {"--task", "sleep", "--payload", "3000"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  int owner = -1;
  ASSERT_TRUE(eventually([&] {
    const nlohmann::json t = peek_task(id);
    if (!t.is_object() || t["state"] != "running") return false;
    owner = t["owner_worker"];
    return owner >= 0;
  })) << supervisor.err();
  int victim = 0;
  const nlohmann::json status = status_json();
  for (const nlohmann::json& w : status["workers"]) {
    if (w["index"] == owner) victim = w["pid"];
  }
  ASSERT_GT(victim, 0) << "no registered worker has index " << owner;
  ASSERT_EQ(kill(victim, SIGKILL), 0);

  // The task is put back and run again, to success.
  nlohmann::json done;
  ASSERT_TRUE(eventually(
      [&] {
        done = peek_task(id);
        return done.is_object() && done["state"] != "pending" && done["state"] != "running";
      },
      120s))
      << supervisor.err();
  EXPECT_EQ(done["state"], "succeeded") << done.dump();
  EXPECT_EQ(done["attempts"], 2) << done.dump();
  EXPECT_EQ(done["crashes"], 1) << done.dump();
  EXPECT_EQ(done["last_crash"]["pid"], victim) << done.dump();
  EXPECT_EQ(done["last_crash"]["kind"], "signaled") << done.dump();
  EXPECT_EQ(done["last_crash"]["code"], SIGKILL) << done.dump();
  EXPECT_THAT(done["last_crash"]["description"].get<std::string>(), HasSubstr("SIGKILL"));

  // get in text says the same.
  const RunResult text = on_segment("get", {id});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\ncrashes +1\n"))) << text.out;
  EXPECT_THAT(text.out, HasSubstr("last crash pid " + std::to_string(victim) + ": killed by signal 9 (SIGKILL)"));

  // The supervisor reported the death and started a replacement.
  EXPECT_TRUE(eventually([&] {
    const std::vector<nlohmann::json> alive = alive_workers();
    return alive.size() == 2 && alive[0]["pid"] != victim && alive[1]["pid"] != victim;
  })) << supervisor.err();
  const std::string err = supervisor.err();
  EXPECT_THAT(err, HasSubstr("worker pid " + std::to_string(victim)));
  EXPECT_THAT(err, HasSubstr("killed by signal 9 (SIGKILL)"));
  EXPECT_THAT(err, HasSubstr("starting a replacement"));
  EXPECT_EQ(attached_pids(err).size(), 3u) << err;

  ASSERT_EQ(kill(supervisor.pid(), SIGTERM), 0);
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
}

TEST_F(CliTest, SupervisorExitsAfterDrain) {
  ASSERT_EQ(init().code, 0);
  Background supervisor(worker_args({"--processes", "2"}));
  ASSERT_TRUE(wait_for_alive_workers(2)) << supervisor.err();
  const RunResult drained = on_segment("drain");
  ASSERT_EQ(drained.code, 0) << drained.err;
  EXPECT_THAT(drained.out, HasSubstr("2 workers attached now"));
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
  const std::string err = supervisor.err();
  EXPECT_THAT(err, HasSubstr("supervisor: the segment was drained"));
  EXPECT_EQ(attached_pids(err).size(), 2u) << "drained workers are not replaced: " << err;
  EXPECT_TRUE(status_json()["workers"].empty());
}

TEST_F(CliTest, SupervisorRecyclesWorkersAfterMaxTasksPerChild) {
  ASSERT_EQ(init().code, 0);
  Background supervisor(worker_args({"--processes", "1", "--max-tasks-per-child", "1"}));
  for (int i = 0; i < 3; ++i) {
    const RunResult r = on_segment("submit", {"--task", "echo", "--payload", std::to_string(i), "--wait"});
    ASSERT_EQ(r.code, 0) << r.err << supervisor.err();
    EXPECT_TRUE(is_result_line(trim(r.out), "succeeded", std::to_string(i)));
  }
  // Each task was the whole life of one worker process.
  EXPECT_TRUE(eventually([&] { return attached_pids(supervisor.err()).size() >= 4; })) << supervisor.err();
  EXPECT_THAT(supervisor.err(), HasSubstr("processed --max-tasks-per-child 1"));
  ASSERT_EQ(kill(supervisor.pid(), SIGTERM), 0);
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
  EXPECT_THAT(supervisor.err(), HasSubstr("3 recycled"));
}

TEST_F(CliTest, SupervisorGivesUpWhenWorkersKeepFailingAtStartup) {
  // Two registry entries: an outside worker takes one, the supervisor's
  // first child the other, and its second child can never attach.
  ASSERT_EQ(init({"--max-workers", "2"}).code, 0);
  Background outsider(worker_args({}));
  ASSERT_TRUE(wait_for_worker(outsider.pid())) << outsider.err();
  const RunResult r = run_cli(worker_args({"--processes", "2"}), 120s);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("registry"));
  EXPECT_THAT(r.err, HasSubstr("keep failing at start-up"));
  EXPECT_THAT(r.err, HasSubstr("supervisor: gave up"));
  // The child that did start was stopped, the outsider left alone.
  const std::vector<nlohmann::json> alive = alive_workers();
  ASSERT_EQ(alive.size(), 1u);
  EXPECT_EQ(alive[0]["pid"], outsider.pid());
}

TEST_F(CliTest, SupervisorReplacesWorkerOverMaxRss) {
  // Room for one 8 MiB payload and its 8 MiB echo.
  ASSERT_EQ(init({"--max-payload", "8M", "--payload-area", "32M"}).code, 0);
  // What an idle worker uses depends on the build (sanitizers add much), so
  // the limit is set a few MiB above one measured here.
  std::int64_t idle_bytes = -1;
  {
    Background probe(worker_args({}));
    ASSERT_TRUE(wait_for_worker(probe.pid())) << probe.err();
    idle_bytes = private_memory_bytes(probe.pid());
    ASSERT_EQ(kill(probe.pid(), SIGTERM), 0);
    ASSERT_EQ(probe.wait(), 0) << probe.err();
  }
  ASSERT_GT(idle_bytes, 0);
  const std::int64_t limit_mib = idle_bytes / (1 << 20) + 4;

  Background supervisor(worker_args({"--processes", "1", "--max-rss", std::to_string(limit_mib)}));
  ASSERT_TRUE(wait_for_alive_workers(1)) << supervisor.err();
  const int first = alive_workers().at(0)["pid"];
  // echo copies the payload into its result buffer, which the worker keeps
  // for its next task: 8 MiB more private memory, past the limit.
  const std::string path = ::testing::TempDir() + segment_ + ".payload";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 8; ++i) std::fwrite(chunk.data(), 1, chunk.size(), f);
    std::fclose(f);
  }
  const RunResult r = on_segment("submit", {"--task", "echo", "--payload-file", path, "--wait", "--quiet"});
  std::remove(path.c_str());
  ASSERT_EQ(r.code, 0) << r.err << supervisor.err();

  EXPECT_TRUE(eventually([&] {
    const std::vector<nlohmann::json> alive = alive_workers();
    return alive.size() == 1 && alive[0]["pid"] != first;
  })) << supervisor.err();
  const std::string err = supervisor.err();
  EXPECT_THAT(err, HasSubstr("worker pid " + std::to_string(first) + " uses"));
  EXPECT_THAT(err, HasSubstr("over --max-rss " + std::to_string(limit_mib) + " MiB"));
  EXPECT_EQ(attached_pids(err).size(), 2u) << err;
  ASSERT_EQ(kill(supervisor.pid(), SIGTERM), 0);
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
  EXPECT_THAT(supervisor.err(), HasSubstr("1 stopped over --max-rss"));
}

// ---- delays, time limits and result retention ----

TEST_F(CliTest, SubmitRejectsDelayWithoutUnit) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--delay", "300"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("error: --delay"));
  EXPECT_THAT(r.err, HasSubstr("'300'"));
  EXPECT_THAT(r.err, HasSubstr("a number and a unit"));
  EXPECT_EQ(status_json()["queues"][0]["submitted"], 0);
}

TEST_F(CliTest, SubmitRejectsNegativeDelay) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--delay=-1s"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--delay"));
  EXPECT_THAT(r.err, HasSubstr("'-1s'"));
}

TEST_F(CliTest, SubmitRejectsDelayOverAYear) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--delay", "366d"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("'366d': must be at most 365d"));
}

TEST_F(CliTest, SubmitRejectsZeroTimeLimit) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--time-limit", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--time-limit"));
  EXPECT_THAT(r.err, HasSubstr("'0': must be at least 1ms"));
  EXPECT_EQ(status_json()["queues"][0]["submitted"], 0);
}

TEST_F(CliTest, SubmitRejectsTimeLimitOfFractionalMilliseconds) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--time-limit", "1.5ms"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--time-limit"));
  EXPECT_THAT(r.err, HasSubstr("'1.5ms': must be whole milliseconds"));
}

TEST_F(CliTest, SubmitRejectsTimeLimitOverEngineMaximum) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--time-limit", "50d"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("'50d': must be at most 49d17h2m47s295ms"));
}

TEST_F(CliTest, SubmitRejectsMaxCrashesZero) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--max-crashes", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-crashes"));
  EXPECT_THAT(r.err, HasSubstr("'0'"));
  EXPECT_THAT(r.err, HasSubstr("between 1 and 255"));
  EXPECT_EQ(status_json()["queues"][0]["submitted"], 0);
}

TEST_F(CliTest, SubmitRejectsMaxCrashesOverLimit) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = on_segment("submit", {"--task", "echo", "--max-crashes", "256"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-crashes"));
  EXPECT_THAT(r.err, HasSubstr("'256'"));
}

TEST_F(CliTest, InitRejectsResultTtlWithJunk) {
  const RunResult r = init({"--result-ttl", "5x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("error: --result-ttl"));
  EXPECT_THAT(r.err, HasSubstr("'5x'"));
  EXPECT_EQ(on_segment("status").code, 1) << "a rejected init must not create the segment";
}

TEST_F(CliTest, InitRejectsResultTtlOverAYear) {
  const RunResult r = init({"--result-ttl", "400d"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("'400d': must be at most 365d"));
  EXPECT_EQ(on_segment("status").code, 1);
}

TEST_F(CliTest, StatusShowsDefaultResultTtl) {
  ASSERT_EQ(init().code, 0);
  const RunResult text = on_segment("status");
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nconfig +[^\n]*, result ttl 1h\n"))) << text.out;
  EXPECT_EQ(status_json()["config"]["result_ttl_ns"], 3'600'000'000'000);
}

TEST_F(CliTest, InitResultTtlShowsInInitAndStatus) {
  const RunResult created = init({"--result-ttl", "1.5m"});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("result ttl 1m30s"));
  const RunResult text = on_segment("status");
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nconfig +[^\n]*, result ttl 1m30s\n"))) << text.out;
  EXPECT_EQ(status_json()["config"]["result_ttl_ns"], 90'000'000'000);
}

TEST_F(CliTest, InitResultTtlZeroKeepsResultsUntilRead) {
  ASSERT_EQ(init({"--result-ttl", "0"}).code, 0);
  const RunResult text = on_segment("status");
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("result ttl 0 (kept until read)"));
  EXPECT_EQ(status_json()["config"]["result_ttl_ns"], 0);
}

TEST_F(CliTest, DelayedTaskWaitsPendingUntilItsTime) {
  ASSERT_EQ(init().code, 0);
  const RunResult submitted = on_segment("submit", {"--task", "echo", "--payload", "later", "--delay", "300ms"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  const nlohmann::json before = peek_task(id);
  ASSERT_TRUE(before.is_object());
  EXPECT_EQ(before["state"], "pending");
  const std::int64_t submit_ns = before["submit_ns"];
  EXPECT_EQ(before["run_at_ns"].get<std::int64_t>(), submit_ns + 300'000'000) << before.dump();

  Background worker(worker_args({"--tasks", "1"}));
  ASSERT_EQ(worker.wait(), 0) << worker.err();
  const nlohmann::json after = peek_task(id);
  ASSERT_TRUE(after.is_object());
  EXPECT_EQ(after["state"], "succeeded") << after.dump();
  EXPECT_EQ(after["value"], "later");
  // Ordering, not speed: it never starts before its time.
  EXPECT_GE(after["start_ns"].get<std::int64_t>() - submit_ns, 300'000'000) << after.dump();
  EXPECT_EQ(after["run_at_ns"], 0) << "only a pending task has a start time to come";
}

TEST_F(CliTest, GetShowsWhenADelayedTaskStarts) {
  ASSERT_EQ(init().code, 0);
  const RunResult submitted = on_segment("submit", {"--task", "echo", "--delay", "1h"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const RunResult text = on_segment("get", {trim(submitted.out)});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nstate +pending\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nstarts +in 59m[0-9]{2}s\n"))) << text.out;
}

TEST_F(CliTest, SubmitDelayWaitSucceedsNoSoonerThanTheDelay) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({"--tasks", "1"}));
  const auto start = std::chrono::steady_clock::now();
  const RunResult r = on_segment("submit", {"--task", "echo", "--payload", "hi", "--delay", "300ms", "--wait"});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.code, 0) << r.err << worker.err();
  EXPECT_TRUE(is_result_line(trim(r.out), "succeeded", "hi"));
  EXPECT_GE(elapsed, 300ms);
  EXPECT_EQ(worker.wait(), 0) << worker.err();
}

TEST_F(CliTest, GetShowsLastErrorOfARetriedPendingTask) {
  ASSERT_EQ(init().code, 0);
  const RunResult submitted =
      on_segment("submit", {"--task", "fail", "--payload", "try again", "--max-attempts", "3"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  // One attempt: it fails, goes back to wait for its retry, and the worker
  // exits before anyone runs it again.
  Background worker(worker_args({"--tasks", "1"}));
  ASSERT_EQ(worker.wait(), 0) << worker.err();

  const nlohmann::json j = peek_task(id);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["state"], "pending");
  EXPECT_EQ(j["attempts"], 1);
  EXPECT_EQ(j["last_error"], "try again");
  const RunResult text = on_segment("get", {id});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nattempts +1 of 3\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nlast error +try again\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nstarts +[^\n]+\n"))) << "the retry backoff: " << text.out;
}

TEST_F(CliTest, GetShowsDeadlineOfRunningTaskWithTimeLimit) {
  ASSERT_EQ(init().code, 0);
  Background worker(worker_args({}));
  const RunResult submitted = on_segment("submit", {"--task", "sleep", "--payload", "60000", "--time-limit", "10m"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  nlohmann::json running;
  ASSERT_TRUE(eventually([&] {
    running = peek_task(id);
    return running.is_object() && running["state"] == "running" && running["start_ns"] != 0;
  })) << worker.err();
  EXPECT_EQ(running["deadline_ns"].get<std::int64_t>(),
            running["start_ns"].get<std::int64_t>() + 600'000'000'000) << running.dump();

  const RunResult text = on_segment("get", {id});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\ndeadline +in [^\n]+ \\(time limit 10m\\)\n"))) << text.out;

  ASSERT_EQ(on_segment("cancel", {id}).code, 0);
  ASSERT_EQ(kill(worker.pid(), SIGTERM), 0);
  EXPECT_EQ(worker.wait(), 0) << worker.err();
}

TEST_F(CliTest, TimeLimitEndsTaskUnderSupervisor) {
  ASSERT_EQ(init().code, 0);
  Background supervisor(worker_args({"--processes", "1"}));
  ASSERT_TRUE(wait_for_alive_workers(1)) << supervisor.err();
  // sleep polls its cancel flag: the watchdog raises it at the deadline and
  // the attempt fails, cooperatively.
  const RunResult r = run_cli({"submit", "--segment", segment_, "--task", "sleep", "--payload", "60000",
                               "--time-limit", "200ms", "--max-attempts", "1", "--wait"},
                              120s);
  EXPECT_EQ(r.code, 3) << r.err << supervisor.err();
  EXPECT_TRUE(is_result_line(trim(r.out), "failed", "time limit of 200 ms exceeded")) << r.out;
  ASSERT_EQ(kill(supervisor.pid(), SIGTERM), 0);
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
}

// ---- dead letters ----

class CliDeadLetterTest : public CliTest {
 protected:
  // Submits a `fail` task (one attempt, the handler's default) with `extra`
  // flags, runs it with a worker that exits after it, and returns its id.
  std::string make_dead_letter(const std::string& error, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--task", "fail", "--payload", error};
    args.insert(args.end(), extra.begin(), extra.end());
    const RunResult submitted = on_segment("submit", args);
    EXPECT_EQ(submitted.code, 0) << submitted.err;
    Background worker(worker_args({"--tasks", "1"}));
    EXPECT_EQ(worker.wait(), 0) << worker.err();
    return trim(submitted.out);
  }

  nlohmann::json dead_list_json(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"list", "--segment", segment_, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const RunResult r = on_dead(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  // `taskring dead ARGS...`
  RunResult on_dead(std::vector<std::string> args) {
    args.insert(args.begin(), "dead");
    return run_cli(args);
  }

  // `taskring dead CMD --segment <ours> ARGS...`
  RunResult dead(const std::string& cmd, std::vector<std::string> args = {}) {
    std::vector<std::string> all = {cmd, "--segment", segment_};
    all.insert(all.end(), args.begin(), args.end());
    return on_dead(all);
  }

  // A pending task (no worker runs it).
  std::string pending_task() {
    const RunResult submitted = on_segment("submit", {"--task", "echo", "--payload", "waiting"});
    EXPECT_EQ(submitted.code, 0) << submitted.err;
    return trim(submitted.out);
  }
};

TEST_F(CliDeadLetterTest, EveryDeadCommandHasHelp) {
  for (const char* cmd : {"list", "show", "requeue", "purge"}) {
    const RunResult r = on_dead({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_THAT(r.out, HasSubstr("taskring dead " + std::string(cmd))) << cmd;
    EXPECT_THAT(r.out, HasSubstr("--segment")) << cmd;
  }
}

TEST_F(CliDeadLetterTest, DeadWithoutSubcommandIsUsageError) {
  const RunResult r = on_dead({});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("hint: run 'taskring dead --help'"));
}

TEST_F(CliDeadLetterTest, ListRejectsZeroLimit) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = dead("list", {"--limit", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--limit"));
  EXPECT_THAT(r.err, HasSubstr("'0'"));
  EXPECT_THAT(r.err, HasSubstr("hint: run 'taskring dead list --help'"));
}

TEST_F(CliDeadLetterTest, RequeueWithoutIdsOrAllIsUsageError) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = dead("requeue");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--all"));
}

TEST_F(CliDeadLetterTest, PurgeRejectsIdsWithAll) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = dead("purge", {"4294967296", "--all"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--all"));
}

TEST_F(CliDeadLetterTest, RequeueRejectsMalformedId) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = dead("requeue", {"12abc"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("'12abc'"));
}

TEST_F(CliDeadLetterTest, ListOfSegmentWithoutDeadLettersSaysSo) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = dead("list");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("no dead letters in segment '" + segment_ + "'"));
  const nlohmann::json j = dead_list_json();
  EXPECT_EQ(j["total"], 0);
  EXPECT_TRUE(j["dead_letters"].empty());
}

TEST_F(CliDeadLetterTest, ListShowsDetachedAndUnreadFailuresOldestFirst) {
  ASSERT_EQ(init().code, 0);
  const std::string detached = make_dead_letter("disk full", {"--detach"});
  const std::string unread = make_dead_letter("no route to host");

  const RunResult text = dead("list");
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("2 dead letters"));
  const std::vector<std::string> rows = lines(text.out);
  ASSERT_EQ(rows.size(), 5u) << text.out;  // summary, blank, header, two rows
  EXPECT_TRUE(std::regex_match(rows[2], std::regex("ID +TASK +QUEUE +ATTEMPTS +CRASHES +FAILED +ERROR"))) << rows[2];
  EXPECT_TRUE(std::regex_match(rows[3], std::regex(detached + " +fail +default +1/1 +0 +[^ ].* ago +disk full")))
      << rows[3];
  EXPECT_TRUE(std::regex_match(rows[4], std::regex(unread + " +fail +default +1/1 +0 +[^ ].* ago +no route to host")))
      << rows[4];

  const nlohmann::json j = dead_list_json();
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["segment"], segment_);
  EXPECT_EQ(j["total"], 2);
  ASSERT_EQ(j["dead_letters"].size(), 2u);
  const nlohmann::json& first = j["dead_letters"][0];
  EXPECT_EQ(first["id"], detached);
  EXPECT_EQ(first["task"], "fail");
  EXPECT_EQ(first["queue"], "default");
  EXPECT_EQ(first["attempts"], 1);
  EXPECT_EQ(first["max_attempts"], 1);
  EXPECT_EQ(first["crashes"], 0);
  EXPECT_TRUE(first["last_crash"].is_null());
  EXPECT_EQ(first["timed_out"], false);
  EXPECT_EQ(first["error"], "disk full");
  EXPECT_EQ(first["payload_bytes"], 9);
  EXPECT_GT(first["expires_in_ns"].get<std::int64_t>(), 0);
  EXPECT_EQ(j["dead_letters"][1]["id"], unread);
  EXPECT_LE(first["finish_ns"].get<std::int64_t>(), j["dead_letters"][1]["finish_ns"].get<std::int64_t>());
}

TEST_F(CliDeadLetterTest, ListLimitShowsTheOldestAndCountsAll) {
  ASSERT_EQ(init().code, 0);
  const std::string oldest = make_dead_letter("first");
  make_dead_letter("second");
  const nlohmann::json j = dead_list_json({"--limit", "1"});
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["total"], 2);
  ASSERT_EQ(j["dead_letters"].size(), 1u);
  EXPECT_EQ(j["dead_letters"][0]["id"], oldest);
  const RunResult text = dead("list", {"--limit", "1"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("2 dead letters"));
  EXPECT_THAT(text.out, HasSubstr("the oldest 1 (--limit)"));
  EXPECT_EQ(lines(text.out).size(), 4u) << text.out;
}

TEST_F(CliDeadLetterTest, ListTruncatesLongErrorsButJsonKeepsThemWhole) {
  ASSERT_EQ(init().code, 0);
  const std::string error = "line one\n" + std::string(200, 'x');
  make_dead_letter(error);
  const RunResult text = dead("list");
  ASSERT_EQ(text.code, 0) << text.err;
  const std::vector<std::string> rows = lines(text.out);
  ASSERT_EQ(rows.size(), 4u) << text.out;
  const std::string cell = rows[3].substr(rows[3].find("line one"));
  EXPECT_EQ(cell.size(), 60u) << cell;
  EXPECT_EQ(cell.substr(0, 10), "line one\\n") << cell;
  EXPECT_EQ(cell.substr(57), "...") << cell;
  EXPECT_EQ(dead_list_json()["dead_letters"][0]["error"], error);
}

TEST_F(CliDeadLetterTest, ShowPrintsTheWholeError) {
  ASSERT_EQ(init().code, 0);
  const std::string error = "quota exceeded: " + std::string(100, 'q');
  const std::string id = make_dead_letter(error);
  const RunResult text = dead("show", {id});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("^id +" + id + "\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nstate +failed\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nattempts +1 of 1\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nlast crash +none\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\ntimed out +no\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\npayload +116 bytes\n"))) << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\nfailed +[^\n]+ ago\n"))) << text.out;
  EXPECT_THAT(text.out, HasSubstr("\nerror      " + error + "\n"));

  const RunResult json = dead("show", {id, "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["error"], error);
  EXPECT_EQ(j["result_ttl_ns"], 3'600'000'000'000);
  // show only looks: the dead letter is still there.
  EXPECT_EQ(dead_list_json()["total"], 1);
}

TEST_F(CliDeadLetterTest, ShowRefusesTaskThatIsNotADeadLetter) {
  ASSERT_EQ(init().code, 0);
  const std::string id = pending_task();
  const RunResult r = dead("show", {id});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("task " + id + " is pending"));
  EXPECT_THAT(r.err, HasSubstr("not a dead letter"));
}

TEST_F(CliDeadLetterTest, ShowOfUnknownTaskFails) {
  ASSERT_EQ(init().code, 0);
  const RunResult r = dead("show", {"4294967296"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("4294967296"));
  EXPECT_THAT(r.err, HasSubstr("no such task"));
}

TEST_F(CliDeadLetterTest, RequeuedDeadLetterRunsAgainWithFreshAttempts) {
  ASSERT_EQ(init().code, 0);
  const std::string id = make_dead_letter("still broken", {"--detach"});
  const RunResult requeued = dead("requeue", {id});
  ASSERT_EQ(requeued.code, 0) << requeued.err;
  EXPECT_THAT(requeued.out, HasSubstr(id + " requeued"));
  const nlohmann::json pending = peek_task(id);
  ASSERT_TRUE(pending.is_object());
  EXPECT_EQ(pending["state"], "pending");
  EXPECT_EQ(pending["attempts"], 0);
  EXPECT_EQ(dead_list_json()["total"], 0);

  // It fails again: a dead letter once more, under the same id, having
  // used one attempt of its fresh allowance (not two).
  Background worker(worker_args({"--tasks", "1"}));
  ASSERT_EQ(worker.wait(), 0) << worker.err();
  const nlohmann::json j = dead_list_json();
  ASSERT_EQ(j["total"], 1) << j.dump();
  EXPECT_EQ(j["dead_letters"][0]["id"], id);
  EXPECT_EQ(j["dead_letters"][0]["attempts"], 1);
  EXPECT_EQ(j["dead_letters"][0]["error"], "still broken");
}

TEST_F(CliDeadLetterTest, RequeueAllRequeuesEveryDeadLetter) {
  ASSERT_EQ(init().code, 0);
  const std::string a = make_dead_letter("a");
  const std::string b = make_dead_letter("b");
  const RunResult r = dead("requeue", {"--all"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(a + " requeued"));
  EXPECT_THAT(r.out, HasSubstr(b + " requeued"));
  EXPECT_THAT(r.out, HasSubstr("requeued 2 of 2 dead letters"));
  EXPECT_EQ(status_json()["tasks"]["pending"], 2);
}

TEST_F(CliDeadLetterTest, RequeueReportsEachIdAndFailsIfAnyFailed) {
  ASSERT_EQ(init().code, 0);
  const std::string dead_id = make_dead_letter("broken");
  const std::string pending_id = pending_task();
  const RunResult r = dead("requeue", {pending_id, dead_id});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("task " + pending_id + " is pending"));
  EXPECT_THAT(r.err, HasSubstr("only a failed task"));
  EXPECT_THAT(r.out, HasSubstr(dead_id + " requeued"));
  EXPECT_THAT(r.out, HasSubstr("requeued 1 of 2 dead letters, 1 failed"));
  EXPECT_EQ(status_json()["tasks"]["pending"], 2);
}

TEST_F(CliDeadLetterTest, PurgeAllEmptiesTheListAndFreesTheSlots) {
  ASSERT_EQ(init().code, 0);
  make_dead_letter("one", {"--detach"});
  make_dead_letter("two");
  ASSERT_EQ(status_json()["tasks"]["failed"], 2);

  const RunResult r = dead("purge", {"--all"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("purged 2 of 2 dead letters"));
  EXPECT_THAT(dead("list").out, HasSubstr("no dead letters"));
  const nlohmann::json s = status_json();
  EXPECT_EQ(s["tasks"]["failed"], 0);
  EXPECT_EQ(s["free_slots"], 256);

  const RunResult again = dead("purge", {"--all"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("no dead letters to purge"));
}

TEST_F(CliDeadLetterTest, PurgeOneIdFreesOnlyThatDeadLetter) {
  ASSERT_EQ(init().code, 0);
  const std::string gone = make_dead_letter("purge me");
  const std::string kept = make_dead_letter("keep me");
  const RunResult r = dead("purge", {gone});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(gone + " purged"));
  const nlohmann::json j = dead_list_json();
  ASSERT_EQ(j["total"], 1);
  EXPECT_EQ(j["dead_letters"][0]["id"], kept);
  EXPECT_EQ(on_segment("get", {gone}).code, 1) << "a purged task is gone";
}

TEST_F(CliDeadLetterTest, PurgeRefusesPendingTaskAndLeavesIt) {
  ASSERT_EQ(init().code, 0);
  const std::string id = pending_task();
  const RunResult r = dead("purge", {id});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("task " + id + " is pending"));
  EXPECT_THAT(r.err, HasSubstr("not a dead letter"));
  // Still pending and still wanted: a worker runs it and its result waits.
  Background worker(worker_args({"--tasks", "1"}));
  ASSERT_EQ(worker.wait(), 0) << worker.err();
  const RunResult got = on_segment("get", {id, "--json"});
  ASSERT_EQ(got.code, 0) << got.err;
  EXPECT_EQ(nlohmann::json::parse(got.out)["value"], "waiting");
}

TEST_F(CliDeadLetterTest, PurgeRefusesSucceededTaskAndKeepsItsResult) {
  ASSERT_EQ(init().code, 0);
  const std::string id = pending_task();
  Background worker(worker_args({"--tasks", "1"}));
  ASSERT_EQ(worker.wait(), 0) << worker.err();
  const RunResult r = dead("purge", {id});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("task " + id + " is succeeded"));
  const RunResult got = on_segment("get", {id, "--json"});
  ASSERT_EQ(got.code, 0) << got.err;
  EXPECT_EQ(nlohmann::json::parse(got.out)["value"], "waiting");
}

TEST_F(CliDeadLetterTest, QuarantinedTaskShowsItsCrashInDeadShow) {
  ASSERT_EQ(init().code, 0);
  Background supervisor(worker_args({"--processes", "1"}));
  ASSERT_TRUE(wait_for_alive_workers(1)) << supervisor.err();
  // Attempts to spare, but one crash is enough to quarantine it.
  const RunResult submitted = on_segment(
      "submit", {"--task", "sleep", "--payload", "60000", "--max-attempts", "5", "--max-crashes", "1", "--detach"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string id = trim(submitted.out);
  int victim = 0;
  ASSERT_TRUE(eventually([&] {
    const nlohmann::json t = peek_task(id);
    if (!t.is_object() || t["state"] != "running") return false;
    const nlohmann::json status = status_json();
    for (const nlohmann::json& w : status["workers"]) {
      if (w["index"] == t["owner_worker"]) victim = w["pid"];
    }
    return victim > 0;
  })) << supervisor.err();
  ASSERT_EQ(kill(victim, SIGKILL), 0);

  nlohmann::json j;
  ASSERT_TRUE(eventually([&] {
    j = dead_list_json();
    return j.is_object() && j["total"] == 1;
  })) << supervisor.err();
  const nlohmann::json& d = j["dead_letters"][0];
  EXPECT_EQ(d["id"], id);
  EXPECT_EQ(d["attempts"], 1);
  EXPECT_EQ(d["crashes"], 1);
  EXPECT_EQ(d["last_crash"]["pid"], victim);
  EXPECT_THAT(d["error"].get<std::string>(), HasSubstr("quarantined after 1"));

  const RunResult text = dead("show", {id});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("last crash pid " + std::to_string(victim) + ": killed by signal 9 (SIGKILL)"));
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\ncrashes +1\n"))) << text.out;
  ASSERT_EQ(kill(supervisor.pid(), SIGTERM), 0);
  EXPECT_EQ(supervisor.wait(), 0) << supervisor.err();
}

}  // namespace
