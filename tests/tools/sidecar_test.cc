// The sidecar (tools/sidecar/sidecar.h) driven in-process: the test thread
// calls step() itself, so it decides when the journal is read, and checks
// the durable log it leaves with read_log and LogState. Producers and
// workers are a Client and WorkerThreads of the same process. Covers the
// option errors, the fold of a drained log (exactly the unfinished tasks,
// with their specs and payloads), durable acknowledgements under each fsync
// policy, a restart on the same segment, host restarts (pending tasks
// resubmitted, unread results restored, and nothing restored twice),
// compaction, a torn tail, and a best-effort journal that overflows.
//
// Some tests fork a second process (one that tries to take the journal, one
// whose hang must not wedge the suite), so it is labelled multiprocess (not
// run under TSan).
#include "sidecar.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/log.h"
#include "taskring/log_state.h"
#include "taskring/status.h"
#include "taskring/worker.h"
#include "test_support.h"

namespace taskring::sidecar {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using std::chrono::steady_clock;
using taskring::testing::kHangTimeout;
using taskring::testing::kHangTimeoutNs;
using taskring::testing::TestSegment;
using taskring::testing::wait_until;
using taskring::testing::WorkerThread;

// A fresh directory under the test temp dir, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = ::testing::TempDir() + "taskring-sidecar-" + std::to_string(getpid()) + "-" +
            std::to_string(counter.fetch_add(1)) + "-" + (info != nullptr ? info->name() : "x");
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  // Where the log goes: a subdirectory the sidecar creates.
  std::string log() const { return path_ + "/log"; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Two queues: "default", which the workers serve, and "later", which no
// worker of the first segment serves, so that tasks stay pending there.
EngineConfig journal_config(JournalMode mode = JournalMode::kDurable, std::uint32_t journal_capacity = 4096) {
  EngineConfig c = taskring::testing::small_config();
  c.slots = 1024;
  c.queues = {"default", "later"};
  c.journal = mode;
  c.journal_capacity = journal_capacity;
  return c;
}

SidecarOptions options_for(const std::string& segment, const std::string& log_dir) {
  SidecarOptions o;
  o.segment = segment;
  o.log_dir = log_dir;
  return o;
}

WorkerOptions default_queue_only() {
  WorkerOptions o;
  o.queues = {"default"};
  return o;
}

// Distinct payloads; one in four is long enough to live in an arena block.
std::string payload(const std::string& tag, int i) {
  std::string s = tag + "-" + std::to_string(i);
  if (i % 4 == 1) s.append(1500, static_cast<char>('a' + i % 26));
  return s;
}

// Steps `sc` until the journal holds nothing it has not read and written:
// every event so far is then in the log.
::testing::AssertionResult drain(Sidecar& sc, const std::string& segment) {
  const auto deadline = steady_clock::now() + kHangTimeout;
  for (;;) {
    auto n = sc.step(1'000'000);
    if (!n) return ::testing::AssertionFailure() << "step: " << n.status().to_string();
    auto snap = read_snapshot(segment);
    if (!snap) return ::testing::AssertionFailure() << "snapshot: " << snap.status().to_string();
    if (*n == 0 && snap->journal.read == snap->journal.written) return ::testing::AssertionSuccess();
    if (steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure()
             << "the journal was not drained within " << kHangTimeout.count() << " s: written " << snap->journal.written
             << ", read " << snap->journal.read;
    }
  }
}

// Steps `sc` until its restore thread is done.
::testing::AssertionResult step_until_restored(Sidecar& sc) {
  const auto deadline = steady_clock::now() + kHangTimeout;
  while (!sc.restore_done()) {
    auto n = sc.step(1'000'000);
    if (!n) return ::testing::AssertionFailure() << "step: " << n.status().to_string();
    if (steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure() << "the restore did not finish within " << kHangTimeout.count() << " s";
    }
  }
  return ::testing::AssertionSuccess();
}

// The log as read back, folded.
struct Fold {
  log::LogState state;
  log::ReadReport report;
  std::vector<log::Record> records;

  std::uint64_t count(log::RecordType t, std::uint64_t epoch) const {
    return static_cast<std::uint64_t>(std::count_if(
        records.begin(), records.end(), [&](const log::Record& r) { return r.type == t && r.epoch == epoch; }));
  }
  std::uint64_t freed(log::FreeReason why, std::uint64_t epoch) const {
    return static_cast<std::uint64_t>(std::count_if(records.begin(), records.end(), [&](const log::Record& r) {
      return r.type == log::RecordType::kFreed && r.epoch == epoch && r.aux == static_cast<std::uint32_t>(why);
    }));
  }
  std::map<std::uint64_t, log::LiveTask> live(std::uint64_t epoch) const {
    std::map<std::uint64_t, log::LiveTask> out;
    for (log::LiveTask& t : state.live_tasks(epoch)) out.emplace(t.task_id, std::move(t));
    return out;
  }
};

::testing::AssertionResult fold_log(const std::string& dir, Fold& f) {
  auto rep = log::read_log(dir, [&f](const log::Record& r) {
    f.records.push_back(r);
    f.state.apply(r);
    return true;
  });
  if (!rep) return ::testing::AssertionFailure() << "read_log(" << dir << "): " << rep.status().to_string();
  f.report = std::move(rep).value();
  if (f.report.torn_tail) {
    return ::testing::AssertionFailure() << "the log has a torn tail in " << f.report.tail_file << " at "
                                         << f.report.tail_offset << ": " << f.report.tail_reason;
  }
  return ::testing::AssertionSuccess();
}

// A task the log must hold as live.
struct Expected {
  TaskId id;
  std::string payload;
  std::string queue = "default";
  TaskState state = TaskState::kPending;  // pending, or succeeded with the payload as its result
  std::string name = "echo";
};

// The live tasks of `epoch` are exactly `want`, with their specs, payloads
// and (for finished ones) results.
void expect_live_exactly(const Fold& f, std::uint64_t epoch, const std::vector<Expected>& want) {
  const auto live = f.live(epoch);
  std::set<std::uint64_t> want_ids;
  for (const Expected& e : want) want_ids.insert(e.id.value);
  for (const auto& [id, t] : live) {
    EXPECT_TRUE(want_ids.count(id) == 1) << "task " << id << " is live in the log (state " << state_name(t.state)
                                         << ") but should be gone";
  }
  for (const Expected& e : want) {
    const auto it = live.find(e.id.value);
    if (it == live.end()) {
      ADD_FAILURE() << "task " << to_string(e.id) << " (" << e.payload.substr(0, 20) << ") is missing from the log";
      continue;
    }
    const log::LiveTask& t = it->second;
    EXPECT_EQ(t.state, e.state) << "task " << to_string(e.id);
    if (!t.spec.has_value()) {
      ADD_FAILURE() << "task " << to_string(e.id) << ": the log has no spec for it";
      continue;
    }
    EXPECT_EQ(t.spec->payload, e.payload) << "task " << to_string(e.id);
    EXPECT_EQ(t.spec->name, e.name) << "task " << to_string(e.id);
    EXPECT_EQ(t.spec->queue, e.queue) << "task " << to_string(e.id);
    if (e.state == TaskState::kSucceeded) {
      EXPECT_EQ(t.result, std::optional<std::string>(e.payload)) << "task " << to_string(e.id) << ": result";
      EXPECT_NE(t.finish_wall_ns, 0) << "task " << to_string(e.id);
    } else {
      EXPECT_FALSE(t.result.has_value()) << "task " << to_string(e.id);
    }
  }
}

// Waits until task `id` is terminal (without reading it).
::testing::AssertionResult wait_finished(Client& c, TaskId id) {
  TaskState last = TaskState::kFree;
  const bool ok = wait_until([&] {
    auto info = c.peek(id);
    if (!info) return false;
    last = info->state;
    return is_terminal(info->state);
  });
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "task " << to_string(id) << " still " << state_name(last) << " after "
                                       << kHangTimeout.count() << " s";
}

// Submits `n` echo tasks to `queue` (payloads tag-0, tag-1, ...).
std::vector<Expected> submit_echo(Client& c, const std::string& tag, int n, const std::string& queue = "default") {
  std::vector<Expected> out;
  SubmitOptions so;
  so.queue = queue;
  for (int i = 0; i < n; ++i) {
    Expected e;
    e.payload = payload(tag, i);
    e.queue = queue;
    auto id = c.submit("echo", e.payload, so);
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    if (!id) return out;
    e.id = *id;
    out.push_back(std::move(e));
  }
  return out;
}

// Reads the outcome of each of `tasks` (they must be echo tasks that succeed).
void consume(Client& c, const std::vector<Expected>& tasks) {
  for (const Expected& e : tasks) {
    auto out = c.wait(e.id, kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << to_string(e.id) << ": " << out.status().to_string();
    EXPECT_EQ(out->state, TaskState::kSucceeded);
    EXPECT_EQ(out->value, e.payload);
  }
}

// Runs unread echo tasks to completion, then marks them expected succeeded.
void finish_unread(Client& c, std::vector<Expected>& tasks) {
  for (Expected& e : tasks) {
    ASSERT_TRUE(wait_finished(c, e.id));
    e.state = TaskState::kSucceeded;
  }
}

std::vector<Expected> concat(std::vector<Expected> a, const std::vector<Expected>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---- options and refusals ------------------------------------------------------------

TEST(SidecarTest, ParseFsyncPolicyErrorsNameTheValue) {
  for (const char* bad :
       {"interval:0", "sometimes", "interval:x", "interval:", "interval:3600001", "interval:5ms", "ALWAYS", ""}) {
    auto p = parse_fsync_policy(bad);
    ASSERT_FALSE(p.is_ok()) << "'" << bad << "' was accepted";
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(p.status().message().find("'" + std::string(bad) + "'"), std::string::npos)
        << "the error does not name the value '" << bad << "': " << p.status().to_string();
    EXPECT_NE(p.status().message().find("interval:MS"), std::string::npos)
        << "the error does not say what is accepted: " << p.status().to_string();
  }
}

TEST(SidecarTest, ParseFsyncPolicyAcceptsAlwaysNeverAndWholeMilliseconds) {
  auto always = parse_fsync_policy("always");
  ASSERT_TRUE(always.is_ok());
  EXPECT_EQ(always->kind, FsyncPolicy::Kind::kAlways);
  auto never = parse_fsync_policy("never");
  ASSERT_TRUE(never.is_ok());
  EXPECT_EQ(never->kind, FsyncPolicy::Kind::kNever);
  for (const std::uint64_t ms : {1ull, 5ull, 3'600'000ull}) {
    auto p = parse_fsync_policy("interval:" + std::to_string(ms));
    ASSERT_TRUE(p.is_ok()) << ms << ": " << p.status().to_string();
    EXPECT_EQ(p->kind, FsyncPolicy::Kind::kInterval);
    EXPECT_EQ(p->interval_ns, static_cast<std::int64_t>(ms) * 1'000'000);
    EXPECT_EQ(fsync_policy_text(*p), "interval:" + std::to_string(ms));
  }
  EXPECT_EQ(fsync_policy_text(*always), "always");
  EXPECT_EQ(fsync_policy_text(*never), "never");
}

TEST(SidecarTest, StartOnASegmentWithoutAJournalFailsPrecondition) {
  TestSegment seg("nojournal", journal_config(JournalMode::kOff));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  auto sc = Sidecar::start(options_for(seg.name(), dir.log()));
  ASSERT_FALSE(sc.is_ok());
  EXPECT_EQ(sc.status().code(), StatusCode::kFailedPrecondition) << sc.status().to_string();
  EXPECT_NE(sc.status().message().find("no journal"), std::string::npos) << sc.status().to_string();
}

TEST(SidecarTest, StartRejectsABatchOfZero) {
  TestSegment seg("batch0", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  SidecarOptions o = options_for(seg.name(), dir.log());
  o.batch = 0;
  auto sc = Sidecar::start(o);
  ASSERT_FALSE(sc.is_ok());
  EXPECT_EQ(sc.status().code(), StatusCode::kInvalidArgument) << sc.status().to_string();
  // Refused before anything was taken: a valid start works at once.
  o.batch = 64;
  auto ok = Sidecar::start(o);
  EXPECT_TRUE(ok.is_ok()) << ok.status().to_string();
}

TEST(SidecarTest, DurableSubmitWithoutASidecarTimesOutNamingTheMissingSidecar) {
  TestSegment seg("nosidecar", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  SubmitOptions so;
  so.durable = true;
  so.timeout_ns = 100'000'000;
  auto id = seg.client().submit("echo", "x", so);
  ASSERT_FALSE(id.is_ok());
  EXPECT_EQ(id.status().code(), StatusCode::kDeadlineExceeded) << id.status().to_string();
  EXPECT_NE(id.status().message().find("no sidecar"), std::string::npos) << id.status().to_string();
}

// A forked process that tries Sidecar::start on `segment` with log `dir`
// once told to go (so that it can be forked while the parent holds the
// journal and try later), and reports over a pipe how it went.
class SidecarChild {
 public:
  struct Outcome {
    bool reported = false;  // false: it died or hung (see `why`)
    bool started = false;
    StatusCode code = StatusCode::kOk;
    std::string message;
    std::string why;
  };

  SidecarChild(const std::string& segment, const std::string& dir) {
    int go[2], result[2];
    if (pipe(go) != 0 || pipe(result) != 0) {
      ADD_FAILURE() << "pipe failed";
      return;
    }
    std::fflush(stdout);
    std::fflush(stderr);
    pid_ = fork();
    if (pid_ == 0) {
      close(go[1]);
      close(result[0]);
      char c = 0;
      if (read(go[0], &c, 1) != 1) _exit(2);
      auto sc = Sidecar::start(options_for(segment, dir));
      const std::string out = sc ? std::string("started")
                                 : std::to_string(static_cast<int>(sc.status().code())) + " " + sc.status().message();
      const ssize_t n = write(result[1], out.data(), out.size());
      _exit(n == static_cast<ssize_t>(out.size()) ? 0 : 3);
    }
    close(go[0]);
    close(result[1]);
    go_fd_ = go[1];
    result_fd_ = result[0];
    if (pid_ < 0) ADD_FAILURE() << "fork failed";
  }
  SidecarChild(const SidecarChild&) = delete;
  SidecarChild& operator=(const SidecarChild&) = delete;
  ~SidecarChild() {
    if (pid_ > 0 && kill(pid_, SIGKILL) == 0) waitpid(pid_, nullptr, 0);
    if (go_fd_ >= 0) close(go_fd_);
    if (result_fd_ >= 0) close(result_fd_);
  }

  // Lets it try, and waits for its report and its exit.
  Outcome go() {
    Outcome o;
    if (pid_ <= 0) {
      o.why = "no child";
      return o;
    }
    const char c = 'g';
    if (write(go_fd_, &c, 1) != 1) o.why = "cannot signal the child";
    int status = 0;
    const bool reaped = wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; });
    if (!reaped) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    std::string text;
    char buf[512];
    ssize_t n = 0;
    while ((n = read(result_fd_, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    if (!reaped || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty()) {
      o.why = !reaped ? "the child did not finish in time" : "the child ended with status " + std::to_string(status);
      return o;
    }
    o.reported = true;
    if (text == "started") {
      o.started = true;
      return o;
    }
    const std::size_t space = text.find(' ');
    o.code = static_cast<StatusCode>(std::stoi(text.substr(0, space)));
    o.message = space == std::string::npos ? std::string() : text.substr(space + 1);
    return o;
  }

 private:
  pid_t pid_ = -1;
  int go_fd_ = -1;
  int result_fd_ = -1;
};

// Forks a SidecarChild and lets it try at once.
SidecarChild::Outcome start_in_another_process(const std::string& segment, const std::string& dir) {
  SidecarChild child(segment, dir);
  return child.go();
}

::testing::AssertionResult refused(const SidecarChild::Outcome& o) {
  if (!o.reported) return ::testing::AssertionFailure() << o.why;
  if (o.started) return ::testing::AssertionFailure() << "it started";
  if (o.code != StatusCode::kFailedPrecondition) {
    return ::testing::AssertionFailure() << "refused with code " << status_code_name(o.code) << ": " << o.message;
  }
  return ::testing::AssertionSuccess();
}

TEST(SidecarTest, ASidecarInAnotherProcessIsRefusedWhileTheFirstLives) {
  TestSegment seg("second", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  auto started = Sidecar::start(options_for(seg.name(), dir.log()));
  ASSERT_TRUE(started.is_ok()) << started.status().to_string();
  std::unique_ptr<Sidecar> first = std::move(started).value();
  EXPECT_TRUE(refused(start_in_another_process(seg.name(), dir.sub("other-log"))))
      << "a second sidecar in another process (own log dir)";
  auto snap = read_snapshot(seg.name());
  ASSERT_TRUE(snap.is_ok());
  EXPECT_EQ(snap->journal.sidecar_pid, static_cast<std::uint32_t>(getpid()));
  // Once the first is gone, another may take over.
  first.reset();
  const SidecarChild::Outcome later = start_in_another_process(seg.name(), dir.sub("other-log"));
  EXPECT_TRUE(later.reported && later.started) << later.why << later.message;
}

// The one-reader-per-process flag is keyed by the pid that took it: a child
// forked while its parent reads the journal is refused only while the parent
// lives and names it, and may take the journal over once the parent gave it
// back.
TEST(SidecarTest, AChildForkedWhileItsParentReadsTheJournalMayTakeItOverLater) {
  TestSegment seg("forked", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  auto started = Sidecar::start(options_for(seg.name(), dir.log()));
  ASSERT_TRUE(started.is_ok()) << started.status().to_string();
  std::unique_ptr<Sidecar> first = std::move(started).value();
  {
    const SidecarChild::Outcome now = start_in_another_process(seg.name(), dir.sub("other-log"));
    ASSERT_TRUE(refused(now));
    EXPECT_NE(now.message.find("pid " + std::to_string(getpid())), std::string::npos)
        << "the refusal does not name the sidecar that reads the journal (pid " << getpid() << "): " << now.message;
  }
  SidecarChild child(seg.name(), dir.sub("other-log"));  // forked while the parent reads
  first.reset();
  const SidecarChild::Outcome later = child.go();
  EXPECT_TRUE(later.reported && later.started)
      << "no process reads the journal, yet the child was refused: " << later.why << later.message;
}

// Fixed by commit 0420951 (one journal reader per process): before it, a
// second start in the process that held the journal took the reader role
// again, and when it then failed, gave it away from under the first.
TEST(SidecarTest, ASecondSidecarInTheSameProcessIsRefusedAndTheFirstKeepsTheJournal) {
  TestSegment seg("samepid", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  auto first = Sidecar::start(options_for(seg.name(), dir.log()));
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  {
    auto same_dir = Sidecar::start(options_for(seg.name(), dir.log()));
    EXPECT_FALSE(same_dir.is_ok()) << "a second sidecar on the same segment and log started";
    if (!same_dir) {
      EXPECT_EQ(same_dir.status().code(), StatusCode::kFailedPrecondition);
    }
    auto other_dir = Sidecar::start(options_for(seg.name(), dir.sub("other-log")));
    EXPECT_FALSE(other_dir.is_ok()) << "a second sidecar on the same segment (own log dir) started";
    if (!other_dir) {
      EXPECT_EQ(other_dir.status().code(), StatusCode::kFailedPrecondition);
    }
  }
  auto snap = read_snapshot(seg.name());
  ASSERT_TRUE(snap.is_ok());
  EXPECT_EQ(snap->journal.sidecar_pid, static_cast<std::uint32_t>(getpid()))
      << "the refused starts took the journal's reader role away from the first sidecar";
  EXPECT_TRUE(refused(start_in_another_process(seg.name(), dir.sub("third-log"))))
      << "after the refused starts, a sidecar in another process got in next to the first";
  // The first still works: a durable submit is acknowledged through it.
  std::atomic<bool> returned{false};
  std::thread producer([&] {
    SubmitOptions so;
    so.durable = true;
    so.queue = "later";
    so.timeout_ns = kHangTimeoutNs;
    auto id = seg.client().submit("echo", "x", so);
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    returned.store(true, std::memory_order_release);
  });
  const auto deadline = steady_clock::now() + kHangTimeout;
  Status stepped;
  while (!returned.load(std::memory_order_acquire) && steady_clock::now() < deadline && stepped.is_ok()) {
    auto n = (*first)->step(1'000'000);
    if (!n) stepped = n.status();
  }
  producer.join();
  EXPECT_TRUE(stepped.is_ok()) << stepped.to_string();
}

// ---- the log of a drained journal ----------------------------------------------------

TEST(SidecarTest, ADrainedLogHoldsExactlyTheUnfinishedTasksWithTheirSpecs) {
  TestSegment seg("fold", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  StartReport rep;
  auto sc = Sidecar::start(options_for(seg.name(), dir.log()), &rep);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  EXPECT_FALSE(rep.log_knew_segment);
  EXPECT_EQ(rep.tasks_to_restore, 0u);
  EXPECT_TRUE((*sc)->restore_done());
  const std::uint64_t epoch = (*sc)->epoch();
  EXPECT_EQ(epoch, rep.epoch);

  Client& c = seg.client();
  std::vector<Expected> pending = submit_echo(c, "later", 10, "later");
  std::vector<Expected> consumed, unread;
  {
    WorkerThread wt(seg.worker(default_queue_only()));
    consumed = submit_echo(c, "read", 20);
    unread = submit_echo(c, "unread", 20);
    consume(c, consumed);
    finish_unread(c, unread);
    ASSERT_TRUE(wt.stop_and_join());
  }
  ASSERT_TRUE(drain(**sc, seg.name()));

  Fold f;
  ASSERT_TRUE(fold_log(dir.log(), f));
  expect_live_exactly(f, epoch, concat(pending, unread));
  // Every state change once, in its own record type.
  EXPECT_EQ(f.count(log::RecordType::kSegmentAttached, epoch), 1u);
  EXPECT_EQ(f.count(log::RecordType::kResyncBegin, epoch), 1u);
  EXPECT_EQ(f.count(log::RecordType::kResyncEnd, epoch), 1u);
  EXPECT_EQ(f.count(log::RecordType::kTaskSnapshot, epoch), 0u) << "the segment was empty at start";
  EXPECT_EQ(f.count(log::RecordType::kSubmitted, epoch), 50u);
  EXPECT_EQ(f.count(log::RecordType::kStarted, epoch), 40u);
  EXPECT_EQ(f.count(log::RecordType::kSucceeded, epoch), 40u);
  EXPECT_EQ(f.freed(log::FreeReason::kConsumed, epoch), 20u);
  EXPECT_EQ(f.count(log::RecordType::kFreed, epoch) - f.freed(log::FreeReason::kSlotFree, epoch), 20u)
      << "frees other than the consumed ones (a snapshot's free slots aside)";
  EXPECT_EQ(f.count(log::RecordType::kRequeued, epoch), 0u);
  EXPECT_EQ(f.count(log::RecordType::kFailed, epoch), 0u);
  EXPECT_EQ(f.count(log::RecordType::kCancelled, epoch), 0u);
  EXPECT_EQ(f.count(log::RecordType::kRecovered, epoch), 0u);
  const log::StateCounts counts = f.state.counts();
  EXPECT_EQ(counts.invalid, 0u);
  EXPECT_EQ(counts.live_pending, 10u);
  EXPECT_EQ(counts.live_succeeded, 20u);
  EXPECT_EQ(counts.live_running + counts.live_failed + counts.live_cancelled, 0u);
  EXPECT_EQ(f.state.last_epoch(), epoch);
  EXPECT_EQ(f.state.last_segment(), seg.name());
  // The sidecar's own accounting agrees with the log.
  const SidecarStats& st = (*sc)->stats();
  EXPECT_EQ(st.events, 50u + 40u + 40u + 20u);
  EXPECT_EQ(st.records, f.report.records);
  EXPECT_EQ(st.holes, 0u);
  EXPECT_EQ(st.bad_events, 0u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_EQ(st.resyncs, 1u) << "only the start resync";
}

// ---- durable acknowledgements --------------------------------------------------------

// Submits one durable task on a thread while the test thread holds the
// sidecar back, then steps it. Checks that the submit returned only after a
// step, and that the task's kSubmitted record was in the log by then.
void durable_submit_waits_for(TestSegment& seg, Sidecar& sc, const std::string& log_dir, TaskId& out) {
  auto before = read_snapshot(seg.name());
  ASSERT_TRUE(before.is_ok());
  std::atomic<bool> returned{false};
  Result<TaskId> got = invalid_argument("not yet");
  std::thread producer([&] {
    SubmitOptions so;
    so.durable = true;
    so.queue = "later";
    so.timeout_ns = kHangTimeoutNs;
    got = seg.client().submit("echo", "durable payload", so);
    returned.store(true, std::memory_order_release);
  });
  // The event is in the journal; without a step the submit must not return.
  const bool journalled = wait_until([&] {
    auto s = read_snapshot(seg.name());
    return s && s->journal.written > before->journal.written;
  });
  EXPECT_TRUE(journalled) << "the durable submit never reached the journal";
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned.load(std::memory_order_acquire))
      << "a durable submit returned before the sidecar read its event";
  const auto deadline = steady_clock::now() + kHangTimeout;
  Status stepped;
  while (!returned.load(std::memory_order_acquire) && steady_clock::now() < deadline && stepped.is_ok()) {
    auto n = sc.step(1'000'000);
    if (!n) stepped = n.status();
  }
  producer.join();  // its submit times out by itself if no step acknowledged it
  ASSERT_TRUE(stepped.is_ok()) << stepped.to_string();
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  out = *got;
  // On disk (or in the page cache, as the policy says) when submit returned.
  bool found = false;
  auto rep = log::read_log(log_dir, [&](const log::Record& r) {
    if (r.type == log::RecordType::kSubmitted && r.task_id == out.value && r.spec.has_value() &&
        r.spec->payload == "durable payload") {
      found = true;
    }
    return true;
  });
  ASSERT_TRUE(rep.is_ok()) << rep.status().to_string();
  EXPECT_TRUE(found) << "the acknowledged task's kSubmitted record is not in the log";
  auto after = read_snapshot(seg.name());
  ASSERT_TRUE(after.is_ok());
  EXPECT_GT(after->journal.durable, before->journal.durable);
}

TEST(SidecarTest, DurableSubmitReturnsOnlyAfterAStepSyncedIt) {
  TestSegment seg("durable", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  auto sc = Sidecar::start(options_for(seg.name(), dir.log()));
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  const std::uint64_t syncs = (*sc)->stats().syncs;
  const std::uint64_t synced_submits = (*sc)->stats().submits_synced;
  TaskId id;
  durable_submit_waits_for(seg, **sc, dir.log(), id);
  EXPECT_GT((*sc)->stats().syncs, syncs) << "acknowledged without an fdatasync under --fsync always";
  EXPECT_GE((*sc)->stats().submits_synced, synced_submits + 1);
}

TEST(SidecarTest, DurableSubmitWithFsyncNeverReturnsOnceWrittenWithoutASync) {
  TestSegment seg("never", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  SidecarOptions o = options_for(seg.name(), dir.log());
  o.fsync.kind = FsyncPolicy::Kind::kNever;
  auto sc = Sidecar::start(o);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  const std::uint64_t syncs = (*sc)->stats().syncs;
  TaskId id;
  durable_submit_waits_for(seg, **sc, dir.log(), id);
  EXPECT_EQ((*sc)->stats().syncs, syncs) << "--fsync never synced for an acknowledgement";
  EXPECT_GT((*sc)->stats().durable_position, 0u);
}

TEST(SidecarTest, DurableSubmitWithAnIntervalPolicyWaitsForTheNextSync) {
  TestSegment seg("interval", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  SidecarOptions o = options_for(seg.name(), dir.log());
  o.fsync = parse_fsync_policy("interval:20").value();
  auto sc = Sidecar::start(o);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  const std::uint64_t syncs = (*sc)->stats().syncs;
  TaskId id;
  durable_submit_waits_for(seg, **sc, dir.log(), id);
  EXPECT_GT((*sc)->stats().syncs, syncs) << "acknowledged before the interval's fdatasync";
}

// ---- restarts ------------------------------------------------------------------------

TEST(SidecarTest, ARestartOnTheSameSegmentKnowsItAndRestoresNothing) {
  TestSegment seg("restart", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  Client& c = seg.client();
  std::vector<Expected> pending, unread;
  std::uint64_t epoch = 0;
  {
    auto sc = Sidecar::start(options_for(seg.name(), dir.log()));
    ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
    epoch = (*sc)->epoch();
    pending = submit_echo(c, "later", 5, "later");
    WorkerThread wt(seg.worker(default_queue_only()));
    unread = submit_echo(c, "unread", 3);
    finish_unread(c, unread);
    ASSERT_TRUE(wt.stop_and_join());
    ASSERT_TRUE(drain(**sc, seg.name()));
  }  // the first sidecar is gone, without finish()
  // A task submitted while no sidecar runs: the restart's snapshot has it.
  std::vector<Expected> meanwhile = submit_echo(c, "meanwhile", 2, "later");

  StartReport rep;
  auto sc = Sidecar::start(options_for(seg.name(), dir.log()), &rep);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  EXPECT_TRUE(rep.log_knew_segment);
  EXPECT_EQ(rep.epoch, epoch);
  EXPECT_EQ(rep.tasks_to_restore, 0u);
  EXPECT_FALSE(rep.repair.truncated);
  EXPECT_TRUE((*sc)->restore_done());
  const LogRestoreReport restored = (*sc)->restore_report();
  EXPECT_EQ(restored.resubmitted + restored.results_restored + restored.skipped, 0u);
  EXPECT_TRUE(restored.mapping.empty());
  ASSERT_TRUE(drain(**sc, seg.name()));
  // Nothing was put in twice.
  EXPECT_EQ(seg.tasks_in(TaskState::kPending), 7u);
  EXPECT_EQ(seg.tasks_in(TaskState::kSucceeded), 3u);
  Fold f;
  ASSERT_TRUE(fold_log(dir.log(), f));
  expect_live_exactly(f, epoch, concat(concat(pending, unread), meanwhile));
  EXPECT_EQ(f.count(log::RecordType::kSegmentAttached, epoch), 2u);
  EXPECT_EQ(f.count(log::RecordType::kRecovered, epoch), 0u);
  EXPECT_EQ(f.state.counts().epochs, 1u);
}

// A host restart: everything of segment A is gone but the log. The next
// segment's sidecar resubmits A's pending tasks and restores its unread
// results; a worker then runs the resubmitted ones with their payloads.
// After everything is read and one more host restart, nothing comes back.
TEST(SidecarTest, AHostRestartResubmitsPendingTasksAndRestoresUnreadResultsOnce) {
  TempDir dir;
  std::vector<Expected> pending, unread;
  {
    TestSegment a("hostA", journal_config());
    ASSERT_TRUE(a.status().is_ok()) << a.status().to_string();
    auto sc = Sidecar::start(options_for(a.name(), dir.log()));
    ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
    Client& c = a.client();
    pending = submit_echo(c, "later", 8, "later");
    WorkerThread wt(a.worker(default_queue_only()));
    unread = submit_echo(c, "unread", 6);
    consume(c, submit_echo(c, "read", 4));
    finish_unread(c, unread);
    ASSERT_TRUE(wt.stop_and_join());
    ASSERT_TRUE(drain(**sc, a.name()));
  }  // sidecar, client and segment A gone

  std::optional<TestSegment> next;
  next.emplace("hostB", journal_config());
  TestSegment& b = *next;
  ASSERT_TRUE(b.status().is_ok()) << b.status().to_string();
  {
    StartReport rep;
    auto sc = Sidecar::start(options_for(b.name(), dir.log()), &rep);
    ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
    EXPECT_FALSE(rep.log_knew_segment);
    EXPECT_EQ(rep.tasks_to_restore, 14u);
    ASSERT_TRUE(step_until_restored(**sc));
    const LogRestoreReport r = (*sc)->restore_report();
    EXPECT_EQ(r.resubmitted, 8u);
    EXPECT_EQ(r.results_restored, 6u);
    EXPECT_EQ(r.skipped, 0u);
    EXPECT_EQ(r.expired, 0u);
    EXPECT_TRUE(r.problems.empty()) << r.problems.front();
    std::map<std::uint64_t, std::uint64_t> mapping(r.mapping.begin(), r.mapping.end());
    EXPECT_EQ(mapping.size(), r.mapping.size()) << "an old id is mapped twice";
    EXPECT_EQ(mapping.size(), 14u);
    Client& c = b.client();
    // The unread results are readable under their new ids, without a worker.
    for (const Expected& e : unread) {
      const auto it = mapping.find(e.id.value);
      ASSERT_NE(it, mapping.end()) << "unread task " << to_string(e.id) << " was not restored";
      auto got = c.try_get(TaskId{it->second});
      ASSERT_TRUE(got.is_ok()) << got.status().to_string();
      ASSERT_TRUE(got->has_value()) << "restored result of " << to_string(e.id) << " is not finished";
      EXPECT_EQ((*got)->state, TaskState::kSucceeded);
      EXPECT_EQ((*got)->value, e.payload);
    }
    // The pending ones wait in their queue until a worker runs them.
    std::vector<Expected> resubmitted;
    for (const Expected& e : pending) {
      const auto it = mapping.find(e.id.value);
      ASSERT_NE(it, mapping.end()) << "pending task " << to_string(e.id) << " was not resubmitted";
      auto info = c.peek(TaskId{it->second});
      ASSERT_TRUE(info.is_ok()) << info.status().to_string();
      EXPECT_EQ(info->state, TaskState::kPending);
      EXPECT_EQ(info->queue, "later");
      EXPECT_EQ(info->task_name, "echo");
      Expected n = e;
      n.id = TaskId{it->second};
      resubmitted.push_back(std::move(n));
    }
    {
      WorkerThread wt(b.worker());
      consume(c, resubmitted);
      ASSERT_TRUE(wt.stop_and_join());
    }
    ASSERT_TRUE(drain(**sc, b.name()));
    Fold f;
    ASSERT_TRUE(fold_log(dir.log(), f));
    EXPECT_EQ(f.count(log::RecordType::kRecovered, (*sc)->epoch()), 14u);
    EXPECT_TRUE(f.state.live_tasks().empty()) << f.state.live_tasks().size() << " tasks still live";
  }
  next.reset();  // the next host restart: B is gone too
  next.emplace("hostC", journal_config());
  TestSegment& c = *next;
  ASSERT_TRUE(c.status().is_ok()) << c.status().to_string();
  StartReport rep;
  auto sc = Sidecar::start(options_for(c.name(), dir.log()), &rep);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  EXPECT_EQ(rep.tasks_to_restore, 0u) << "tasks carried over (kRecovered) or read came back";
  ASSERT_TRUE(step_until_restored(**sc));
  const LogRestoreReport r = (*sc)->restore_report();
  EXPECT_EQ(r.resubmitted + r.results_restored + r.skipped, 0u);
  EXPECT_EQ(c.free_slots(), c.config().slots);
}

// A result restored into a new segment is logged whole (as a task
// snapshot), so it survives a second host restart before anyone reads it.
TEST(SidecarTest, RestoredUnreadResultsSurviveASecondHostRestart) {
  TempDir dir;
  std::vector<Expected> pending, unread;
  {
    TestSegment a("twiceA", journal_config());
    ASSERT_TRUE(a.status().is_ok()) << a.status().to_string();
    auto sc = Sidecar::start(options_for(a.name(), dir.log()));
    ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
    Client& c = a.client();
    pending = submit_echo(c, "later", 3, "later");
    WorkerThread wt(a.worker(default_queue_only()));
    unread = submit_echo(c, "unread", 5);
    finish_unread(c, unread);
    ASSERT_TRUE(wt.stop_and_join());
    ASSERT_TRUE(drain(**sc, a.name()));
  }
  // Segment B: restore, read nothing, no worker for "later"; then B is lost too.
  std::map<std::uint64_t, std::uint64_t> in_b;
  {
    TestSegment b("twiceB", journal_config());
    ASSERT_TRUE(b.status().is_ok()) << b.status().to_string();
    auto sc = Sidecar::start(options_for(b.name(), dir.log()));
    ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
    ASSERT_TRUE(step_until_restored(**sc));
    const LogRestoreReport r = (*sc)->restore_report();
    ASSERT_EQ(r.resubmitted, 3u);
    ASSERT_EQ(r.results_restored, 5u);
    in_b.insert(r.mapping.begin(), r.mapping.end());
    ASSERT_TRUE(drain(**sc, b.name()));
    Fold f;
    ASSERT_TRUE(fold_log(dir.log(), f));
    EXPECT_EQ(f.state.counts().invalid, 0u) << "the log holds records the fold rejects";
    EXPECT_EQ(f.live((*sc)->epoch()).size(), 8u) << "segment B's live tasks as the log knows them";
  }
  TestSegment c("twiceC", journal_config());
  ASSERT_TRUE(c.status().is_ok()) << c.status().to_string();
  StartReport rep;
  auto sc = Sidecar::start(options_for(c.name(), dir.log()), &rep);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  EXPECT_EQ(rep.tasks_to_restore, 8u) << "B's 3 pending tasks and 5 unread results, and none of A's again";
  ASSERT_TRUE(step_until_restored(**sc));
  const LogRestoreReport r = (*sc)->restore_report();
  EXPECT_EQ(r.resubmitted, 3u);
  EXPECT_EQ(r.results_restored, 5u);
  std::map<std::uint64_t, std::uint64_t> in_c(r.mapping.begin(), r.mapping.end());
  for (const Expected& e : unread) {
    ASSERT_EQ(in_b.count(e.id.value), 1u);
    const auto it = in_c.find(in_b[e.id.value]);
    ASSERT_NE(it, in_c.end()) << "the result of " << to_string(e.id) << " (in B: " << in_b[e.id.value]
                              << ") was lost at the second host restart";
    auto got = c.client().try_get(TaskId{it->second});
    ASSERT_TRUE(got.is_ok() && got->has_value());
    EXPECT_EQ((*got)->value, e.payload);
  }
}

// Destroying a sidecar while its restore waits for journal room returns:
// the destructor steps until the restore is done before joining it.
TEST(SidecarTest, DestroyingASidecarWhileItRestoresReturns) {
  TempDir dir;
  {
    TestSegment a("dtorA", journal_config());
    ASSERT_TRUE(a.status().is_ok()) << a.status().to_string();
    auto sc = Sidecar::start(options_for(a.name(), dir.log()));
    ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
    (void)submit_echo(a.client(), "later", 200, "later");
    ASSERT_TRUE(drain(**sc, a.name()));
  }
  // Segment B's journal has 64 cells: fewer than the 200 restored submits.
  TestSegment b("dtorB", journal_config(JournalMode::kDurable, 64));
  ASSERT_TRUE(b.status().is_ok()) << b.status().to_string();
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    {
      auto sc = Sidecar::start(options_for(b.name(), dir.log()));
      if (!sc) _exit(2);
    }  // destroyed at once, restore still running
    _exit(0);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  const bool ended = wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; });
  if (!ended) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  EXPECT_TRUE(ended) << "~Sidecar did not return within " << kHangTimeout.count()
                     << " s while its restore waited for journal room";
  if (ended) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
}

// ---- compaction, torn tails, overflow ------------------------------------------------

TEST(SidecarTest, CompactionRemovesOldFilesKeepsTheLogBoundedAndKeepsEveryLiveTask) {
  EngineConfig cfg = journal_config(JournalMode::kDurable, 1024);
  cfg.slots = 256;
  TestSegment seg("compact", cfg);
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  SidecarOptions o = options_for(seg.name(), dir.log());
  o.file_bytes = 8 << 10;
  o.compact_bytes = 64 << 10;
  o.batch = 64;  // a step writes at most 64 events: bounds the overshoot
  auto sc = Sidecar::start(o);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  const std::uint64_t epoch = (*sc)->epoch();
  Client& c = seg.client();
  // Live through the whole run: their own records end up in removed files.
  std::vector<Expected> pending = submit_echo(c, "later", 5, "later");
  std::vector<Expected> unread;
  constexpr int kTraffic = 1500;
  {
    WorkerThread wt(seg.worker(default_queue_only()));
    unread = submit_echo(c, "unread", 3);
    finish_unread(c, unread);
    std::atomic<bool> done{false};
    std::atomic<int> completed{0};
    std::thread producer([&] {
      SubmitOptions so;
      so.timeout_ns = kHangTimeoutNs;
      const std::string pad(200, 'p');
      for (int i = 0; i < kTraffic; ++i) {
        const std::string p = "traffic-" + std::to_string(i) + pad;
        auto id = c.submit("echo", p, so);
        if (!id) {
          ADD_FAILURE() << "submit " << i << ": " << id.status().to_string();
          break;
        }
        auto out = c.wait(*id, kHangTimeoutNs);
        if (!out || out->value != p) {
          ADD_FAILURE() << "task " << i << ": " << (out ? "wrong value" : out.status().to_string());
          break;
        }
        completed.fetch_add(1, std::memory_order_relaxed);
      }
      done.store(true, std::memory_order_release);
    });
    const auto deadline = steady_clock::now() + 4 * kHangTimeout;
    Status stepped;
    while (!done.load(std::memory_order_acquire) && steady_clock::now() < deadline && stepped.is_ok()) {
      auto n = (*sc)->step(1'000'000);
      if (!n) stepped = n.status();
    }
    // If stepping stopped early, the producer may wait for journal room for
    // good (a durable journal has no timeout there); the ctest timeout ends it.
    producer.join();
    ASSERT_TRUE(stepped.is_ok()) << stepped.to_string();
    ASSERT_EQ(completed.load(), kTraffic);
    ASSERT_TRUE(wt.stop_and_join());
  }
  ASSERT_TRUE(drain(**sc, seg.name()));
  const SidecarStats& st = (*sc)->stats();
  EXPECT_GE(st.compactions, 3u) << "the traffic should have filled the log several times over";
  EXPECT_GT(st.files_removed, 0u);
  Fold f;
  ASSERT_TRUE(fold_log(dir.log(), f));
  EXPECT_GT(f.report.first_seq, 1u) << "the oldest records are still there";
  std::uint64_t on_disk = 0;
  for (const auto& e : fs::directory_iterator(dir.log())) {
    if (e.is_regular_file()) on_disk += e.file_size();
  }
  // compact_bytes, plus at most one step's records and the compaction's
  // snapshot of 256 slots: well under three times it.
  EXPECT_LT(on_disk, 3 * o.compact_bytes) << "the log is not bounded by compaction";
  expect_live_exactly(f, epoch, concat(pending, unread));
  EXPECT_EQ(f.state.counts().invalid, 0u);
}

TEST(SidecarTest, ATornTailIsRepairedAtTheNextStartAndTheSidecarRunsOn) {
  TestSegment seg("torn", journal_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  Client& c = seg.client();
  std::vector<Expected> before = submit_echo(c, "before", 5, "later");
  std::uint64_t epoch = 0;
  {
    auto sc = Sidecar::start(options_for(seg.name(), dir.log()));
    ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
    epoch = (*sc)->epoch();
    ASSERT_TRUE(drain(**sc, seg.name()));
    ASSERT_TRUE((*sc)->finish().is_ok());
  }
  // Cut the last file 5 bytes into its last record's end.
  Fold whole;
  ASSERT_TRUE(fold_log(dir.log(), whole));
  ASSERT_FALSE(whole.report.files.empty());
  ASSERT_FALSE(whole.records.empty());
  const std::string last_file = whole.report.files.back().path;
  const std::uint64_t size = fs::file_size(last_file);
  const std::uint64_t last_len = log::encoded_size(whole.records.back());
  ASSERT_GT(last_len, 5u);
  fs::resize_file(last_file, size - 5);

  StartReport rep;
  auto sc = Sidecar::start(options_for(seg.name(), dir.log()), &rep);
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  EXPECT_TRUE(rep.repair.truncated);
  EXPECT_EQ(fs::path(rep.repair.file).filename(), fs::path(last_file).filename());
  EXPECT_EQ(rep.repair.offset, size - last_len);
  EXPECT_EQ(rep.repair.bytes_dropped, last_len - 5);
  EXPECT_FALSE(rep.repair.reason.empty());
  EXPECT_TRUE(rep.log_knew_segment);
  EXPECT_EQ(rep.read.last_seq, whole.report.last_seq - 1);
  // It runs on: new tasks reach the log after the cut.
  std::vector<Expected> after = submit_echo(c, "after", 3, "later");
  ASSERT_TRUE(drain(**sc, seg.name()));
  Fold f;
  ASSERT_TRUE(fold_log(dir.log(), f));
  EXPECT_EQ(f.report.first_seq, 1u);
  EXPECT_EQ(f.report.last_seq, f.report.records);
  expect_live_exactly(f, epoch, concat(before, after));
}

TEST(SidecarTest, ABestEffortJournalThatOverflowsIsCoveredByAResync) {
  TestSegment seg("overflow", journal_config(JournalMode::kBestEffort, 64));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  TempDir dir;
  auto sc = Sidecar::start(options_for(seg.name(), dir.log()));
  ASSERT_TRUE(sc.is_ok()) << sc.status().to_string();
  const std::uint64_t epoch = (*sc)->epoch();
  const std::uint64_t resyncs = (*sc)->stats().resyncs;
  Client& c = seg.client();
  // A flood with no step in between: far more events than 64 cells.
  std::vector<Expected> pending = submit_echo(c, "later", 20, "later");
  std::vector<Expected> consumed, unread;
  {
    WorkerThread wt(seg.worker(default_queue_only()));
    for (int i = 0; i < 150; ++i) {
      consumed.push_back(submit_echo(c, "read" + std::to_string(i), 1).front());
      unread.push_back(submit_echo(c, "unread" + std::to_string(i), 1).front());
    }
    consume(c, consumed);
    finish_unread(c, unread);
    ASSERT_TRUE(wt.stop_and_join());
  }
  auto snap = read_snapshot(seg.name());
  ASSERT_TRUE(snap.is_ok());
  ASSERT_GT(snap->journal.dropped, 0u) << "the flood did not overflow the journal: the test tests nothing";
  ASSERT_TRUE(drain(**sc, seg.name()));
  const SidecarStats& st = (*sc)->stats();
  EXPECT_GT(st.resyncs, resyncs) << "events were dropped but the sidecar did not resync";
  EXPECT_EQ(st.dropped, snap->journal.dropped);
  Fold f;
  ASSERT_TRUE(fold_log(dir.log(), f));
  EXPECT_GE(f.count(log::RecordType::kResyncBegin, epoch), 2u);
  expect_live_exactly(f, epoch, concat(pending, unread));
  EXPECT_EQ(f.state.counts().invalid, 0u);
}

}  // namespace
}  // namespace taskring::sidecar
