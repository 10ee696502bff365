// `taskring-bench floor`: the machine's core-to-core and futex-wake round
// trips, measured between two forked processes without taskring in between.
//
// Each measurement maps one anonymous MAP_SHARED region, forks side A and
// side B, pins them to two CPUs and runs a ping-pong on two counters:
//   cache line: A stores seq into `ping` and spins until `pong` == seq;
//               B spins until `ping` == seq and stores seq into `pong`.
//   futex:      the same on 32-bit words, but each side parks in FUTEX_WAIT
//               until the other's FUTEX_WAKE instead of spinning.
// A times every round trip; B only echoes. The parent blocks in sigtimedwait
// for SIGCHLD (no polling, so it takes no CPU time from the two sides) and
// kills the survivor if either side fails.
//
// Invariants:
//  1. `ping` is written only by A and `pong` only by B; each lives on its own
//     cache line, so a round trip moves exactly two lines between the cores
//     (one each way), which is what a core-to-core round trip is.
//  2. Both counters start at 0 and seq starts at 1, so a side never mistakes
//     the initial value for an answer.
//  3. Side A's histogram and both error texts are written before the writer
//     exits; the parent reads them only after waitpid has reaped the writer,
//     and process exit and wait order those writes before the reads.
//  4. Every child the parent forked is reaped before measure_floor returns.
#include "floor.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "report.h"
#include "table.h"
#include "taskring/base/config.h"
#include "taskring/ipc/futex.h"

