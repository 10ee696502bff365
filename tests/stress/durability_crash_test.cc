// The durability crash test of the durable-log issue: under load from
// producers that submit with durable acknowledgements, the test SIGKILLs the
// sidecar or a worker at random moments, round after round, and starts a
// replacement (a new sidecar takes the journal's reader role over from the
// dead one; a dead worker's tasks are requeued by crash recovery). Then a
// "host crash": every process is SIGKILLed and the segment is destroyed, so
// only the log is left. A new segment is created, recover_from_log puts the
// log's live tasks back, a worker runs them, and the test checks that every
// task whose durable submit was acknowledged survived: either the log shows
// it finished before the crash, or it was restored and completed in the new
// segment with its own payload. No acknowledged task may be missing.
//
// Rounds and seed:
//   TASKRING_DURABILITY_ROUNDS  rounds of kill + restart (default 20, about
//                               a second; a few under ASan). A long run:
//                                 TASKRING_DURABILITY_ROUNDS=1000 tests/stress/durability_crash_test
//   TASKRING_TEST_SEED          the seed of the schedule (who dies, when, the
//                               fsync policy, every child's own choices);
//                               random if unset.
// Both are printed first, as a line to paste to replay the run. A replay
// repeats the schedule, not the kernel's interleaving.
//
// The oracle, in a MAP_SHARED anonymous mapping made before any fork: each
// producer owns a region of task records; record r of producer p is the
// task with payload "dc:p:r" (one in eight padded so that payload and result
// live in arena blocks). A record is kSubmitting before the submit call,
// kAcked (with its id) once a durable submit returned OK, kUnacked if it
// returned an error (its deadline passed while no sidecar served: the task
// may exist, but nothing was promised about it). Producers read the
// outcomes of even records (in a window of 8) and leave odd ones unread, so
// the crash finds pending, running, finished-unread and read tasks.
//
// Accounting after the host crash, over every kAcked record, with the old
// log folded (LogState) before recovery and the ids of every record that
// says a task ended (terminal, terminal snapshot, or freed) collected in the
// same pass:
//   * restored: recover_from_log's mapping has its old id, and waiting for
//     the new id in the new segment gives succeeded with its payload;
//   * finished before the crash: not live in the fold, and a record says it
//     ended;
//   * anything else is a lost acknowledged task, and fails the test.
// Compaction is off (compact_bytes 0), so every record of the run is still
// in the log for the second rule.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "layout_internal.h"
#include "mp_harness.h"
#include "sidecar.h"
#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/log.h"
#include "taskring/log_state.h"
#include "taskring/recovery.h"
#include "taskring/status.h"
#include "taskring/worker.h"
#include "test_support.h"

namespace taskring::stress {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;
using namespace std::chrono_literals;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSlowBuild = true;
#else
constexpr bool kSlowBuild = kSanitized;
#endif

constexpr int kWorkers = 2;
constexpr int kProducers = 2;
constexpr int kDefaultRounds = 20;
constexpr std::uint64_t kReadWindow = 8;    // even records in flight before the producer waits for one
constexpr std::uint64_t kMaxUnread = 1500;  // per producer: past it, every task is read
constexpr std::uint64_t kMaxBatch = 8;
constexpr std::uint32_t kMaxAttempts = 255;
constexpr std::int64_t kDurableTimeoutNs = 10'000'000'000;

// ---- the oracle --------------------------------------------------------------------------

enum SubmitState : std::uint8_t { kUnused = 0, kSubmitting = 1, kAcked = 2, kUnacked = 3 };
enum ReadState : std::uint8_t { kNotRead = 0, kReadGood = 1, kReadWrong = 2 };

struct TaskRecord {
  std::atomic<std::uint64_t> id{0};  // TaskId, valid once submit == kAcked
  std::atomic<std::uint32_t> runs{0};
  std::atomic<std::uint8_t> submit{kUnused};
  std::atomic<std::uint8_t> read{kNotRead};
};
static_assert(sizeof(TaskRecord) <= 16);

struct ProducerState {
  std::atomic<std::uint64_t> cursor{0};  // records [0, cursor) were handed to submit
  std::atomic<std::uint64_t> acked{0};
  std::atomic<std::uint64_t> unacked{0};
  std::atomic<std::uint64_t> read{0};
  std::atomic<std::uint64_t> exhausted{0};  // the region ran out: it only reads from then on
};

struct Totals {
  std::atomic<std::uint64_t> handler_bad{0};  // payloads the handler could not place
};

class Oracle {
 public:
  explicit Oracle(std::uint64_t per_producer)
      : per_(per_producer),
        records_(static_cast<std::size_t>(per_producer * kProducers)),
        producers_(kProducers),
        totals_(1) {}
  std::uint64_t per_producer() const { return per_; }
  TaskRecord& rec(int p, std::uint64_t r) const {
    return records_[static_cast<std::size_t>(static_cast<std::uint64_t>(p) * per_ + r)];
  }
  ProducerState& producer(int p) const { return producers_[static_cast<std::size_t>(p)]; }
  Totals& totals() const { return totals_[0]; }
  bool ok() const { return records_.size() > 0 && producers_.size() > 0 && totals_.size() > 0; }

