// End-to-end tests of `taskring log`: each test writes a log with LogWriter
// into a directory of its own, runs the real binary (fork/exec, output
// captured) and checks what it prints and how it exits, for clean logs,
// torn tails, corruption and bad flags. The directory is removed at the end.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "program_runner.h"
#include "taskring/log.h"

namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using taskring::log::Record;
using taskring::log::RecordType;
using taskring::log::TaskSpec;
namespace fs = std::filesystem;

constexpr const char* kCli = TASKRING_CLI_PATH;

taskring::testing::ProgramResult run_cli(const std::vector<std::string>& args) {
  return taskring::testing::run_program(kCli, args, 60s);
}

// A fresh directory for one test's log, removed when the test ends.
class LogDir {
 public:
  LogDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = ::testing::TempDir() + "taskring-logcli-" + std::to_string(getpid()) + "-" +
            std::to_string(counter.fetch_add(1)) + "-" + info->name();
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  LogDir(const LogDir&) = delete;
  LogDir& operator=(const LogDir&) = delete;
  ~LogDir() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  std::string path() const { return root_ + "/log"; }
  std::string file(std::uint64_t first_seq) const {
    char name[48];
    std::snprintf(name, sizeof name, "/taskring-%020llu.log", static_cast<unsigned long long>(first_seq));
    return path() + name;
  }

 private:
  std::string root_;
};

// State words as the engine writes them: [generation:32 | tag:8 | attempts:8 | ... | state:4].
std::uint64_t word(std::uint32_t generation, std::uint8_t tag, std::uint8_t attempts, taskring::TaskState s) {
  return std::uint64_t{generation} << 32 | std::uint64_t{tag} << 24 | std::uint64_t{attempts} << 16 |
         static_cast<std::uint64_t>(s);
}

Record task_record(RecordType type, std::uint32_t slot, std::uint64_t state_word) {
  Record r;
  r.type = type;
  r.wall_ns = 1'735'689'600'000'000'000;  // 2025-01-01T00:00:00Z
  r.epoch = 1;
  r.task_id = (std::uint64_t{1} << 32) | slot;
  r.state_word = state_word;
  r.pid = 4242;
  return r;
}

// A small, realistic log: segment 'jobs' (16 slots); task 1 pending, task 2
// running, task 3 succeeded (result "done"), task 4 failed and freed.
std::vector<Record> story() {
  using taskring::TaskState;
  std::vector<Record> out;
  Record attached;
  attached.type = RecordType::kSegmentAttached;
  attached.wall_ns = 1'735'689'600'000'000'000;
  attached.epoch = 1;
  attached.text = "jobs";
  attached.aux = 16;
  out.push_back(attached);
  for (std::uint32_t slot = 1; slot <= 4; ++slot) {
    Record s = task_record(RecordType::kSubmitted, slot, word(1, 1, 0, TaskState::kPending));
    s.spec = TaskSpec{.queue = "default", .name = "echo", .payload = "payload " + std::to_string(slot)};
    out.push_back(s);
  }
  for (std::uint32_t slot = 2; slot <= 4; ++slot) {
    Record st = task_record(RecordType::kStarted, slot, word(1, 1, 1, TaskState::kRunning));
    st.aux = 0;
    out.push_back(st);
  }
  Record ok = task_record(RecordType::kSucceeded, 3, word(1, 1, 1, TaskState::kSucceeded));
  ok.result = "done";
  out.push_back(ok);
  Record bad = task_record(RecordType::kFailed, 4, word(1, 1, 1, TaskState::kFailed));
  bad.result = "disk full";
  out.push_back(bad);
  Record freed = task_record(RecordType::kFreed, 4, word(2, 1, 0, TaskState::kFree));
  freed.aux = static_cast<std::uint32_t>(taskring::log::FreeReason::kConsumed);
  out.push_back(freed);
  return out;
}