namespace taskring::bench {
namespace {

// Unrecorded round trips before the recorded ones: faults in the pages,
// warms the caches and lets the CPUs leave their idle states.
constexpr std::uint64_t kCacheLineWarmup = 2'000;
constexpr std::uint64_t kFutexWarmup = 200;
// Safety net against a stuck child: a fixed allowance plus a generous bound
// per round trip (about 100x what either takes on an idle machine).
constexpr std::int64_t kDeadlineBaseNs = 30'000'000'000;
constexpr std::int64_t kCacheLinePerTripNs = 50'000;
constexpr std::int64_t kFutexPerTripNs = 2'000'000;
// Exit status of a child that wrote its reason into the mapping.
constexpr int kChildFailed = 3;
constexpr int kMaxCpu = 1023;

enum class Kind { kCacheLine, kFutex };
enum Side { kSideA = 0, kSideB = 1 };

struct alignas(kCacheLineSize) Line64 {
  std::atomic<std::uint64_t> value{0};
};
struct alignas(kCacheLineSize) Line32 {
  std::atomic<std::uint32_t> value{0};
};
static_assert(sizeof(Line64) == kCacheLineSize && sizeof(Line32) == kCacheLineSize);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared between processes");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "shared between processes");

// The mapping both sides and the parent share (one per measurement).
struct Shared {
  Line64 ping;         // cache line: written by A only (invariant 1)
  Line64 pong;         // cache line: written by B only
  Line32 futex_ping;   // futex: written by A only
  Line32 futex_pong;   // futex: written by B only
  Line32 ready;        // sides pinned and waiting at the start barrier
  char error[2][256];  // a failing side's reason, NUL-terminated
  Histogram round_trips;  // side A's samples, copied in when it is done
};
static_assert(offsetof(Shared, pong) - offsetof(Shared, ping) >= kCacheLineSize);

inline void cpu_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void child_fail(Shared& s, Side side, const std::string& message) {
  std::snprintf(s.error[side], sizeof s.error[side], "%s", message.c_str());
  _exit(kChildFailed);
}

void pin_or_fail(Shared& s, Side side, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    child_fail(s, side, "cpu " + std::to_string(cpu) + ": sched_setaffinity failed: " + errno_text(errno));
  }
}

// Both sides arrive pinned before either starts, so the warm-up does not
// include the other process still being scheduled in.
void start_barrier(Shared& s) {
  // relaxed: a rendezvous only; nothing is published through `ready`.
  s.ready.value.fetch_add(1, std::memory_order_relaxed);
  while (s.ready.value.load(std::memory_order_relaxed) < 2) cpu_pause();
}

// Side A of the cache-line ping-pong. Timing is per round trip, not per
// batch of 100: only per-sample values keep the tail that p99 is about (a
// batch average hides it). The price is a clock read inside every sample:
// about 20 ns with the TSC clocksource, about 62 ns with kvm-clock (this
// project's machine), against round trips of 100-450 ns. The two clock reads bracket the round trip alone; recording
// happens outside the bracket, so a sample carries about one clock read.
void cache_line_side_a(Shared& s, std::uint64_t iterations, Histogram& out) {
  std::uint64_t seq = 0;
  // relaxed (both loops): the counter is the only data exchanged and its
  // value is all either side acts on; no other memory is published by it.
  for (std::uint64_t i = 0; i < kCacheLineWarmup; ++i) {
    s.ping.value.store(++seq, std::memory_order_relaxed);
    while (s.pong.value.load(std::memory_order_relaxed) != seq) cpu_pause();
  }
  for (std::uint64_t i = 0; i < iterations; ++i) {
    const std::int64_t t0 = ipc::monotonic_ns();
    s.ping.value.store(++seq, std::memory_order_relaxed);
    while (s.pong.value.load(std::memory_order_relaxed) != seq) cpu_pause();
    const std::int64_t t1 = ipc::monotonic_ns();
    out.record(t1 - t0);
  }
}

void cache_line_side_b(Shared& s, std::uint64_t total) {
  // relaxed: as in side A, the counter's value is the whole message.
  for (std::uint64_t seq = 1; seq <= total; ++seq) {
    while (s.ping.value.load(std::memory_order_relaxed) != seq) cpu_pause();
    s.pong.value.store(seq, std::memory_order_relaxed);
  }
}

// Waits, parked, until `word` holds `seq`. futex_wait returns at once if the
// word already changed, so a wake that comes before the park is not lost.
void park_until(const std::atomic<std::uint32_t>& word, std::uint32_t seq) {
  for (;;) {
    // relaxed: the value is the whole message (see cache_line_side_a).
    const std::uint32_t seen = word.load(std::memory_order_relaxed);
    if (seen == seq) return;
    ipc::futex_wait(word, seen, -1);
  }
}

// Side A of the futex ping-pong: store, wake, park until answered. Timed per
// round trip for the same reasons as the cache line; a round trip here is
// tens of microseconds, so the clock is negligible.
void futex_side_a(Shared& s, std::uint64_t iterations, Histogram& out) {
  std::uint32_t seq = 0;
  const auto trip = [&] {
    // relaxed: the value is the whole message; the futex call orders nothing
    // else that the other side reads.
    s.futex_ping.value.store(++seq, std::memory_order_relaxed);
    ipc::futex_wake(s.futex_ping.value, 1);
    park_until(s.futex_pong.value, seq);
  };
  for (std::uint64_t i = 0; i < kFutexWarmup; ++i) trip();
  for (std::uint64_t i = 0; i < iterations; ++i) {
    const std::int64_t t0 = ipc::monotonic_ns();
    trip();
    const std::int64_t t1 = ipc::monotonic_ns();
    out.record(t1 - t0);
  }
}

void futex_side_b(Shared& s, std::uint64_t total) {
  // kMaxFloorIterations + the warm-up stays below 2^32, so seq never wraps.
  for (std::uint32_t seq = 1; seq <= total; ++seq) {
    park_until(s.futex_ping.value, seq);
    s.futex_pong.value.store(seq, std::memory_order_relaxed);  // relaxed: as in futex_side_a
    ipc::futex_wake(s.futex_pong.value, 1);
  }
}
static_assert(kMaxFloorIterations + kCacheLineWarmup < (std::uint64_t{1} << 32));

[[noreturn]] void run_child(Shared& s, Side side, int cpu, Kind kind, std::uint64_t iterations) {
  pin_or_fail(s, side, cpu);
  start_barrier(s);
  if (side == kSideA) {
    // Filled privately and copied once, so recording never touches a line
    // the other side reads.
    auto samples = std::make_unique<Histogram>();
    if (kind == Kind::kCacheLine) {
      cache_line_side_a(s, iterations, *samples);
    } else {
      futex_side_a(s, iterations, *samples);
    }
    s.round_trips = *samples;
  } else if (kind == Kind::kCacheLine) {
    cache_line_side_b(s, kCacheLineWarmup + iterations);
  } else {
    futex_side_b(s, kFutexWarmup + iterations);
  }
  _exit(0);
}

// Blocks SIGCHLD for the guard's lifetime so the parent can sleep in
// sigtimedwait until a child exits, and restores the previous mask after.
class SigchldBlock {
 public:
  SigchldBlock() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set_, &old_);
  }
  ~SigchldBlock() {
    // Drop a SIGCHLD still pending from our own children, so it does not
    // reach the caller's handler; one the caller kept blocked stays pending.
    if (!sigismember(&old_, SIGCHLD)) {
      const timespec zero{};
      while (sigtimedwait(&set_, nullptr, &zero) > 0) {
      }
    }
    sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  SigchldBlock(const SigchldBlock&) = delete;
  SigchldBlock& operator=(const SigchldBlock&) = delete;
  const sigset_t& set() const { return set_; }
  const sigset_t& old() const { return old_; }

 private:
  sigset_t set_{};
  sigset_t old_{};
};

