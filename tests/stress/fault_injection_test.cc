// Fault injection for crash recovery (taskring/recovery.h): under load from
// several producer processes, the test SIGKILLs a random worker or producer
// at a random moment, round after round, while replacements start. Then it
// checks that every submitted task reached exactly one terminal state (its
// outcome was read at most once), that no task was lost, that no slot leaked
// and that the engine still runs; and it reports the recovery time from a
// kill to the requeue (the return of worker_exited), p50 and p99.
//
// Rounds and seed:
//   TASKRING_FAULT_ROUNDS  rounds of kill + replace (default 60, about 2 s;
//                          20 under ASan). scripts/test.sh runs the default
//                          through ctest. The full run of the issue is
//                          TASKRING_FAULT_ROUNDS=1000 (about 25 s in a
//                          release build):
//                            TASKRING_FAULT_ROUNDS=1000 build/release/tests/stress/fault_injection_test
//   TASKRING_FAULT_SEED    the seed of the schedule (which child dies, when,
//                          and every child's own choices); random if unset.
// Both are printed first, as a line to paste to replay the run. A replay
// repeats the schedule, not the kernel's interleaving.
//
// The oracle, in a MAP_SHARED anonymous mapping made before any fork:
//   * Producers are logical slots 0..kProducers-1 (slot kProducers is the
//     fresh producer of the last phase). A killed producer is replaced by a
//     new incarnation of the same slot. Each slot owns a region of task
//     records; record r of slot p is task (p, r), whatever incarnation
//     submitted it, so a replacement uses fresh sequence numbers. The payload
//     is "fi:p:r:incarnation" (padded for some tasks so payload and result go
//     through the arena), and the result must equal it.
//   * Per task: `runs` (handler starts, counted by the handler: at least once,
//     maybe more if a worker died running it), `submit` (kSubmitting before
//     the call, kSubmitted once the call returned and the id is stored),
//     `id`, and `outcome` = [reads:8 | code:8], changed only by one fetch_add
//     per read, so "read twice" shows as reads == 2.
//   * A replacement producer adopts the tasks its dead predecessor submitted
//     but had not read yet (submit == kSubmitted, no outcome) and waits for
//     them itself; so unread results of dead producers do not pile up.
//
// Accounting at the end (every record of every slot):
//   * submit == kSubmitted (the id was returned and stored): the task ran
//     (runs >= 1) and its outcome was read exactly once, as succeeded with
//     the right value, by a producer (reads == 1). One exception: a producer
//     killed inside wait() after the engine had handed it the outcome (the
//     read is taken with one CAS that marks the slot released) leaves nothing
//     to read; its adopter then gets kNotFound. That is allowed only for the
//     one task the dead producer was waiting for (ProducerSlot::reading) and
//     counted as "read by a dead reader".
//   * submit == kSubmitting (the producer died inside submit, or after it
//     returned but before it stored the id): the task may not exist (slot
//     not yet published, or freed by recovery), or may have run. A task that
//     ran holds its slot with an unread result and nobody knows its id, so
//     the test finds it by scanning the slots' state words (the generation
//     makes the id) and reads it with try_get: its value names the record.
//     Counted as "ran, submit never returned"; it must have succeeded.
//   * Records past a slot's cursor were never submitted: runs == 0.
//   * After that scan and a final idle recover(), every slot must be free
//     and on the free list: a slot still reserved, pending, running, or
//     terminal but unreadable (a reader died mid-read), or a free slot
//     missing from the free list, is a leak.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine_internal.h"
#include "mp_harness.h"
#include "taskring/admin.h"
#include "taskring/recovery.h"
#include "taskring/status.h"
#include "test_support.h"

namespace taskring::stress {
namespace {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

// kSanitized (mp_harness.h) covers TSan only, which does not run these
// tests; ASan + UBSan does, and is several times slower.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSlowBuild = true;
#else
constexpr bool kSlowBuild = kSanitized;
#endif

constexpr int kWorkers = 3;
constexpr int kProducers = 3;
constexpr int kFreshSlot = kProducers;  // the producer of the "engine still runs" phase
constexpr int kSlots = kProducers + 1;
constexpr std::uint64_t kWindow = 48;  // tasks a producer keeps in flight
constexpr std::uint64_t kMaxBatch = 16;
constexpr std::uint32_t kMaxAttempts = 255;
constexpr std::uint64_t kFreshTasks = 200;
constexpr int kDefaultRounds = kSlowBuild ? 20 : 60;

// ---- the oracle --------------------------------------------------------------------------

enum SubmitState : std::uint8_t { kUnused = 0, kSubmitting = 1, kSubmitted = 2 };

// Low byte of Record::outcome: how the task's outcome was found.
enum OutcomeCode : std::uint8_t {
  kNoOutcome = 0,
  kGood = 1,                 // succeeded, right value, consistent crash fields
  kBadCrashInfo = 2,         // succeeded, right value, but crashes/attempts/last_crash inconsistent
  kWrongValue = 3,           // succeeded with a value other than the payload, or another id
  kFailedExhausted = 4,      // failed: attempts exhausted (with 255 attempts: should not happen)
  kFailedOther = 5,          // failed for another reason
  kCancelledOutcome = 6,     // cancelled (nobody cancels here)
  kNotFoundUnexpected = 7,   // wait said not found, and no dead reader can explain it
  kReadByDeadReader = 8,     // a killed producer took the outcome inside wait() (not a read here)
  kCollectedOrphan = 9,      // submit never returned; the result was found by the final slot scan
  kUnreadAtEnd = 10,         // submit returned, yet the result was still in the segment at the end
};
constexpr std::uint16_t kOneRead = 1u << 8;

const char* outcome_name(unsigned code) {
  switch (code) {
    case kNoOutcome: return "no outcome";
    case kGood: return "good";
    case kBadCrashInfo: return "inconsistent crash fields";
    case kWrongValue: return "wrong value";
    case kFailedExhausted: return "failed: attempts exhausted";
    case kFailedOther: return "failed";
    case kCancelledOutcome: return "cancelled";
    case kNotFoundUnexpected: return "not found";
    case kReadByDeadReader: return "read by a killed producer";
    case kCollectedOrphan: return "collected at the end (submit never returned)";
    case kUnreadAtEnd: return "never read by its producer";
    default: return "garbled (read more than once?)";
  }
}

struct Record {
  std::atomic<std::uint64_t> id{0};        // TaskId, valid once submit == kSubmitted
  std::atomic<std::uint32_t> inc{0};       // producer incarnation that submitted it
  std::atomic<std::uint32_t> runs{0};      // handler starts
  std::atomic<std::uint16_t> outcome{0};   // [reads:8 | OutcomeCode:8]
  std::atomic<std::uint8_t> submit{kUnused};
  std::atomic<std::uint8_t> attempts{0};   // from the outcome that was read
  std::atomic<std::uint8_t> crashes{0};
  std::atomic<std::uint8_t> crash_kind{0};  // ExitReason::Kind of the outcome
};
static_assert(sizeof(Record) <= 24);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint16_t>::is_always_lock_free);

// One logical producer, across its incarnations.
struct ProducerSlot {
  std::atomic<std::uint64_t> cursor{0};    // records [0, cursor) were handed to submit
  std::atomic<std::uint64_t> low{0};       // every record below is resolved (or never got an id)
  std::atomic<std::int64_t> reading{-1};   // the record whose outcome the producer is waiting for
  std::atomic<std::uint32_t> exhausted{0}; // the region ran out: the producer only drained
};

struct Totals {
  std::atomic<std::uint32_t> stop{0};        // producers: stop submitting, drain, exit 0
  std::atomic<std::uint64_t> submitted{0};   // ids returned
  std::atomic<std::uint64_t> adopted{0};     // unread tasks taken over from dead producers
  std::atomic<std::uint64_t> handler_bad{0}; // payloads the handler could not place
  std::atomic<std::uint64_t> first_bad_handler{~0ull};  // [slot:16 | record:48]
  std::atomic<std::uint64_t> long_waits{0};  // waits over 20 s for one task
};

std::size_t read_pid_max() {
  std::ifstream f("/proc/sys/kernel/pid_max");
  std::size_t v = 0;
  if (f >> v && v > 0 && v <= (1u << 22)) return v;
  return 1u << 22;
}

class Oracle {
 public:
  Oracle(std::uint64_t per_slot)
      : per_slot_(per_slot),
        records_(static_cast<std::size_t>(per_slot * kProducers + kFreshTasks)),
        slots_(kSlots),
        totals_(1),
        pid_max_(read_pid_max()),
        killed_(pid_max_ + 1) {}