// Writes `records` (seqs assigned) and returns them as written.
std::vector<Record> write_log(const std::string& dir, std::vector<Record> records,
                              taskring::log::LogOptions options = {}) {
  auto w = taskring::log::LogWriter::open(dir, options);
  EXPECT_TRUE(w.is_ok()) << w.status().to_string();
  if (!w.is_ok()) return {};
  for (Record& r : records) w->append(r);
  EXPECT_TRUE(w->write().is_ok());
  return records;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string read_file(const std::string& path) {
  std::string out(fs::file_size(path), '\0');
  std::ifstream in(path, std::ios::binary);
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The byte offset at which record `index` (0-based) of a single-file log starts.
std::uint64_t offset_of(const std::vector<Record>& records, std::size_t index) {
  std::uint64_t at = 64;
  for (std::size_t i = 0; i < index; ++i) at += taskring::log::encoded_size(records[i]);
  return at;
}

// ---- bad flags ----------------------------------------------------------------------

TEST(LogCliTest, BadFlagsExitTwoNamingTheFlagAndValue) {
  LogDir d;
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"log", "dump", "--log-dir", d.path(), "--type", "bogus"}, "--type: 'bogus': must be a record type"},
      {{"log", "dump", "--log-dir", d.path(), "--from", "0"}, "--from: '0': must be a whole decimal number"},
      {{"log", "dump", "--log-dir", d.path(), "--limit", "ten"}, "--limit: 'ten'"},
      {{"log", "tail", "--log-dir", d.path(), "--limit", "0"}, "--limit: '0'"},
      {{"log", "dump", "--log-dir", ""}, "--log-dir: '': must be the path of a log directory"},
      {{"log", "verify"}, "--log-dir is required"},
      {{"log", "stats", "--log-dir", d.path(), "--bytes"}, "--bytes"},
      {{"log"}, "subcommand is required"},
  };
  for (const Case& c : cases) {
    const auto r = run_cli(c.args);
    EXPECT_EQ(r.code, 2) << c.message;
    EXPECT_THAT(r.err, HasSubstr("error: ")) << c.message;
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_THAT(r.err, HasSubstr("hint: run 'taskring log"));
    EXPECT_EQ(r.out, "");
  }
}

TEST(LogCliTest, MissingDirectoryExitsOne) {
  LogDir d;
  for (const char* command : {"dump", "tail", "verify", "stats"}) {
    const auto r = run_cli({"log", command, "--log-dir", d.path() + "/nope"});
    EXPECT_EQ(r.code, 1) << command;
    EXPECT_THAT(r.err, HasSubstr("error: log " + std::string(command) + ": log directory " + d.path() +
                                 "/nope: does not exist"));
  }
}

// ---- dump -------------------------------------------------------------------------------

TEST(LogCliTest, DumpPrintsOneLinePerRecord) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  const auto r = run_cli({"log", "dump", "--log-dir", d.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), records.size());
  EXPECT_EQ(lines[0], "1 2025-01-01T00:00:00.000000000Z segment_attached epoch=1 pid=0 slots=16 text=\"jobs\"");
  EXPECT_EQ(lines[1],
            "2 2025-01-01T00:00:00.000000000Z submitted epoch=1 task=4294967297 state=pending attempts=0 pid=4242 "
            "queue=\"default\" name=\"echo\" priority=normal payload=9B");
  EXPECT_EQ(lines[5],
            "6 2025-01-01T00:00:00.000000000Z started epoch=1 task=4294967298 state=running attempts=1 pid=4242 "
            "worker=0");
  EXPECT_THAT(lines[8], HasSubstr("9 2025-01-01T00:00:00.000000000Z succeeded epoch=1 task=4294967299 "
                                  "state=succeeded attempts=1 pid=4242 result=4B"));
  EXPECT_THAT(lines[10], HasSubstr(" freed epoch=1 task=4294967300 state=free attempts=0 pid=4242 reason=consumed"));
}

TEST(LogCliTest, DumpFromLimitAndTypeSelectRecords) {
  LogDir d;
  write_log(d.path(), story());
  auto r = run_cli({"log", "dump", "--log-dir", d.path(), "--from", "3", "--limit", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].substr(0, 2), "3 ");
  EXPECT_EQ(lines[1].substr(0, 2), "4 ");

  r = run_cli({"log", "dump", "--log-dir", d.path(), "--type", "started,failed"});
  ASSERT_EQ(r.code, 0) << r.err;
  lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 4u);
  for (const std::string& line : lines) EXPECT_THAT(line, ::testing::AnyOf(HasSubstr(" started "), HasSubstr(" failed ")));
}