struct Mapping {
  void* base = MAP_FAILED;
  ~Mapping() {
    if (base != MAP_FAILED) munmap(base, sizeof(Shared));
  }
};

const char* side_name(int side) { return side == kSideA ? "side A" : "side B"; }

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const char* name = strsignal(WTERMSIG(status));
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + (name ? name : "?") + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// One measurement: forks both sides, waits for both, returns A's histogram.
Result<Histogram> run_pair(Kind kind, const FloorOptions& options, std::uint64_t iterations) {
  const char* what = kind == Kind::kCacheLine ? "cache-line round trip" : "futex round trip";
  Mapping map;
  map.base = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map.base == MAP_FAILED) return internal_error(std::string(what) + ": mmap failed: " + errno_text(errno));
  Shared& s = *new (map.base) Shared();

  SigchldBlock block;
  std::fflush(nullptr);  // so no buffered output is written twice
  const int cpus[2] = {options.cpu_a, options.cpu_b};
  pid_t pids[2] = {-1, -1};
  int statuses[2] = {0, 0};
  bool reaped[2] = {false, false};
  Status failure;

  const auto kill_and_reap_all = [&] {
    for (int i = 0; i < 2; ++i) {
      if (pids[i] > 0 && !reaped[i]) {
        kill(pids[i], SIGKILL);
        while (waitpid(pids[i], &statuses[i], 0) < 0 && errno == EINTR) {
        }
        reaped[i] = true;
      }
    }
  };

  for (int i = 0; i < 2; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      failure = internal_error(std::string(what) + ": fork failed: " + errno_text(errno));
      kill_and_reap_all();
      return failure;
    }
    if (pid == 0) {
      sigprocmask(SIG_SETMASK, &block.old(), nullptr);
      run_child(s, static_cast<Side>(i), cpus[i], kind, iterations);
    }
    pids[i] = pid;
  }

  const std::int64_t per_trip = kind == Kind::kCacheLine ? kCacheLinePerTripNs : kFutexPerTripNs;
  const std::int64_t deadline =
      ipc::monotonic_ns() + kDeadlineBaseNs + static_cast<std::int64_t>(iterations) * per_trip;
  while (!(reaped[0] && reaped[1])) {
    for (int i = 0; i < 2; ++i) {
      if (reaped[i]) continue;
      const pid_t r = waitpid(pids[i], &statuses[i], WNOHANG);
      if (r == pids[i]) {
        reaped[i] = true;
        if (!(WIFEXITED(statuses[i]) && WEXITSTATUS(statuses[i]) == 0) && failure.is_ok()) {
          std::string reason = describe_exit(statuses[i]);
          if (WIFEXITED(statuses[i]) && WEXITSTATUS(statuses[i]) == kChildFailed && s.error[i][0] != '\0') {
            reason = std::string(s.error[i], strnlen(s.error[i], sizeof s.error[i]));
          }
          failure = internal_error(std::string(what) + ": " + side_name(i) + " (cpu " + std::to_string(cpus[i]) +
                                   "): " + reason);
        }
      }
    }
    if (!failure.is_ok()) {
      kill_and_reap_all();
      return failure;
    }
    if (reaped[0] && reaped[1]) break;
    const std::int64_t left = deadline - ipc::monotonic_ns();
    if (left <= 0) {
      kill_and_reap_all();
      return deadline_exceeded(std::string(what) + ": " + std::to_string(iterations) +
                               " round trips did not finish in time; both sides were killed (is another "
                               "process spinning on cpu " +
                               std::to_string(options.cpu_a) + " or " + std::to_string(options.cpu_b) + "?)");
    }
    timespec wait{};
    wait.tv_sec = static_cast<time_t>(left / 1'000'000'000);
    wait.tv_nsec = static_cast<long>(left % 1'000'000'000);
    sigtimedwait(&block.set(), nullptr, &wait);  // a child exited, the deadline came, or EINTR: look again
  }
  return s.round_trips;
}

// The CPUs this process may run on, as "0-1" or "0,2,5" style text, and
// whether `cpu` is among them.
std::string allowed_cpus(const cpu_set_t& set) {
  std::string out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    out += (out.empty() ? "" : ",") + std::to_string(cpu);
  }
  return out.empty() ? "none" : out;
}