 private:
  std::uint64_t per_;
  SharedArray<TaskRecord> records_;
  SharedArray<ProducerState> producers_;
  SharedArray<Totals> totals_;
};

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string dc_payload(int p, std::uint64_t r) {
  std::string s = "dc:" + std::to_string(p) + ":" + std::to_string(r);
  if (r % 8 == 5) s += ":" + std::string(static_cast<std::size_t>(40 + (r * 37) % 300), '.');
  return s;
}

bool parse_dc_payload(std::string_view s, int& p, std::uint64_t& r) {
  if (s.substr(0, 3) != "dc:") return false;
  s.remove_prefix(3);
  const std::size_t colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  const std::string ps(s.substr(0, colon));
  std::string_view rest = s.substr(colon + 1);
  const std::string rs(rest.substr(0, rest.find(':')));
  if (ps.empty() || rs.empty()) return false;
  char* end = nullptr;
  const unsigned long pv = std::strtoul(ps.c_str(), &end, 10);
  if (*end != '\0' || pv >= static_cast<unsigned long>(kProducers)) return false;
  const unsigned long long rv = std::strtoull(rs.c_str(), &end, 10);
  if (*end != '\0') return false;
  p = static_cast<int>(pv);
  r = rv;
  return true;
}

std::string task_name(int p, std::uint64_t r) {
  return "task (producer " + std::to_string(p) + ", record " + std::to_string(r) + ")";
}

// ---- children ------------------------------------------------------------------------------

// Handler "dc": counts the run, spins 0-100 microseconds (one task in 32: a
// millisecond) so that kills land inside tasks, and returns the payload.
int dc_worker(const Oracle& o, const std::string& segment, std::uint64_t seed) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  WorkerOptions options;
  constexpr std::uint32_t kBatches[] = {1, 4, 16};
  options.claim_batch = kBatches[seed % 3];
  auto w = Worker::attach(segment, options);
  if (!w) {
    child_log("worker attach: %s", w.status().to_string().c_str());
    return kExitAttach;
  }
  const Status reg = (*w)->register_handler("dc", [&o](TaskContext& ctx) {
    int p = 0;
    std::uint64_t r = 0;
    if (!parse_dc_payload(ctx.payload(), p, r) || r >= o.per_producer()) {
      o.totals().handler_bad.fetch_add(1);
      ctx.fail("dc: bad payload");
      return;
    }
    o.rec(p, r).runs.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after every process is gone
    const std::uint64_t h = splitmix(r * 977 + static_cast<std::uint64_t>(p) * 131 + ctx.attempt());
    const auto spin = std::chrono::microseconds(h % 32 == 0 ? 1000 : static_cast<long>(h % 100));
    const auto until = steady_clock::now() + spin;
    while (steady_clock::now() < until) {
    }
    ctx.set_result(ctx.payload());
  });
  if (!reg.is_ok()) {
    child_log("register: %s", reg.to_string().c_str());
    return kExitRegister;
  }
  return run_until_sigterm(**w, term);
}