  std::uint64_t capacity(int slot) const { return slot == kFreshSlot ? kFreshTasks : per_slot_; }
  Record& rec(int slot, std::uint64_t r) const {
    return records_[static_cast<std::size_t>(static_cast<std::uint64_t>(slot) * per_slot_ + r)];
  }
  ProducerSlot& slot(int s) const { return slots_[static_cast<std::size_t>(s)]; }
  Totals& totals() const { return totals_[0]; }
  void mark_killed(pid_t pid) const {
    if (pid > 0 && static_cast<std::size_t>(pid) <= pid_max_) killed_[static_cast<std::size_t>(pid)].store(1);
  }
  bool was_killed(std::uint32_t pid) const {
    return pid > 0 && pid <= pid_max_ && killed_[pid].load() != 0;
  }
  bool ok() const { return records_.size() > 0 && slots_.size() > 0 && totals_.size() > 0 && killed_.size() > 0; }

 private:
  std::uint64_t per_slot_;
  SharedArray<Record> records_;
  SharedArray<ProducerSlot> slots_;
  SharedArray<Totals> totals_;
  std::size_t pid_max_;
  SharedArray<std::atomic<std::uint8_t>> killed_;  // pids the supervisor SIGKILLed
};

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string fi_payload(int slot, std::uint64_t r, std::uint32_t inc) {
  std::string s = "fi:" + std::to_string(slot) + ":" + std::to_string(r) + ":" + std::to_string(inc);
  // One task in eight is padded past the inline sizes, so its payload and
  // its result live in arena blocks.
  if (r % 8 == 5) s.append(static_cast<std::size_t>(40 + (r * 37) % 300), '.');
  return s;
}

bool parse_fi_payload(std::string_view s, int& slot, std::uint64_t& r, std::uint32_t& inc) {
  if (s.substr(0, 3) != "fi:") return false;
  s.remove_prefix(3);
  const std::size_t dots = s.find('.');
  if (dots != std::string_view::npos) s = s.substr(0, dots);
  unsigned long long v[3];
  int n = 0;
  while (n < 3) {
    const std::size_t colon = s.find(':');
    const std::string part(s.substr(0, colon));
    char* end = nullptr;
    if (part.empty()) return false;
    v[n++] = std::strtoull(part.c_str(), &end, 10);
    if (*end != '\0') return false;
    if (colon == std::string_view::npos) break;
    s.remove_prefix(colon + 1);
  }
  if (n != 3 || v[0] >= static_cast<unsigned long long>(kSlots)) return false;
  slot = static_cast<int>(v[0]);
  r = v[1];
  inc = static_cast<std::uint32_t>(v[2]);
  return true;
}

std::string task_name(const Oracle& o, int slot, std::uint64_t r) {
  return "task (producer " + std::to_string(slot) + ", seq " + std::to_string(r) + ", incarnation " +
         std::to_string(o.rec(slot, r).inc.load()) + ")";
}

// The crash fields of a succeeded task: every attempt but the last ended
// with its worker killed (nothing else ends an attempt here), by the test.
bool crash_info_consistent(const Oracle& o, const TaskOutcome& out) {
  if (out.crashes + 1 != out.attempts) return false;
  if (out.crashes == 0) return out.last_crash_pid == 0;
  if (!o.was_killed(out.last_crash_pid)) return false;
  if (out.last_crash.kind == ExitReason::Kind::kSignaled) return out.last_crash.code == SIGKILL;
  // Recovered by a peer or a producer before the supervisor's report.
  return out.last_crash.kind == ExitReason::Kind::kUnknown;
}

std::uint8_t classify(const Oracle& o, const TaskOutcome& out, TaskId id, const std::string& payload) {
  if (out.state == TaskState::kSucceeded) {
    if (out.value != payload || !(out.id == id)) return kWrongValue;
    return crash_info_consistent(o, out) ? kGood : kBadCrashInfo;
  }
  if (out.state == TaskState::kFailed) {
    return out.value.find("attempt") != std::string::npos ? kFailedExhausted : kFailedOther;
  }
  return kCancelledOutcome;
}

std::string describe_outcome(const TaskOutcome& out) {
  return std::string("state ") + std::string(state_name(out.state)) + " value '" + out.value.substr(0, 80) +
         "' attempts " + std::to_string(out.attempts) + " crashes " + std::to_string(out.crashes) +
         " last_crash_pid " + std::to_string(out.last_crash_pid) + " (" + out.last_crash.describe() + ")";
}

void store_outcome_fields(Record& rec, const TaskOutcome& out) {
  rec.attempts.store(static_cast<std::uint8_t>(std::min<std::uint32_t>(out.attempts, 255)));
  rec.crashes.store(static_cast<std::uint8_t>(std::min<std::uint32_t>(out.crashes, 255)));
  rec.crash_kind.store(static_cast<std::uint8_t>(out.last_crash.kind));
}

// ---- worker child ---------------------------------------------------------------------------

// Runs handler "fi" until SIGTERM (clean stop) or SIGKILL. The handler
// counts the run, spins 0-60 microseconds (one task in 64: a millisecond)
// so that many kills land inside a task, and returns the payload.
int fi_worker(const Oracle& o, const std::string& segment, std::uint64_t seed) {
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
  const Status reg = (*w)->register_handler("fi", [&o](TaskContext& ctx) {
    int slot = 0;
    std::uint64_t r = 0;
    std::uint32_t inc = 0;
    Totals& t = o.totals();
    if (!parse_fi_payload(ctx.payload(), slot, r, inc) || r >= o.capacity(slot)) {
      t.handler_bad.fetch_add(1);
      ctx.fail("fi: bad payload");
      return;
    }
    Record& rec = o.rec(slot, r);
    rec.runs.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after every process is gone
    if (rec.inc.load(std::memory_order_relaxed) != inc) {
      // The producer stored inc before submitting; the submit's publish
      // orders it before the claim.
      t.handler_bad.fetch_add(1);
      std::uint64_t none = ~0ull;
      t.first_bad_handler.compare_exchange_strong(none, (std::uint64_t(slot) << 48) | r);
    }
    const std::uint64_t h = splitmix(r * 977 + static_cast<std::uint64_t>(slot) * 131 + ctx.attempt());
    const auto spin = std::chrono::microseconds(h % 64 == 0 ? 1000 : static_cast<long>(h % 60));
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

// ---- producer child -------------------------------------------------------------------------

struct ProducerArgs {
  int slot = 0;
  std::uint32_t inc = 0;
  std::uint64_t seed = 0;
  std::uint64_t limit = 0;  // 0: until Totals::stop; else submit this many, drain, exit
};

// Adopts the unread tasks of the slot's dead predecessors, then submits
// (single submits and batches of 2..16) keeping up to kWindow in flight,
// reads each outcome in submission order and records it. On stop it drains
// everything it holds and exits 0. Exits non-zero only when the engine
// refuses a call (attach, submit, a wait error other than a timeout).
int fi_producer(const Oracle& o, const std::string& segment, const ProducerArgs& a) {
  auto c = Client::attach(segment);
  if (!c) {
    child_log("producer %d/%u attach: %s", a.slot, a.inc, c.status().to_string().c_str());
    return kExitAttach;
  }
  Client& client = *c;
  ProducerSlot& ps = o.slot(a.slot);
  Totals& t = o.totals();
  const std::uint64_t capacity = o.capacity(a.slot);
  // The predecessor is dead: what it was reading stays put.
  const std::int64_t inherited_reading = ps.reading.load();
  std::deque<std::uint64_t> window;  // record indices, ascending
  const std::uint64_t lo = ps.low.load(), hi = ps.cursor.load();
  for (std::uint64_t r = lo; r < hi; ++r) {
    const Record& rec = o.rec(a.slot, r);
    if (rec.submit.load() != kSubmitted) continue;  // no id: the final slot scan accounts for it
    if ((rec.outcome.load() & 0xFF) != kNoOutcome) continue;
    window.push_back(r);
  }
  t.adopted.fetch_add(window.size());

  const auto resolve_front = [&]() -> int {
    const std::uint64_t r = window.front();
    Record& rec = o.rec(a.slot, r);
    const TaskId id{rec.id.load()};
    ps.reading.store(static_cast<std::int64_t>(r));
    const auto began = steady_clock::now();
    bool logged = false;
    std::uint16_t code = kNoOutcome;
    for (;;) {
      auto out = client.wait(id, 1'000'000'000);
      if (out) {
        const std::string expected = fi_payload(a.slot, r, rec.inc.load());
        store_outcome_fields(rec, *out);
        code = static_cast<std::uint16_t>(kOneRead | classify(o, *out, id, expected));
        if ((code & 0xFF) != kGood) {
          child_log("producer %d/%u: task (%d, %llu) id %s: %s; %s", a.slot, a.inc, a.slot,
                    static_cast<unsigned long long>(r), to_string(id).c_str(), outcome_name(code & 0xFF),
                    describe_outcome(*out).c_str());
        }
        break;
      }
      if (out.status().code() == StatusCode::kDeadlineExceeded) {
        if (!logged && steady_clock::now() - began > 20s) {
          logged = true;
          t.long_waits.fetch_add(1);
          auto info = client.peek(id);
          child_log("producer %d/%u: task (%d, %llu) id %s not finished after 20 s: %s", a.slot, a.inc, a.slot,
                    static_cast<unsigned long long>(r), to_string(id).c_str(),
                    info ? (std::string(state_name(info->state)) + " attempts " + std::to_string(info->attempts) +
                            " crashes " + std::to_string(info->crashes) + " owner " +
                            std::to_string(info->owner_worker))
                               .c_str()
                         : info.status().to_string().c_str());
        }
        continue;
      }
      if (out.status().code() == StatusCode::kNotFound) {
        if (static_cast<std::int64_t>(r) == inherited_reading) {
          code = kReadByDeadReader;
        } else {
          code = kNotFoundUnexpected;
          child_log("producer %d/%u: task (%d, %llu) id %s: %s", a.slot, a.inc, a.slot,
                    static_cast<unsigned long long>(r), to_string(id).c_str(), out.status().to_string().c_str());
        }
        break;
      }
      child_log("producer %d/%u: wait for task (%d, %llu): %s", a.slot, a.inc, a.slot,
                static_cast<unsigned long long>(r), out.status().to_string().c_str());
      return kExitWait;
    }
    rec.outcome.fetch_add(code);  // one RMW: a second read would show as reads == 2
    window.pop_front();
    ps.low.store(window.empty() ? ps.cursor.load() : window.front());
    ps.reading.store(-1);
    return kExitOk;
  };

  std::mt19937_64 rng(a.seed);
  SubmitOptions so;
  so.max_attempts = kMaxAttempts;
  so.max_crashes = kMaxAttempts;  // a task unlucky enough to be hit by several kills is no poison
  so.timeout_ns = 30'000'000'000;  // a full segment for 30 s is a failure, not a hang
  std::uint64_t produced = 0;
  std::vector<std::string> payloads;
  std::vector<TaskSpec> specs;
  std::vector<TaskId> ids;
  for (;;) {
    const bool stopping = a.limit != 0 ? produced >= a.limit : t.stop.load() != 0;
    if (stopping || window.size() >= kWindow) {
      if (window.empty()) return kExitOk;  // only when stopping
      if (const int rc = resolve_front(); rc != kExitOk) return rc;
      continue;
    }
    std::uint64_t n = rng() % 2 == 0 ? 1 : 2 + rng() % (kMaxBatch - 1);
    if (a.limit != 0) n = std::min(n, a.limit - produced);
    const std::uint64_t cur = ps.cursor.load();
    if (cur + n > capacity) {
      ps.exhausted.store(1);
      if (!window.empty()) {
        if (const int rc = resolve_front(); rc != kExitOk) return rc;
      } else {
        std::this_thread::sleep_for(2ms);
      }
      continue;
    }
    payloads.clear();
    for (std::uint64_t i = 0; i < n; ++i) {
      Record& rec = o.rec(a.slot, cur + i);
      rec.inc.store(a.inc);
      rec.id.store(0);
      rec.submit.store(kSubmitting);
      payloads.push_back(fi_payload(a.slot, cur + i, a.inc));
    }
    // From here a successor scans these records: before this store they are
    // not submitted and will be overwritten.
    ps.cursor.store(cur + n);
    if (n == 1) {
      auto id = client.submit("fi", payloads[0], so);
      if (!id) {
        child_log("producer %d/%u: submit task (%d, %llu): %s", a.slot, a.inc, a.slot,
                  static_cast<unsigned long long>(cur), id.status().to_string().c_str());
        return kExitSubmit;
      }
      Record& rec = o.rec(a.slot, cur);
      rec.id.store(id->value);
      rec.submit.store(kSubmitted);
    } else {
      specs.clear();
      for (const auto& p : payloads) specs.push_back({"fi", p});
      ids.assign(static_cast<std::size_t>(n), TaskId{});
      std::size_t done = 0;
      while (done < specs.size()) {  // a partial batch is legal: submit the rest
        auto got = client.submit_batch(std::span<const TaskSpec>(specs).subspan(done),
                                       std::span<TaskId>(ids).subspan(done), so);
        if (!got || *got == 0) {
          child_log("producer %d/%u: submit_batch at task (%d, %llu): %s", a.slot, a.inc, a.slot,
                    static_cast<unsigned long long>(cur + done),
                    got ? "0 submitted" : got.status().to_string().c_str());
          return kExitSubmit;
        }
        for (std::size_t i = done; i < done + *got; ++i) {
          Record& rec = o.rec(a.slot, cur + i);
          rec.id.store(ids[i].value);
          rec.submit.store(kSubmitted);
        }
        done += *got;
      }
    }
    for (std::uint64_t i = 0; i < n; ++i) window.push_back(cur + i);
    produced += n;
    t.submitted.fetch_add(n);
  }
}

// ---- the supervisor -----------------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  int slot = -1;           // producers: the logical slot
  std::uint32_t inc = 0;   // producers: the incarnation
};

std::string hex(std::uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::string latency_line(const std::vector<double>& us) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "n %zu, p50 %.0f us, p99 %.0f us, max %.0f us", us.size(), percentile(us, 0.5),
                percentile(us, 0.99), us.empty() ? 0.0 : *std::max_element(us.begin(), us.end()));
  return buf;
}

std::string report_line(const RecoveryReport& r) {
  return "workers_recovered " + std::to_string(r.workers_recovered) + ", tasks_requeued " +
         std::to_string(r.tasks_requeued) + ", tasks_failed " + std::to_string(r.tasks_failed) +
         ", deque_tasks_returned " + std::to_string(r.deque_tasks_returned) + ", lost_tasks_requeued " +
         std::to_string(r.lost_tasks_requeued) + ", lost_refs_dropped " + std::to_string(r.lost_refs_dropped) +
         ", reserved_slots_freed " + std::to_string(r.reserved_slots_freed) + ", free_slots_relinked " +
         std::to_string(r.free_slots_relinked);
}

// Waits until nothing is pending or running and no ring or deque holds an
// index; runs recover() (with its audits) every 2 s meanwhile, since a task
// published by a producer that died before the push is found only by the
// audit.
bool wait_quiescent(const std::string& segment, std::chrono::seconds limit, RecoveryReport& acc,
                    std::string& last) {
  const auto deadline = steady_clock::now() + limit;
  auto next_recover = steady_clock::now() + 2s;
  while (steady_clock::now() < deadline) {
    auto snap = read_snapshot(segment);
    if (snap) {
      std::uint64_t held = snap->tasks_by_state[static_cast<int>(TaskState::kPending)] +
                           snap->tasks_by_state[static_cast<int>(TaskState::kRunning)];
      for (const QueueSnapshot& q : snap->queues) {
        for (std::uint64_t d : q.depth) held += d;
      }
      for (const WorkerSnapshot& w : snap->workers) held += w.deque_depth;
      if (held == 0) return true;
      last = "pending " + std::to_string(snap->tasks_by_state[static_cast<int>(TaskState::kPending)]) +
             ", running " + std::to_string(snap->tasks_by_state[static_cast<int>(TaskState::kRunning)]) +
             ", ring and deque entries " + std::to_string(held);
    }
    if (steady_clock::now() >= next_recover) {
      auto rep = recover(segment);
      if (rep) acc += *rep;
      next_recover = steady_clock::now() + 2s;
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

TEST(FaultInjectionTest, RandomKillsOfWorkersAndProducersLoseNothingAndLeakNothing) {
  const int rounds = taskring::testing::env_count("TASKRING_FAULT_ROUNDS", kDefaultRounds);
  const std::uint64_t seed = taskring::testing::env_seed("TASKRING_FAULT_SEED");
  std::printf("[ seed     ] TASKRING_FAULT_SEED=%" PRIu64 " TASKRING_FAULT_ROUNDS=%d\n", seed, rounds);
  std::printf("[ replay   ] TASKRING_FAULT_SEED=%" PRIu64 " TASKRING_FAULT_ROUNDS=%d tests/stress/fault_injection_test\n",
              seed, rounds);
  std::fflush(stdout);
  RecordProperty("seed", std::to_string(seed));
  RecordProperty("rounds", rounds);
  SCOPED_TRACE("replay with TASKRING_FAULT_SEED=" + std::to_string(seed) +
               " TASKRING_FAULT_ROUNDS=" + std::to_string(rounds));

  testing::SegmentGuard guard(testing::unique_segment("fault"));
  const std::string& seg = guard.name();
  const EngineConfig cfg = testing::small_config();  // 4096 slots, rings of 1024, 16 workers, deques of 64
  ASSERT_TRUE(create_segment(seg, cfg).is_ok());
  // Room for every task of the run: the handler's spin bounds a worker to
  // about 20,000 tasks a second, a round lasts 10 ms or more, so a producer
  // slot gets a few hundred tasks a round. One that fills its region anyway
  // only drains from then on (reported, not a failure).
  const std::uint64_t per_slot =
      std::min<std::uint64_t>(1u << 20, 20'000 + 600ull * static_cast<std::uint64_t>(rounds));
  const Oracle o(per_slot);
  ASSERT_TRUE(o.ok());

  // The supervisor keeps the segment mapped, as a real one would, so that
  // worker_exited finds the mapping in the process's cache instead of
  // mapping the segment for every call. Children inherit it across fork.
  auto supervisor_client = Client::attach(seg);
  ASSERT_TRUE(supervisor_client.is_ok()) << supervisor_client.status().to_string();

  std::mt19937_64 rng(seed);
  std::uint32_t next_inc = 1;
  std::uint64_t next_worker = 0;
  const auto start_worker = [&]() {
    const std::uint64_t s = splitmix(seed ^ (0x5741ull << 48) ^ next_worker++);
    return Child{spawn([&o, &seg, s] { return fi_worker(o, seg, s); }), -1, 0};
  };
  const auto start_producer = [&](int slot, std::uint64_t limit = 0) {
    ProducerArgs a;
    a.slot = slot;
    a.inc = next_inc++;
    a.seed = splitmix(seed ^ (0x5052ull << 48) ^ a.inc);
    a.limit = limit;
    return Child{spawn([&o, &seg, a] { return fi_producer(o, seg, a); }), slot, a.inc};
  };

  std::vector<std::string> failures;  // children that died on their own, refused calls
  RecoveryReport exited_total, end_total;
  std::vector<double> requeue_us, all_kill_us, reap_us, exited_us;
  std::uint64_t worker_kills = 0, producer_kills = 0, kills_that_requeued = 0, unexpected_exits = 0;

  const auto worker_gone = [&](pid_t pid, int status) -> RecoveryReport {
    auto rep = worker_exited(seg, static_cast<std::uint32_t>(pid), status);
    if (!rep) {
      failures.push_back("worker_exited(" + std::to_string(pid) + "): " + rep.status().to_string());
      return {};
    }
    return *rep;
  };

  std::vector<Child> workers, producers;
  std::vector<pid_t> extra;  // the fresh worker and producer of the last phase
  // Whatever ends the test (a failed ASSERT included), no child outlives it.
  // Reaped children are marked pid -1 (or replaced) at once.
  struct KillAll {
    std::vector<Child>& w;
    std::vector<Child>& p;
    std::vector<pid_t>& x;
    ~KillAll() {
      std::vector<pid_t> all(x);
      for (const Child& c : w) all.push_back(c.pid);
      for (const Child& c : p) all.push_back(c.pid);
      for (pid_t pid : all) {
        if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
      }
    }
  } kill_all{workers, producers, extra};
  for (int i = 0; i < kWorkers; ++i) workers.push_back(start_worker());
  for (int p = 0; p < kProducers; ++p) producers.push_back(start_producer(p));

  // Any child that ended without being killed is a failure; it is replaced.
  const auto check_children = [&](const char* when) {
    for (auto* group : {&workers, &producers}) {
      for (Child& c : *group) {
        int status = 0;
        if (waitpid(c.pid, &status, WNOHANG) != c.pid) continue;
        ++unexpected_exits;
        ChildResult r;
        r.pid = c.pid;
        r.exited = WIFEXITED(status);
        r.code = r.exited ? WEXITSTATUS(status) : WTERMSIG(status);
        const bool is_worker = group == &workers;
        failures.push_back(std::string(is_worker ? "worker " : "producer ") +
                           (is_worker ? "" : std::to_string(c.slot) + "/" + std::to_string(c.inc) + " ") +
                           describe(r) + " " + when);
        if (is_worker) {
          exited_total += worker_gone(c.pid, status);
          c = start_worker();
        } else {
          c = start_producer(c.slot);
        }
      }
    }
  };

  const auto t_rounds = steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(1000 + rng() % 19'001));
    check_children("on its own during the rounds");
    const bool kill_worker = rng() % 2 == 0;
    std::vector<Child>& group = kill_worker ? workers : producers;
    Child& victim = group[rng() % group.size()];
    o.mark_killed(victim.pid);
    const auto t0 = steady_clock::now();
    kill(victim.pid, SIGKILL);
    int status = 0;
    pid_t got = 0;
    while ((got = waitpid(victim.pid, &status, 0)) < 0 && errno == EINTR) {
    }
    const auto t_reaped = steady_clock::now();
    if (got != victim.pid || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      ChildResult r;
      r.pid = victim.pid;
      r.exited = WIFEXITED(status);
      r.code = r.exited ? WEXITSTATUS(status) : WTERMSIG(status);
      failures.push_back(std::string(kill_worker ? "worker " : "producer ") + describe(r) +
                         " before it was killed in round " + std::to_string(round));
    }
    if (kill_worker) {
      ++worker_kills;
      const RecoveryReport rep = worker_gone(victim.pid, status);
      const auto t1 = steady_clock::now();
      exited_total += rep;
      const double us = std::chrono::duration<double, std::micro>(t1 - t0).count();
      all_kill_us.push_back(us);
      reap_us.push_back(std::chrono::duration<double, std::micro>(t_reaped - t0).count());
      exited_us.push_back(std::chrono::duration<double, std::micro>(t1 - t_reaped).count());
      if (rep.tasks_requeued + rep.deque_tasks_returned > 0) {
        ++kills_that_requeued;
        requeue_us.push_back(us);
      }
      victim = start_worker();
    } else {
      ++producer_kills;
      victim = start_producer(victim.slot);
    }
  }
  const double rounds_s = std::chrono::duration<double>(steady_clock::now() - t_rounds).count();
  check_children("on its own during the rounds");

  // ---- stop: producers drain, then the workers finish what is left ----
  o.totals().stop.store(1);
  std::vector<pid_t> ppids;
  for (const Child& c : producers) ppids.push_back(c.pid);
  const auto t_drain = steady_clock::now();
  const auto pres = reap(ppids, steady_clock::now() + (kSlowBuild ? 180s : 60s));
  for (Child& c : producers) c.pid = -1;  // reaped: KillAll must not signal a reused pid
  const double drain_s = std::chrono::duration<double>(steady_clock::now() - t_drain).count();
  for (std::size_t i = 0; i < pres.size(); ++i) {
    if (!(pres[i].exited && pres[i].code == kExitOk)) {
      failures.push_back("producer " + std::to_string(producers[i].slot) + "/" + std::to_string(producers[i].inc) +
                         " while draining: " + describe(pres[i]));
    }
  }
  check_children("on its own while the producers drained");  // workers only: the producers are reaped
  {
    auto rep = recover(seg);
    ASSERT_TRUE(rep.is_ok()) << rep.status().to_string();
    end_total += *rep;
  }
  std::string busy;
  EXPECT_TRUE(wait_quiescent(seg, kSlowBuild ? 120s : 60s, end_total, busy))
      << "tasks still pending or running 60 s after the producers stopped: " << busy;
  for (const Child& c : workers) kill(c.pid, SIGTERM);
  std::vector<pid_t> wpids;
  for (const Child& c : workers) wpids.push_back(c.pid);
  const auto wres = reap(wpids, steady_clock::now() + 30s);
  for (Child& c : workers) c.pid = -1;
  for (const auto& r : wres) {
    if (!(r.exited && r.code == kExitOk)) failures.push_back("worker at its SIGTERM: " + describe(r));
    if (r.timed_out) exited_total += worker_gone(r.pid, SIGKILL);  // reap() SIGKILLed it
  }
  // Twice: the idle audit needs a quiet segment, and the first pass may
  // still be finishing what the workers' exits left.
  for (int i = 0; i < 2; ++i) {
    auto rep = recover(seg);
    ASSERT_TRUE(rep.is_ok()) << rep.status().to_string();
    end_total += *rep;
  }

  // ---- the final slot scan: read what nobody could read by id ----
  std::vector<std::string> slot_problems;
  std::uint64_t collected = 0;
  {
    auto eng = detail::Engine::attach(seg, ipc::Access::kReadOnly);
    ASSERT_TRUE(eng.is_ok()) << eng.status().to_string();
    auto client = Client::attach(seg);
    ASSERT_TRUE(client.is_ok()) << client.status().to_string();
    namespace sw = detail::sw;
    for (std::uint32_t i = 0; i < (*eng)->slot_count(); ++i) {
      const std::uint64_t w = (*eng)->slot(i).state.load(std::memory_order_acquire);
      if ((w & sw::kStateMask) == 0) continue;  // free
      const std::string where = "slot " + std::to_string(i) + " (state word " + hex(w) + ")";
      if (sw::reserved(w)) {
        slot_problems.push_back(where + ": still reserved by pid " + std::to_string((*eng)->slot(i).submitter_pid.load(std::memory_order_relaxed)) +
                                " (a producer's half-taken slot that recovery did not free)");
        continue;
      }
      const TaskState st = sw::state(w);
      if (!is_terminal(st)) {
        slot_problems.push_back(where + ": task still " + std::string(state_name(st)) + " at the end");
        continue;
      }
      const TaskId id = TaskId::make(i, sw::generation(w));
      auto got = client->try_get(id);
      if (!got || !got->has_value()) {
        // Name the task from the result bytes (the slot is not changing:
        // everything is stopped).
        std::string who = "a task the oracle cannot name";
        std::string_view value;
        int ps = 0;
        std::uint64_t r = 0;
        std::uint32_t inc = 0;
        if ((*eng)->read_bytes((*eng)->slot(i), true, value) && parse_fi_payload(value, ps, r, inc) &&
            r < o.capacity(ps)) {
          const unsigned code = o.rec(ps, r).outcome.load() & 0xFF;
          who = task_name(o, ps, r) + ", whose outcome in the oracle is: " + outcome_name(code);
        }
        slot_problems.push_back(
            where + " holds " + who + ": terminal but unreadable (" +
            (got ? std::string("not finished") : got.status().to_string()) +
            ((w & sw::kReleased) != 0 ? "); marked released and not queued: a reader took the read (client.cc "
                                        "try_get's CAS) and was killed before free_slot, and recovery did not "
                                        "free the slot"
                                      : ")"));
        continue;
      }
      const TaskOutcome& out = **got;
      int ps = 0;
      std::uint64_t r = 0;
      std::uint32_t inc = 0;
      if (!parse_fi_payload(out.value, ps, r, inc) || r >= o.capacity(ps)) {
        slot_problems.push_back(where + ": a result that names no task: " + describe_outcome(out));
        continue;
      }
      Record& rec = o.rec(ps, r);
      store_outcome_fields(rec, out);
      std::uint8_t code = classify(o, out, id, fi_payload(ps, r, rec.inc.load()));
      if (rec.submit.load() == kSubmitted) {
        code = kUnreadAtEnd;
      } else if (code == kGood) {
        code = kCollectedOrphan;
        ++collected;
      }
      rec.outcome.fetch_add(static_cast<std::uint16_t>(kOneRead | code));
    }
  }

  // ---- every record ----
  struct Bad {
    std::uint64_t count = 0;
    std::string first;
    void add(std::string what) {
      if (count++ == 0) first = std::move(what);
    }
  };
  Bad lost, read_twice, unread, wrong, never_submitted_ran, orphan_bad, runs_gt_attempts;
  std::uint64_t returned = 0, read_ok = 0, dead_reader = 0, orphans_ran = 0, orphans_not_run = 0, duplicates = 0,
                with_crashes = 0, crashes = 0, max_crashes = 0, unknown_reason = 0, exhausted_slots = 0;
  for (int p = 0; p < kSlots; ++p) {
    const std::uint64_t cursor = o.slot(p).cursor.load();
    exhausted_slots += o.slot(p).exhausted.load();
    for (std::uint64_t r = 0; r < o.capacity(p); ++r) {
      const Record& rec = o.rec(p, r);
      const std::uint32_t runs = rec.runs.load();
      const std::uint16_t outcome = rec.outcome.load();
      const unsigned reads = outcome >> 8, code = outcome & 0xFF;
      if (r >= cursor) {
        if (runs != 0) never_submitted_ran.add(task_name(o, p, r) + " was never submitted but ran " + std::to_string(runs) + " times");
        if (rec.inc.load() == 0) break;  // never touched: nor is anything after it
        continue;
      }
      if (runs > 1) duplicates += runs - 1;
      if (reads > 1) read_twice.add(task_name(o, p, r) + " read " + std::to_string(reads) + " times");
      if (rec.crashes.load() > 0) {
        ++with_crashes;
        crashes += rec.crashes.load();
        max_crashes = std::max<std::uint64_t>(max_crashes, rec.crashes.load());
        if (rec.crash_kind.load() == static_cast<std::uint8_t>(ExitReason::Kind::kUnknown)) ++unknown_reason;
      }
      if (reads == 1 && runs > rec.attempts.load()) {
        runs_gt_attempts.add(task_name(o, p, r) + " ran " + std::to_string(runs) + " times but reports " +
                             std::to_string(rec.attempts.load()) + " attempts");
      }
      if (rec.submit.load() == kSubmitted) {
        ++returned;
        if (runs == 0) lost.add(task_name(o, p, r) + " was submitted (id " + std::to_string(rec.id.load()) + ") but never ran; outcome: " + outcome_name(code));
        if (code == kGood && reads == 1) {
          ++read_ok;
        } else if (code == kReadByDeadReader && reads == 0) {
          ++dead_reader;
        } else if (code == kNoOutcome || code == kUnreadAtEnd) {
          unread.add(task_name(o, p, r) + " (id " + std::to_string(rec.id.load()) + ", ran " + std::to_string(runs) +
                     " times): " + outcome_name(code));
        } else if (reads <= 1) {
          wrong.add(task_name(o, p, r) + " (id " + std::to_string(rec.id.load()) + ", ran " + std::to_string(runs) +
                    " times, attempts " + std::to_string(rec.attempts.load()) + ", crashes " +
                    std::to_string(rec.crashes.load()) + "): " + outcome_name(code));
        }
      } else {  // kSubmitting: the producer died inside submit or before storing the id
        if (runs == 0 && code == kNoOutcome) {
          ++orphans_not_run;
        } else if (code == kCollectedOrphan && reads == 1) {
          ++orphans_ran;
        } else if (runs > 0 && code == kNoOutcome) {
          lost.add(task_name(o, p, r) + " ran " + std::to_string(runs) +
                   " times (its submit never returned) but its result was not in the segment at the end");
        } else if (reads <= 1) {
          orphan_bad.add(task_name(o, p, r) + " (submit never returned, ran " + std::to_string(runs) +
                         " times): " + outcome_name(code));
        }
      }
    }
  }

  // ---- no slot leaked ----
  for (int i = 0; i < 2; ++i) {  // relinks free slots missing from the free list (idle audit)
    auto rep = recover(seg);
    ASSERT_TRUE(rep.is_ok()) << rep.status().to_string();
    end_total += *rep;
  }
  std::uint64_t on_free_list = 0;
  {
    auto eng = detail::Engine::attach(seg, ipc::Access::kReadOnly);
    ASSERT_TRUE(eng.is_ok()) << eng.status().to_string();
    on_free_list = (*eng)->free_slots().size_quiescent();
  }
  auto snap = read_snapshot(seg);
  ASSERT_TRUE(snap.is_ok()) << snap.status().to_string();
  std::uint64_t dead_entries = 0;
  for (const WorkerSnapshot& w : snap->workers) dead_entries += w.alive ? 0 : 1;

  // ---- the engine still runs: a fresh worker and producer complete tasks ----
  const Child fresh_worker = start_worker();
  const Child fresh_producer = start_producer(kFreshSlot, kFreshTasks);
  extra = {fresh_worker.pid, fresh_producer.pid};
  const auto fres = reap({fresh_producer.pid}, steady_clock::now() + (kSlowBuild ? 120s : 60s));
  kill(fresh_worker.pid, SIGTERM);
  const auto fwres = reap({fresh_worker.pid}, steady_clock::now() + 30s);
  extra.clear();
  std::uint64_t fresh_ok = 0;
  for (std::uint64_t r = 0; r < kFreshTasks; ++r) {
    const Record& rec = o.rec(kFreshSlot, r);
    if (rec.outcome.load() == (kOneRead | kGood) && rec.runs.load() == 1) ++fresh_ok;
  }
  auto after = read_snapshot(seg);
  ASSERT_TRUE(after.is_ok()) << after.status().to_string();

  // ---- report ----
  const Totals& t = o.totals();
  std::printf("[ rounds   ] %d rounds in %.1f s: %" PRIu64 " workers and %" PRIu64
              " producers killed, %" PRIu64 " children ended on their own; producers drained in %.1f s\n",
              rounds, rounds_s, worker_kills, producer_kills, unexpected_exits, drain_s);
  std::printf("[ recovery ] kill -> requeue (worker_exited returned; the %" PRIu64
              " kills whose report requeued something): %s\n",
              kills_that_requeued, latency_line(requeue_us).c_str());
  std::printf("[ recovery ] kill -> worker_exited returned, every worker kill: %s\n", latency_line(all_kill_us).c_str());
  std::printf("[ recovery ] of which kill -> waitpid returned: %s\n", latency_line(reap_us).c_str());
  std::printf("[ recovery ] and worker_exited itself: %s\n", latency_line(exited_us).c_str());
  std::printf("[ recovery ] worker_exited totals: %s\n", report_line(exited_total).c_str());
  std::printf("[ recovery ] recover() at the end: %s\n", report_line(end_total).c_str());
  std::printf("[ tasks    ] submitted (id returned) %" PRIu64 ", read by their producer %" PRIu64
              ", taken by a killed reader %" PRIu64 ", adopted from dead producers %" PRIu64 "\n",
              returned, read_ok, dead_reader, t.adopted.load());
  std::printf("[ tasks    ] submit never returned: %" PRIu64 " ran (collected at the end), %" PRIu64
              " did not run\n",
              orphans_ran, orphans_not_run);
  std::printf("[ tasks    ] duplicate runs %" PRIu64 "; tasks with crashes %" PRIu64 " (crashes %" PRIu64
              ", most on one task %" PRIu64 ", reason unknown on %" PRIu64 ")\n",
              duplicates, with_crashes, crashes, max_crashes, unknown_reason);
  std::printf("[ slots    ] %" PRIu64 " free of %u, %" PRIu64 " on the free list; %" PRIu64
              " dead registry entries left; %" PRIu64 " producer regions ran out\n",
              snap->free_slots, cfg.slots, on_free_list, dead_entries, exhausted_slots);
  std::fflush(stdout);
  RecordProperty("recovery_p50_us", std::to_string(percentile(requeue_us, 0.5)));
  RecordProperty("recovery_p99_us", std::to_string(percentile(requeue_us, 0.99)));
  RecordProperty("worker_kills", std::to_string(worker_kills));
  RecordProperty("producer_kills", std::to_string(producer_kills));
  RecordProperty("tasks_submitted", std::to_string(returned));
  RecordProperty("duplicate_runs", std::to_string(duplicates));

  // ---- checks ----
  EXPECT_TRUE(failures.empty()) << failures.size() << " child or call failures; first: "
                                << (failures.empty() ? "" : failures.front());
  for (std::size_t i = 1; i < std::min<std::size_t>(failures.size(), 10); ++i) ADD_FAILURE() << failures[i];
  EXPECT_EQ(t.handler_bad.load(), 0u) << "handler saw payloads that name no submitted task; first (slot<<48|seq) "
                                      << t.first_bad_handler.load();
  EXPECT_GT(returned, 0u) << "no task was submitted at all";
  EXPECT_EQ(lost.count, 0u) << "lost tasks; first: " << lost.first;
  EXPECT_EQ(read_twice.count, 0u) << "outcomes read twice; first: " << read_twice.first;
  EXPECT_EQ(unread.count, 0u) << "submitted tasks whose outcome nobody read; first: " << unread.first;
  EXPECT_EQ(wrong.count, 0u) << "tasks with a wrong outcome; first: " << wrong.first;
  EXPECT_EQ(orphan_bad.count, 0u) << "tasks whose submit never returned, with a wrong outcome; first: "
                                  << orphan_bad.first;
  EXPECT_EQ(never_submitted_ran.count, 0u) << never_submitted_ran.first;
  EXPECT_EQ(runs_gt_attempts.count, 0u) << runs_gt_attempts.first;
  EXPECT_EQ(read_ok + dead_reader, returned) << "every submitted task reached exactly one terminal state, read once";
  EXPECT_TRUE(slot_problems.empty()) << slot_problems.size() << " slots left over; first: "
                                     << (slot_problems.empty() ? "" : slot_problems.front());
  for (std::size_t i = 1; i < std::min<std::size_t>(slot_problems.size(), 10); ++i) ADD_FAILURE() << slot_problems[i];
  EXPECT_EQ(snap->free_slots, cfg.slots) << "slots not free at the end (the slots left over are listed above)";
  EXPECT_EQ(on_free_list, snap->free_slots) << "free slots missing from the free list after an idle recover()";
  std::uint64_t held = 0;
  for (const QueueSnapshot& q : snap->queues) {
    for (std::uint64_t d : q.depth) held += d;
  }
  EXPECT_EQ(held, 0u) << "ring entries left";
  std::uint64_t completions = 0;
  for (const QueueSnapshot& q : snap->queues) completions += q.succeeded;
  EXPECT_LE(completions, read_ok + dead_reader + orphans_ran)
      << "the workers' succeeded counters exceed the tasks that succeeded: a completion was recorded twice";
  // The engine kept running.
  EXPECT_TRUE(fres[0].exited && fres[0].code == kExitOk) << "fresh producer: " << describe(fres[0]);
  EXPECT_TRUE(fwres[0].exited && fwres[0].code == kExitOk) << "fresh worker: " << describe(fwres[0]);
  EXPECT_EQ(fresh_ok, kFreshTasks) << "tasks of the fresh producer that succeeded, ran once and were read once";
  EXPECT_EQ(after->free_slots, cfg.slots) << "slots held after the fresh producer and worker finished";
}

}  // namespace
}  // namespace taskring::stress