Status check_options(const FloorOptions& o) {
  if (o.cpu_a < 0 || o.cpu_b < 0 || o.cpu_a > kMaxCpu || o.cpu_b > kMaxCpu) {
    return invalid_argument("cpus " + std::to_string(o.cpu_a) + "," + std::to_string(o.cpu_b) +
                            ": each must be between 0 and " + std::to_string(kMaxCpu));
  }
  if (o.cpu_a == o.cpu_b) {
    return invalid_argument("cpus " + std::to_string(o.cpu_a) + "," + std::to_string(o.cpu_b) +
                            ": must be two different CPUs");
  }
  for (const auto& [name, n] : {std::pair{"cache-line iterations", o.cache_line_iterations},
                                std::pair{"futex iterations", o.futex_iterations}}) {
    if (n < 1 || n > kMaxFloorIterations) {
      return invalid_argument(std::string(name) + " " + std::to_string(n) + ": must be between 1 and " +
                              std::to_string(kMaxFloorIterations));
    }
  }
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (online < 2) {
    return failed_precondition("this machine has " + std::to_string(online) +
                               " online CPU; the floor needs 2, one for each process of the ping-pong");
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    return internal_error("sched_getaffinity failed: " + errno_text(errno));
  }
  for (const int cpu : {o.cpu_a, o.cpu_b}) {
    if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
      return failed_precondition("cpu " + std::to_string(cpu) +
                                 ": not online or not allowed for this process (allowed: " + allowed_cpus(allowed) +
                                 ")");
    }
  }
  return Status::ok();
}

// --- the command ----------------------------------------------------------

struct FloorCommand {
  FloorOptions options;
  std::string json_path;
};

std::string ns_cell(std::uint64_t ns) { return cli::format_duration_ns(static_cast<std::int64_t>(ns)); }

void add_row(cli::Table& table, const char* name, const Histogram& h) {
  table.add({name, std::to_string(h.count()), ns_cell(h.min()), ns_cell(h.value_at_percentile(50)),
             ns_cell(h.value_at_percentile(90)), ns_cell(h.value_at_percentile(99)),
             ns_cell(h.value_at_percentile(99.9)), ns_cell(h.max())});
}