// Runs a sidecar until it is killed (or the segment is destroyed).
int sidecar_child(const sidecar::SidecarOptions& options) {
  auto sc = sidecar::Sidecar::start(options);
  if (!sc) {
    child_log("sidecar start: %s", sc.status().to_string().c_str());
    return kExitAttach;
  }
  static std::atomic<bool> never{false};
  const Status st = (*sc)->run(never);
  if (!st.is_ok()) {
    child_log("sidecar run: %s", st.to_string().c_str());
    return kExitRun;
  }
  return kExitOk;
}

// Submits all of `specs` (a partial batch is legal: the rest goes again).
Status submit_batch_all(Client& c, const std::vector<TaskSpec>& specs, std::vector<TaskId>& ids,
                        const SubmitOptions& so) {
  std::size_t done = 0;
  while (done < specs.size()) {
    auto got = c.submit_batch(std::span<const TaskSpec>(specs).subspan(done), std::span<TaskId>(ids).subspan(done), so);
    if (!got) return got.status();
    if (*got == 0) return internal_error("submit_batch submitted nothing and reported no error");
    done += *got;
  }
  return Status::ok();
}

// Submits durable "dc" tasks (single submits and batches of 2..8) until it
// is killed, reading the outcomes of even records in a window of 8. A submit
// that fails with kDeadlineExceeded (no sidecar acknowledged it in 10 s)
// leaves its records kUnacked and the producer goes on with fresh ones.
int dc_producer(const Oracle& o, const std::string& segment, int p, std::uint64_t seed) {
  auto c = Client::attach(segment);
  if (!c) {
    child_log("producer %d attach: %s", p, c.status().to_string().c_str());
    return kExitAttach;
  }
  Client& client = *c;
  ProducerState& ps = o.producer(p);
  std::mt19937_64 rng(seed);
  SubmitOptions so;
  so.durable = true;
  so.timeout_ns = kDurableTimeoutNs;
  so.max_attempts = kMaxAttempts;
  so.max_crashes = kMaxAttempts;     // a task hit by several kills is no poison
  std::deque<std::uint64_t> window;  // even records to read, ascending
  std::uint64_t unread = 0;

  const auto read_front = [&]() -> int {
    const std::uint64_t r = window.front();
    TaskRecord& rec = o.rec(p, r);
    const TaskId id{rec.id.load()};
    for (;;) {
      auto out = client.wait(id, 1'000'000'000);
      if (out) {
        const bool good = out->state == TaskState::kSucceeded && out->value == dc_payload(p, r) && out->id == id;
        if (!good) {
          child_log("producer %d: %s id %s: state %s value '%s'", p, task_name(p, r).c_str(), to_string(id).c_str(),
                    std::string(state_name(out->state)).c_str(), out->value.substr(0, 60).c_str());
        }
        rec.read.store(good ? kReadGood : kReadWrong);
        ps.read.fetch_add(1);
        break;
      }
      if (out.status().code() == StatusCode::kDeadlineExceeded) continue;  // a worker died, or is slow
      child_log("producer %d: wait for %s: %s", p, task_name(p, r).c_str(), out.status().to_string().c_str());
      return kExitWait;
    }
    window.pop_front();
    return kExitOk;
  };

  std::vector<std::string> payloads;
  std::vector<TaskSpec> specs;
  std::vector<TaskId> ids;
  for (;;) {
    if (window.size() >= kReadWindow) {
      if (const int rc = read_front(); rc != kExitOk) return rc;
      continue;
    }
    const std::uint64_t cur = ps.cursor.load();
    std::uint64_t n = rng() % 3 == 0 ? 2 + rng() % (kMaxBatch - 1) : 1;
    if (cur + n > o.per_producer()) {
      ps.exhausted.store(1);
      if (!window.empty()) {
        if (const int rc = read_front(); rc != kExitOk) return rc;
      } else {
        std::this_thread::sleep_for(5ms);
      }
      continue;
    }
    payloads.clear();
    for (std::uint64_t i = 0; i < n; ++i) {
      o.rec(p, cur + i).submit.store(kSubmitting);
      payloads.push_back(dc_payload(p, cur + i));
    }
    ps.cursor.store(cur + n);
    Status failed;
    if (n == 1) {
      auto id = client.submit("dc", payloads[0], so);
      if (id) {
        ids.assign(1, *id);
      } else {
        failed = id.status();
      }
    } else {
      specs.clear();
      for (const auto& s : payloads) specs.push_back({"dc", s});
      ids.assign(static_cast<std::size_t>(n), TaskId{});
      auto got = submit_batch_all(client, specs, ids, so);
      if (!got.is_ok()) failed = got;
    }
    if (!failed.is_ok()) {
      if (failed.code() != StatusCode::kDeadlineExceeded) {
        child_log("producer %d: submit at %s: %s", p, task_name(p, cur).c_str(), failed.to_string().c_str());
        return kExitSubmit;
      }
      for (std::uint64_t i = 0; i < n; ++i) o.rec(p, cur + i).submit.store(kUnacked);
      ps.unacked.fetch_add(n);
      continue;
    }
    for (std::uint64_t i = 0; i < n; ++i) {
      TaskRecord& rec = o.rec(p, cur + i);
      rec.id.store(ids[static_cast<std::size_t>(i)].value);
      rec.submit.store(kAcked);
      if ((cur + i) % 2 == 0 || unread >= kMaxUnread) {
        window.push_back(cur + i);
      } else {
        ++unread;
      }
    }
    ps.acked.fetch_add(n);
  }
}

// ---- the supervisor --------------------------------------------------------------------

// A fresh directory under the test temp dir, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    path_ = ::testing::TempDir() + "taskring-durability-" + std::to_string(getpid());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string log() const { return path_ + "/log"; }

 private:
  std::string path_;
};