TEST(LogCliTest, DumpJsonHasEveryFieldOnOneLinePerRecord) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  const auto r = run_cli({"log", "dump", "--log-dir", d.path(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), records.size());
  const auto sub = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(sub["seq"], 2);
  EXPECT_EQ(sub["type"], "submitted");
  EXPECT_EQ(sub["wall_ns"], 1'735'689'600'000'000'000);
  EXPECT_EQ(sub["epoch"], 1);
  EXPECT_EQ(sub["task_id"], "4294967297");
  EXPECT_EQ(sub["state_word"], records[1].state_word);
  EXPECT_EQ(sub["state"], "pending");
  EXPECT_EQ(sub["pid"], 4242);
  EXPECT_EQ(sub["aux"], 0);
  EXPECT_EQ(sub["spec"]["queue"], "default");
  EXPECT_EQ(sub["spec"]["name"], "echo");
  EXPECT_EQ(sub["spec"]["priority"], "normal");
  EXPECT_EQ(sub["spec"]["payload_bytes"], 9);
  EXPECT_FALSE(sub["spec"].contains("payload_base64"));
  EXPECT_TRUE(sub["result_bytes"].is_null());
  EXPECT_EQ(sub["payload_missing"], false);
  EXPECT_EQ(sub["other_id"], "0");
  const auto freed = nlohmann::json::parse(lines[10]);
  EXPECT_EQ(freed["reason"], "consumed");
  EXPECT_TRUE(freed["spec"].is_null());
}

TEST(LogCliTest, DumpBytesShowsPayloadsAndResults) {
  LogDir d;
  write_log(d.path(), story());
  auto r = run_cli({"log", "dump", "--log-dir", d.path(), "--json", "--bytes", "--type", "submitted,succeeded"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["spec"]["payload_base64"], "cGF5bG9hZCAx");  // "payload 1"
  EXPECT_EQ(nlohmann::json::parse(lines[4])["result_base64"], "ZG9uZQ==");             // "done"

  r = run_cli({"log", "dump", "--log-dir", d.path(), "--bytes", "--type", "succeeded"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("result=4B \"done\""));
}

TEST(LogCliTest, DumpOfATornTailPrintsTheWholeRecordsAndWarns) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  fs::resize_file(d.file(1), fs::file_size(d.file(1)) - 2);
  const auto r = run_cli({"log", "dump", "--log-dir", d.path()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), records.size() - 1);
  EXPECT_THAT(r.err, HasSubstr("warning: " + d.file(1) + " ends in a torn record at offset " +
                               std::to_string(offset_of(records, records.size() - 1))));
  EXPECT_THAT(r.err, HasSubstr("truncated body"));
}

TEST(LogCliTest, DumpOfACorruptLogPrintsWhatCameBeforeAndExitsOne) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  const std::uint64_t at = offset_of(records, 3);
  std::string bytes = read_file(d.file(1));
  bytes[at + 30] ^= 0x01;
  write_file(d.file(1), bytes);
  const auto r = run_cli({"log", "dump", "--log-dir", d.path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(lines_of(r.out).size(), 3u);
  EXPECT_THAT(r.err, HasSubstr("error: log dump: " + d.file(1) + ": offset " + std::to_string(at) + ": CRC mismatch"));
}

// ---- verify -----------------------------------------------------------------------------

TEST(LogCliTest, VerifyOfACorruptLogExitsOneNamingFileAndOffset) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  const std::uint64_t at = offset_of(records, 5);
  std::string bytes = read_file(d.file(1));
  bytes[at + 25] ^= 0x40;
  write_file(d.file(1), bytes);
  const auto r = run_cli({"log", "verify", "--log-dir", d.path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: log verify: " + d.file(1) + ": offset " + std::to_string(at) +
                               ": CRC mismatch"));
  EXPECT_THAT(r.err, HasSubstr("hint: 5 records before it check out (up to seq 5)"));
  const auto j = run_cli({"log", "verify", "--log-dir", d.path(), "--json"});
  EXPECT_EQ(j.code, 1);
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["ok"], false);
  EXPECT_THAT(doc["error"].get<std::string>(), HasSubstr("offset " + std::to_string(at)));
  EXPECT_EQ(doc["records_before"], 5);
}