nlohmann::json floor_latency_json(const Histogram& h) {
  nlohmann::json j = latency_json(h);
  j["min"] = h.min();
  j["count"] = h.count();
  return j;
}

int run_floor(const FloorCommand& c) {
  Result<FloorResult> result = measure_floor(c.options);
  if (!result) {
    return cli::report(result.status(), "floor");
  }
  const FloorResult& r = *result;
  std::printf("latency floor between cpu %d and cpu %d (two processes, shared mapping):\n", c.options.cpu_a,
              c.options.cpu_b);
  cli::Table table({"measure", "round trips", "min", "p50", "p90", "p99", "p99.9", "max"}, "lrrrrrrr");
  add_row(table, "cache-line round trip", r.cache_line);
  add_row(table, "futex wake round trip", r.futex);
  std::fputs(table.render().c_str(), stdout);

  if (!c.json_path.empty()) {
    nlohmann::json doc;
    doc["meta"] = run_meta();
    doc["floor"] = {{"cpus", {c.options.cpu_a, c.options.cpu_b}},
                    {"cache_line_round_trip_ns", floor_latency_json(r.cache_line)},
                    {"futex_wake_round_trip_ns", floor_latency_json(r.futex)}};
    std::ofstream out(c.json_path, std::ios::trunc);
    out << doc.dump(2) << '\n';
    out.close();
    if (!out) {
      cli::print_error("--json", "could not write '" + c.json_path + "': " + errno_text(errno));
      return cli::kExitFailure;
    }
  }
  return cli::kExitOk;
}

}  // namespace

Result<FloorResult> measure_floor(const FloorOptions& options) {
  TASKRING_RETURN_IF_ERROR(check_options(options));
  Result<Histogram> cache_line = run_pair(Kind::kCacheLine, options, options.cache_line_iterations);
  if (!cache_line) return cache_line.status();
  Result<Histogram> futex = run_pair(Kind::kFutex, options, options.futex_iterations);
  if (!futex) return futex.status();
  return FloorResult{*cache_line, *futex};
}

Result<std::pair<int, int>> parse_cpu_pair(std::string_view text) {
  const auto bad = [&] {
    return invalid_argument("'" + std::string(text) + "': must be two different CPU numbers between 0 and " +
                            std::to_string(kMaxCpu) + ", separated by a comma (e.g. 0,1)");
  };
  const std::vector<std::string> parts = cli::split_list(text);
  if (parts.size() != 2) return bad();
  int cpus[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    Result<std::uint64_t> v = cli::parse_unsigned(parts[static_cast<std::size_t>(i)], 0, kMaxCpu);
    if (!v) return bad();
    cpus[i] = static_cast<int>(*v);
  }
  if (cpus[0] == cpus[1]) return bad();
  return std::pair{cpus[0], cpus[1]};
}

void add_floor_command(CLI::App& app, cli::Action& action) {
  auto c = std::make_shared<FloorCommand>();
  CLI::App* sub = app.add_subcommand(
      "floor", "Measure this machine's latency floor: cache-line and futex-wake round trips between two CPUs");
  cli::add_parsed_option(
      sub, "--cpus", "--cpus",
      [c](std::string_view text) -> Status {
        Result<std::pair<int, int>> cpus = parse_cpu_pair(text);
        if (!cpus) return cpus.status();
        c->options.cpu_a = cpus->first;
        c->options.cpu_b = cpus->second;
        return Status::ok();
      },
      "The two CPUs the two processes are pinned to", "A,B", "0,1");
  cli::add_unsigned_option(sub, "--iterations", c->options.cache_line_iterations, 1, kMaxFloorIterations,
                           "Recorded cache-line round trips");
  cli::add_unsigned_option(sub, "--futex-iterations", c->options.futex_iterations, 1, kMaxFloorIterations,
                           "Recorded futex wake round trips");
  sub->add_option("--json", c->json_path, "Also write the figures as JSON to FILE")->type_name("FILE");
  sub->callback([&action, c] { action = [c] { return run_floor(*c); }; });
}

}  // namespace taskring::bench