EngineConfig durable_config() {
  EngineConfig c = testing::small_config();
  c.slots = 8192;  // room for every unread result (kMaxUnread per producer) and the tasks in flight
  c.payload_area = 8 << 20;
  c.journal = JournalMode::kDurable;
  c.journal_capacity = 16384;
  return c;
}

// What the old log said about the old segment's tasks.
struct OldLog {
  log::ReadReport report;
  std::map<std::uint64_t, log::LiveTask> live;                  // task id -> its last known state
  std::unordered_set<std::uint64_t> ended;                      // task ids some record says ended
  std::unordered_map<std::uint64_t, std::uint64_t> records_of;  // task id -> records naming it
  log::StateCounts counts;
};

TEST(DurabilityCrashTest, RandomKillsOfTheSidecarAndWorkersThenAHostCrashLoseNoAcknowledgedTask) {
  const int rounds = taskring::testing::env_count("TASKRING_DURABILITY_ROUNDS", kDefaultRounds);
  const std::uint64_t seed = taskring::testing::env_seed("TASKRING_TEST_SEED");
  std::printf("[ seed     ] TASKRING_TEST_SEED=%" PRIu64 " TASKRING_DURABILITY_ROUNDS=%d\n", seed, rounds);
  std::printf("[ replay   ] TASKRING_TEST_SEED=%" PRIu64
              " TASKRING_DURABILITY_ROUNDS=%d tests/stress/durability_crash_test\n",
              seed, rounds);
  std::fflush(stdout);
  RecordProperty("seed", std::to_string(seed));
  RecordProperty("rounds", rounds);
  SCOPED_TRACE("replay with TASKRING_TEST_SEED=" + std::to_string(seed) +
               " TASKRING_DURABILITY_ROUNDS=" + std::to_string(rounds));

  std::mt19937_64 rng(seed);
  constexpr const char* kPolicies[] = {"always", "interval:5", "never"};
  const char* policy = kPolicies[rng() % 3];
  std::printf("[ setup    ] sidecar --fsync %s, %d workers, %d producers\n", policy, kWorkers, kProducers);

  TempDir dir;
  testing::SegmentGuard guard(testing::unique_segment("durable"));
  const std::string& seg = guard.name();
  const EngineConfig cfg = durable_config();
  ASSERT_TRUE(create_segment(seg, cfg).is_ok());
  std::uint64_t old_epoch = 0;
  {
    auto snap = read_snapshot(seg);
    ASSERT_TRUE(snap.is_ok()) << snap.status().to_string();
    old_epoch = static_cast<std::uint64_t>(snap->created_unix_ns);
  }
  sidecar::SidecarOptions so;
  so.segment = seg;
  so.log_dir = dir.log();
  so.fsync = sidecar::parse_fsync_policy(policy).value();
  so.file_bytes = 1 << 20;  // several files
  so.compact_bytes = 0;     // every record stays: the accounting looks for the one that ended a task

  const std::uint64_t per_producer =
      std::min<std::uint64_t>(1u << 20, 6000 + 400ull * static_cast<std::uint64_t>(rounds));
  const Oracle o(per_producer);
  ASSERT_TRUE(o.ok());
  // The supervisor keeps the segment mapped (worker_exited then finds it
  // in the process's cache); children inherit the mapping across fork.
  std::optional<Client> supervisor;
  {
    auto c = Client::attach(seg);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    supervisor.emplace(std::move(c).value());
  }

  // Whatever ends the test (a failed ASSERT included), no child outlives
  // it. Reaped children are replaced or set to -1 at once.
  struct Children {
    pid_t sidecar = -1;
    std::vector<pid_t> workers, producers;
    std::vector<pid_t> all() const {
      std::vector<pid_t> v = workers;
      v.insert(v.end(), producers.begin(), producers.end());
      v.push_back(sidecar);
      return v;
    }
    ~Children() {
      for (pid_t pid : all()) {
        if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
      }
    }
  } kids;
  std::uint64_t next_worker = 0, next_sidecar = 0;
  const auto start_worker = [&](const std::string& segment) {
    const std::uint64_t s = splitmix(seed ^ (0x5741ull << 48) ^ next_worker++);
    return spawn([&o, segment, s] { return dc_worker(o, segment, s); });
  };
  const auto start_sidecar = [&](const sidecar::SidecarOptions& options) {
    ++next_sidecar;
    return spawn([options] { return sidecar_child(options); });
  };

  std::vector<std::string> failures;
  const auto reaped_unexpectedly = [&](const char* what, pid_t pid, int status, const char* when) {
    ChildResult r;
    r.pid = pid;
    r.exited = WIFEXITED(status);
    r.code = r.exited ? WEXITSTATUS(status) : WTERMSIG(status);
    failures.push_back(std::string(what) + " " + describe(r) + " " + when);
  };
  const auto worker_gone = [&](pid_t pid, int status) {
    auto rep = worker_exited(seg, static_cast<std::uint32_t>(pid), status);
    if (!rep) failures.push_back("worker_exited(" + std::to_string(pid) + "): " + rep.status().to_string());
  };
  // Any child that ended without being killed is a failure; it is replaced.
  const auto check_children = [&](const char* when) {
    int status = 0;
    if (kids.sidecar > 0 && waitpid(kids.sidecar, &status, WNOHANG) == kids.sidecar) {
      reaped_unexpectedly("sidecar", kids.sidecar, status, when);
      kids.sidecar = start_sidecar(so);
    }
    for (pid_t& w : kids.workers) {
      if (waitpid(w, &status, WNOHANG) != w) continue;
      reaped_unexpectedly("worker", w, status, when);
      worker_gone(w, status);
      w = start_worker(seg);
    }
    for (std::size_t p = 0; p < kids.producers.size(); ++p) {
      pid_t& pid = kids.producers[p];
      if (waitpid(pid, &status, WNOHANG) != pid) continue;
      reaped_unexpectedly("producer", pid, status, when);
      pid = -1;  // not replaced: its region's cursor is its own
    }
  };
  const auto kill_and_reap = [&](pid_t pid, int& status) {
    kill(pid, SIGKILL);
    pid_t got = 0;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    return got == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  };

  kids.sidecar = start_sidecar(so);
  for (int i = 0; i < kWorkers; ++i) kids.workers.push_back(start_worker(seg));
  for (int p = 0; p < kProducers; ++p) {
    const std::uint64_t s = splitmix(seed ^ (0x5052ull << 48) ^ static_cast<std::uint64_t>(p));
    kids.producers.push_back(spawn([&o, &seg, p, s] { return dc_producer(o, seg, p, s); }));
  }

  // ---- the rounds ----
  std::uint64_t sidecar_kills = 0, worker_kills = 0;
  const auto t_rounds = steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 28'001));
    check_children("on its own during the rounds");
    int status = 0;
    if (rng() % 2 == 0) {
      ++sidecar_kills;
      if (!kill_and_reap(kids.sidecar, status)) {
        reaped_unexpectedly("sidecar", kids.sidecar, status,
                            ("before it was killed in round " + std::to_string(round)).c_str());
      }
      // Down for a while: durable submits wait, the journal fills.
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'001));
      kids.sidecar = start_sidecar(so);
    } else {
      ++worker_kills;
      pid_t& victim = kids.workers[rng() % kids.workers.size()];
      if (!kill_and_reap(victim, status)) {
        reaped_unexpectedly("worker", victim, status,
                            ("before it was killed in round " + std::to_string(round)).c_str());
      }
      worker_gone(victim, status);
      victim = start_worker(seg);
    }
  }
  check_children("on its own during the rounds");
  // Some load after the last kill, so that the crash finds a bit of everything.
  std::uint64_t acked_before = 0;
  for (int p = 0; p < kProducers; ++p) acked_before += o.producer(p).acked.load();
  bool more = false;
  for (const auto until = steady_clock::now() + (kSlowBuild ? 60s : 30s); !more && steady_clock::now() < until;) {
    std::uint64_t a = 0;
    for (int p = 0; p < kProducers; ++p) a += o.producer(p).acked.load();
    more = a >= acked_before + 50;
    if (!more) std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(more) << "the producers acknowledged fewer than 50 tasks in the last stretch";
  check_children("on its own after the rounds");
  const double rounds_s = std::chrono::duration<double>(steady_clock::now() - t_rounds).count();

  // ---- the host crash: every process dies, the memory is lost ----
  {
    std::vector<pid_t> all = kids.all();
    for (pid_t pid : all) {
      if (pid > 0) kill(pid, SIGKILL);
    }
    for (pid_t pid : all) {
      if (pid > 0) waitpid(pid, nullptr, 0);
    }
    kids.sidecar = -1;
    kids.workers.clear();
    kids.producers.clear();
  }
  supervisor.reset();
  ASSERT_TRUE(destroy_segment(seg).is_ok());

  // ---- the old log, as the crash left it ----
  OldLog old;
  {
    log::LogState state;
    auto rep = log::read_log(dir.log(), [&](const log::Record& r) {
      if (r.epoch == old_epoch && r.task_id != 0) {
        ++old.records_of[r.task_id];
        const bool terminal_record = r.type == log::RecordType::kSucceeded || r.type == log::RecordType::kFailed ||
                                     r.type == log::RecordType::kCancelled;
        const bool terminal_snapshot =
            r.type == log::RecordType::kTaskSnapshot && is_terminal(detail::sw::state(r.state_word));
        const bool freed =
            r.type == log::RecordType::kFreed && r.aux != static_cast<std::uint32_t>(log::FreeReason::kSlotFree);
        if (terminal_record || terminal_snapshot || freed) old.ended.insert(r.task_id);
      }
      state.apply(r);
      return true;
    });
    ASSERT_TRUE(rep.is_ok()) << "the log the crash left cannot be read: " << rep.status().to_string();
    old.report = std::move(rep).value();
    for (log::LiveTask& t : state.live_tasks(old_epoch)) old.live.emplace(t.task_id, std::move(t));
    old.counts = state.counts();
    EXPECT_TRUE(state.live_tasks().size() == old.live.size()) << "live tasks of an epoch other than the segment's";
  }

  // ---- recovery into a new segment ----
  testing::SegmentGuard guard2(testing::unique_segment("durable-new"));
  const std::string& seg2 = guard2.name();
  ASSERT_TRUE(create_segment(seg2, cfg).is_ok());
  sidecar::SidecarOptions so2 = so;
  so2.segment = seg2;
  sidecar::StartReport start_report;
  const auto t_recover = steady_clock::now();
  auto restored = sidecar::recover_from_log(so2, &start_report);
  ASSERT_TRUE(restored.is_ok()) << restored.status().to_string();
  const double recover_s = std::chrono::duration<double>(steady_clock::now() - t_recover).count();
  EXPECT_FALSE(start_report.log_knew_segment);
  EXPECT_EQ(start_report.tasks_to_restore, old.live.size());
  EXPECT_EQ(restored->skipped, 0u) << (restored->problems.empty() ? "" : restored->problems.front());
  EXPECT_EQ(restored->expired, 0u);
  EXPECT_EQ(restored->resubmitted + restored->results_restored, old.live.size());
  std::unordered_map<std::uint64_t, std::uint64_t> mapping;
  for (const auto& [from, to] : restored->mapping) {
    EXPECT_TRUE(mapping.emplace(from, to).second) << "old task " << from << " restored twice";
  }

  // A sidecar and a worker in the new segment; the test reads every restored task.
  kids.sidecar = start_sidecar(so2);
  kids.workers.push_back(start_worker(seg2));
  auto client = Client::attach(seg2);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  std::unordered_map<std::uint64_t, std::string> new_values;  // old id -> value read under the new id
  std::vector<std::string> new_problems;
  const auto t_drain = steady_clock::now();
  for (const auto& [from, to] : mapping) {
    auto out = client->wait(TaskId{to}, kSlowBuild ? 120'000'000'000 : 60'000'000'000);
    if (!out) {
      new_problems.push_back("old task " + std::to_string(from) + " (new id " + std::to_string(to) +
                             "): " + out.status().to_string());
      continue;
    }
    if (out->state != TaskState::kSucceeded) {
      new_problems.push_back("old task " + std::to_string(from) + " (new id " + std::to_string(to) + ") ended " +
                             std::string(state_name(out->state)) + ": " + out->value.substr(0, 80));
      continue;
    }
    new_values.emplace(from, out->value);
  }
  const double drain_s = std::chrono::duration<double>(steady_clock::now() - t_drain).count();
  {
    int status = 0;
    const std::vector<pid_t> last = kids.all();
    for (pid_t pid : last) {
      if (pid > 0 && !kill_and_reap(pid, status)) reaped_unexpectedly("child", pid, status, "in the new segment");
    }
    kids.sidecar = -1;
    kids.workers.clear();
  }

  // ---- every acknowledged task ----
  struct Bad {
    std::uint64_t count = 0;
    std::string first;
    void add(std::string what) {
      if (count++ == 0) first = std::move(what);
    }
  };
  Bad lost, wrong_value, read_wrong;
  std::uint64_t acked = 0, unacked = 0, finished_before = 0, restored_ok = 0, read_by_producers = 0, duplicates = 0,
                exhausted = 0;
  for (int p = 0; p < kProducers; ++p) {
    const std::uint64_t cursor = o.producer(p).cursor.load();
    exhausted += o.producer(p).exhausted.load();
    for (std::uint64_t r = 0; r < cursor; ++r) {
      const TaskRecord& rec = o.rec(p, r);
      const std::uint32_t runs = rec.runs.load();
      if (runs > 1) duplicates += runs - 1;
      if (rec.submit.load() == kUnacked) ++unacked;
      if (rec.submit.load() != kAcked) continue;
      ++acked;
      if (rec.read.load() == kReadGood) ++read_by_producers;
      if (rec.read.load() == kReadWrong) read_wrong.add(task_name(p, r) + " was read with a wrong outcome");
      const std::uint64_t id = rec.id.load();
      const std::string want = dc_payload(p, r);
      if (const auto m = mapping.find(id); m != mapping.end()) {
        const auto v = new_values.find(id);
        if (v == new_values.end()) {
          lost.add(task_name(p, r) + " id " + std::to_string(id) + " was restored as " + std::to_string(m->second) +
                   " but did not complete in the new segment");
        } else if (v->second != want) {
          wrong_value.add(task_name(p, r) + " id " + std::to_string(id) + " completed in the new segment with '" +
                          v->second.substr(0, 60) + "'");
        } else {
          ++restored_ok;
        }
        continue;
      }
      if (old.live.count(id) == 0 && old.ended.count(id) == 1) {
        ++finished_before;
        continue;
      }
      std::string why;
      if (const auto l = old.live.find(id); l != old.live.end()) {
        why = "live in the log (" + std::string(state_name(l->second.state)) + ") but not restored";
      } else if (old.records_of.count(id) == 0) {
        why = "no record of it in the log";
      } else {
        why = "not live in the log, yet no record says it ended (" + std::to_string(old.records_of[id]) +
              " records name it)";
      }
      lost.add(task_name(p, r) + " id " + std::to_string(id) + " (acknowledged durable, ran " + std::to_string(runs) +
               " times, " + (rec.read.load() == kReadGood ? "read" : "not read") + " by its producer): " + why);
    }
  }

  // ---- report ----
  std::printf("[ rounds   ] %d rounds in %.1f s: %" PRIu64 " sidecar kills, %" PRIu64 " worker kills (%" PRIu64
              " sidecars and %" PRIu64 " workers started in all)\n",
              rounds, rounds_s, sidecar_kills, worker_kills, next_sidecar, next_worker);
  std::printf("[ log      ] %" PRIu64 " records in %zu files%s; %zu tasks live at the crash (%" PRIu64
              " pending, %" PRIu64 " running, %" PRIu64 " finished)\n",
              old.report.records, old.report.files.size(), old.report.torn_tail ? " and a torn tail" : "",
              old.live.size(), old.counts.live_pending, old.counts.live_running,
              old.counts.live_succeeded + old.counts.live_failed + old.counts.live_cancelled);
  std::printf("[ recovery ] recover_from_log in %.2f s: %" PRIu64 " resubmitted, %" PRIu64 " results restored, %" PRIu64
              " skipped; %zu read back in the new segment in %.2f s\n",
              recover_s, restored->resubmitted, restored->results_restored, restored->skipped, new_values.size(),
              drain_s);
  std::printf("[ tasks    ] acknowledged %" PRIu64 " (read by their producers %" PRIu64 "), not acknowledged %" PRIu64
              "; of the acknowledged: finished before the crash %" PRIu64 ", restored and completed %" PRIu64
              ", lost %" PRIu64 "; duplicate runs %" PRIu64 "; producer regions that ran out %" PRIu64 "\n",
              acked, read_by_producers, unacked, finished_before, restored_ok, lost.count, duplicates, exhausted);
  std::fflush(stdout);
  RecordProperty("acked", std::to_string(acked));
  RecordProperty("finished_before_crash", std::to_string(finished_before));
  RecordProperty("restored", std::to_string(restored_ok));
  RecordProperty("sidecar_kills", std::to_string(sidecar_kills));
  RecordProperty("worker_kills", std::to_string(worker_kills));

  // ---- checks ----
  EXPECT_TRUE(failures.empty()) << failures.size()
                                << " child or call failures; first: " << (failures.empty() ? "" : failures.front());
  for (std::size_t i = 1; i < std::min<std::size_t>(failures.size(), 10); ++i) ADD_FAILURE() << failures[i];
  EXPECT_TRUE(new_problems.empty()) << new_problems.size() << " restored tasks did not succeed; first: "
                                    << (new_problems.empty() ? "" : new_problems.front());
  EXPECT_EQ(o.totals().handler_bad.load(), 0u) << "the handler saw payloads that name no task";
  EXPECT_GT(acked, 0u) << "no durable submit was acknowledged: the test tests nothing";
  EXPECT_GT(sidecar_kills + worker_kills, 0u);
  EXPECT_EQ(lost.count, 0u) << "acknowledged tasks lost; first: " << lost.first;
  EXPECT_EQ(wrong_value.count, 0u) << "restored tasks with another payload; first: " << wrong_value.first;
  EXPECT_EQ(read_wrong.count, 0u) << read_wrong.first;
  EXPECT_EQ(finished_before + restored_ok + lost.count + wrong_value.count, acked);
}

}  // namespace
}  // namespace taskring::stress