TEST(LogCliTest, VerifyOfATornTailExitsOneAndLeavesTheFileAlone) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  const std::uint64_t size = fs::file_size(d.file(1)) - 9;
  fs::resize_file(d.file(1), size);
  const auto r = run_cli({"log", "verify", "--log-dir", d.path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("every record before the torn tail checks out"));
  EXPECT_THAT(r.err, HasSubstr("error: log verify: torn tail: " + d.file(1) + " ends in a torn record at offset " +
                               std::to_string(offset_of(records, records.size() - 1))));
  EXPECT_THAT(r.err, HasSubstr("the sidecar truncates the file there when it next opens the log"));
  EXPECT_EQ(fs::file_size(d.file(1)), size);
  const auto j = run_cli({"log", "verify", "--log-dir", d.path(), "--json"});
  EXPECT_EQ(j.code, 1);
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["ok"], false);
  EXPECT_EQ(doc["torn_tail"]["file"], d.file(1));
  EXPECT_EQ(doc["records"], records.size() - 1);
}

TEST(LogCliTest, VerifyOfACleanLogListsFilesAndExitsZero) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story(), {.file_bytes = 300});
  const auto r = run_cli({"log", "verify", "--log-dir", d.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("records, seq 1 .. " + std::to_string(records.size())));
  EXPECT_THAT(r.out, HasSubstr("FILE"));
  EXPECT_THAT(r.out, HasSubstr("taskring-00000000000000000001.log"));
  EXPECT_THAT(r.out, HasSubstr("ok: every record's CRC and sequence number check out"));
  const auto j = run_cli({"log", "verify", "--log-dir", d.path(), "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["ok"], true);
  EXPECT_EQ(doc["records"], records.size());
  EXPECT_EQ(doc["first_seq"], 1);
  EXPECT_EQ(doc["last_seq"], records.size());
  EXPECT_GT(doc["files"].size(), 1u);
  EXPECT_TRUE(doc["torn_tail"].is_null());
}

TEST(LogCliTest, VerifyOfAnEmptyDirectoryIsAnEmptyLog) {
  LogDir d;
  fs::create_directories(d.path());
  const auto r = run_cli({"log", "verify", "--log-dir", d.path()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("0 files, 0 B, no records"));
}

// ---- stats ------------------------------------------------------------------------------

TEST(LogCliTest, StatsCountsRecordsByTypeAndLiveTasksByState) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  const auto r = run_cli({"log", "stats", "--log-dir", d.path()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("11 records, seq 1 .. 11"));
  EXPECT_THAT(r.out, HasSubstr("segments   last 'jobs' (epoch 1); 1 epoch attached"));
  EXPECT_THAT(r.out, HasSubstr("live tasks pending 1, running 1, succeeded 1, failed 0, cancelled 0"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("submitted +4\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("started +3\n"));
  const auto j = run_cli({"log", "stats", "--log-dir", d.path(), "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["records"], 11);
  EXPECT_EQ(doc["by_type"]["freed"], 1);
  EXPECT_EQ(doc["by_type"]["segment_attached"], 1);
  EXPECT_EQ(doc["live"]["pending"], 1);
  EXPECT_EQ(doc["live"]["running"], 1);
  EXPECT_EQ(doc["live"]["succeeded"], 1);
  EXPECT_EQ(doc["live"]["failed"], 0);
  EXPECT_EQ(doc["last_segment"], "jobs");
  EXPECT_EQ(doc["invalid"], 0);
}

TEST(LogCliTest, StatsOfACorruptLogExitsOne) {
  LogDir d;
  const std::vector<Record> records = write_log(d.path(), story());
  std::string bytes = read_file(d.file(1));
  bytes[offset_of(records, 2) + 8] ^= 0x01;  // the seq field: a CRC mismatch with records after it
  write_file(d.file(1), bytes);
  const auto r = run_cli({"log", "stats", "--log-dir", d.path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: log stats: " + d.file(1) + ": offset " +
                               std::to_string(offset_of(records, 2))));
}

// ---- tail -------------------------------------------------------------------------------

// `taskring log tail ...` in the background, its output in temporary files.
class Tail {
 public:
  explicit Tail(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"log", "tail"};
    all.insert(all.end(), args.begin(), args.end());
    pid_ = taskring::testing::spawn_program(kCli, all, fileno(out_), fileno(err_));
  }
  Tail(const Tail&) = delete;
  Tail& operator=(const Tail&) = delete;
  ~Tail() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::fclose(out_);
    std::fclose(err_);
  }
  std::string out() const { return contents(out_); }
  std::string err() const { return contents(err_); }
  // Waits until stderr contains `text`; false after 20 s.
  bool wait_for_err(const std::string& text) const {
    for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;) {
      if (err().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // The exit status, or -1 (after killing it) if it runs past 20 s.
  int wait() {
    for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return taskring::testing::decode_status(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  pid_t pid() const { return pid_; }

 private:
  static std::string contents(std::FILE* f) {
    std::string s;
    char buf[4096];
    off_t at = 0;
    for (ssize_t n; (n = pread(fileno(f), buf, sizeof buf, at)) > 0; at += n) s.append(buf, static_cast<std::size_t>(n));
    return s;
  }
  std::FILE* out_ = std::tmpfile();
  std::FILE* err_ = std::tmpfile();
  pid_t pid_ = -1;
};

TEST(LogCliTest, TailPrintsRecordsAppendedAfterItStartsAcrossFiles) {
  LogDir d;
  std::vector<Record> all = story();
  auto w = taskring::log::LogWriter::open(d.path(), {.file_bytes = 300});
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  for (std::size_t i = 0; i < 3; ++i) w->append(all[i]);
  ASSERT_TRUE(w->write().is_ok());

  Tail tail({"--log-dir", d.path(), "--limit", "8"});
  ASSERT_TRUE(tail.wait_for_err("following " + d.path() + " from seq 4")) << tail.err();
  for (std::size_t i = 3; i < all.size(); ++i) {
    w->append(all[i]);
    if (i % 2 == 0) {
      ASSERT_TRUE(w->write().is_ok());
    }
  }
  ASSERT_TRUE(w->write().is_ok());
  EXPECT_EQ(tail.wait(), 0) << tail.err();
  const std::vector<std::string> lines = lines_of(tail.out());
  ASSERT_EQ(lines.size(), 8u) << tail.out();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].substr(0, lines[i].find(' ')), std::to_string(4 + i));
  }
  EXPECT_GT(std::distance(fs::directory_iterator(d.path()), fs::directory_iterator()), 1);
}

TEST(LogCliTest, TailFromSeqPrintsWhatIsThereFirst) {
  LogDir d;
  write_log(d.path(), story());
  Tail tail({"--log-dir", d.path(), "--from", "10", "--limit", "2", "--json"});
  EXPECT_EQ(tail.wait(), 0) << tail.err();
  EXPECT_THAT(tail.err(), HasSubstr("following " + d.path() + " from seq 10"));
  const std::vector<std::string> lines = lines_of(tail.out());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["seq"], 10);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["type"], "freed");
}

TEST(LogCliTest, TailStopsOnSigtermAndSigintWithExitZero) {
  LogDir d;
  write_log(d.path(), story());
  for (const int sig : {SIGTERM, SIGINT}) {
    Tail tail({"--log-dir", d.path()});
    ASSERT_TRUE(tail.wait_for_err("following")) << tail.err();
    kill(tail.pid(), sig);
    EXPECT_EQ(tail.wait(), 0) << "signal " << sig << ": " << tail.err();
    EXPECT_EQ(tail.out(), "");
  }
}

}  // namespace
