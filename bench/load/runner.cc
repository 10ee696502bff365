// run_load: one run of the harness over one system. Starts the producers and
// workers (forked processes, or threads of one forked process for the
// in-process baselines), drives the same producer loop over every system,
// then checks every task.
//
// The run's bookkeeping lives in one anonymous shared mapping made before any
// fork: a control block, a report per producer and per worker, each
// producer's completion counts and each worker's execution counts. Producers
// and workers write only their own parts; the harness reads them after they
// have exited (waitpid or join orders those reads after the writes).
//
// Thread safety: run_load is called from one thread at a time.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <exception>
#include <climits>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "load.h"
#include "taskring/base/config.h"
#include "taskring/ipc/futex.h"

namespace taskring::bench {

namespace {

constexpr std::int64_t kStartTimeoutNs = 30'000'000'000;
constexpr std::int64_t kStopTimeoutNs = 10'000'000'000;
constexpr std::size_t kErrorBytes = 512;

struct alignas(kCacheLineSize) Control {
  // [B1] release by each producer and worker once its port is open; pairs
  // with [B2] in the coordinator, which then knows every port is open.
  std::atomic<std::uint32_t> ready{0};
  // [B3] release by the coordinator after writing start_ns; pairs with [B4]
  // in every producer, which then reads start_ns.
  std::atomic<std::uint32_t> go{0};
  // Set when the run must end early (a participant failed). Relaxed: a
  // polled hint; the reports are read only after every participant exited.
  std::atomic<std::uint32_t> abort{0};
  // [B5] acq_rel: exactly one failing participant wins the right to write
  // error[]; [B6] release once it is written, acquire before reading it.
  std::atomic<std::uint32_t> failed{0};
  std::atomic<std::uint32_t> error_written{0};
  std::int64_t start_ns = 0;
  std::int32_t error_code = 0;  // the StatusCode of error[], published with it by [B6]
  char error[kErrorBytes] = {};
};

constexpr std::int64_t kProducerFinished = -1;

struct ProducerReport {
  std::uint64_t submitted = 0;   // sequence numbers issued
  std::uint64_t completed = 0;   // distinct sequences seen completed
  std::uint64_t duplicate_completions = 0;
  std::uint64_t foreign = 0;     // receipts with a key this producer never issued
  std::uint32_t stalled = 0;
  std::uint32_t capacity_reached = 0;
  std::int64_t last_complete_ns = 0;
  // The producer's last loop turn, for the coordinator's watchdog, or
  // kProducerFinished. Relaxed: a liveness hint; a stale reading only
  // delays the verdict by a turn.
  std::atomic<std::int64_t> heartbeat_ns{0};
  Histogram submit_to_start;
  Histogram start_to_complete;
  Histogram round_trip;
  Histogram submit_call;
};

struct WorkerReport {
  std::uint64_t executed = 0;
  std::uint64_t malformed = 0;
};

// Where each part of the shared mapping is.
struct Layout {
  std::size_t producers_off = 0, workers_off = 0, seen_off = 0, exec_off = 0, total = 0;
  std::uint64_t capacity = 0;  // sequences per producer
};

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

Layout plan_layout(const LoadConfig& c) {
  Layout l;
  l.capacity = c.tasks != 0 ? std::max<std::uint64_t>(c.tasks_for_producer(0), 1) : kDurationCapacity;
  std::size_t off = round_up(sizeof(Control), 4096);
  l.producers_off = off;
  off = round_up(off + sizeof(ProducerReport) * c.producers, 4096);
  l.workers_off = off;
  off = round_up(off + sizeof(WorkerReport) * c.workers, 4096);
  l.seen_off = off;
  off = round_up(off + l.capacity * c.producers, 4096);
  l.exec_off = off;
  l.total = round_up(off + l.capacity * c.producers * c.workers, 4096);
  return l;
}

// The shared mapping of one run.
class SharedRun {
 public:
  SharedRun(const LoadConfig& config, const Layout& layout) : config_(config), layout_(layout) {
    void* p = mmap(nullptr, layout_.total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      status_ = internal_error("mmap of " + std::to_string(layout_.total) +
                               " bytes for the run's bookkeeping failed: " + std::strerror(errno));
      return;
    }
    base_ = static_cast<std::uint8_t*>(p);
    new (base_) Control();
    for (std::uint32_t i = 0; i < config_.producers; ++i) new (&producer(i)) ProducerReport();
    for (std::uint32_t i = 0; i < config_.workers; ++i) new (&worker(i)) WorkerReport();
  }
  ~SharedRun() {
    if (base_ != nullptr) munmap(base_, layout_.total);
  }
  SharedRun(const SharedRun&) = delete;
  SharedRun& operator=(const SharedRun&) = delete;

  const Status& status() const { return status_; }
  Control& control() { return *reinterpret_cast<Control*>(base_); }
  ProducerReport& producer(std::uint32_t i) {
    return reinterpret_cast<ProducerReport*>(base_ + layout_.producers_off)[i];
  }
  WorkerReport& worker(std::uint32_t i) { return reinterpret_cast<WorkerReport*>(base_ + layout_.workers_off)[i]; }
  std::uint8_t* seen(std::uint32_t p) { return base_ + layout_.seen_off + layout_.capacity * p; }
  std::uint8_t* exec(std::uint32_t w) {
    return base_ + layout_.exec_off + layout_.capacity * config_.producers * w;
  }
  std::uint64_t capacity() const { return layout_.capacity; }

  // Records the first failure of the run and asks everybody to stop.
  void fail(const Status& status) {
    Control& c = control();
    std::uint32_t expected = 0;
    if (c.failed.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {  // [B5]
      const std::string& text = status.message();
      std::memcpy(c.error, text.data(), std::min(text.size(), kErrorBytes - 1));
      c.error_code = static_cast<std::int32_t>(status.code());
      c.error_written.store(1, std::memory_order_release);  // [B6]
    }
    c.abort.store(1, std::memory_order_relaxed);  // relaxed: see Control::abort
  }
  Status first_error() {
    Control& c = control();
    if (c.error_written.load(std::memory_order_acquire) == 0) {  // [B6]
      // The winner of [B5] may have died before writing its message.
      if (c.failed.load(std::memory_order_acquire) != 0) {  // as [B5]
        return internal_error("a producer or worker failed and died before saying why");
      }
      return Status::ok();
    }
    std::string text(c.error, strnlen(c.error, kErrorBytes));
    const std::int32_t code = c.error_code;
    if (code <= static_cast<std::int32_t>(StatusCode::kOk) || code > static_cast<std::int32_t>(StatusCode::kInternal)) {
      return internal_error(std::move(text));  // a code this build does not know: keep the message
    }
    return Status(static_cast<StatusCode>(code), std::move(text));
  }

 private:
  const LoadConfig& config_;
  Layout layout_;
  Status status_;
  std::uint8_t* base_ = nullptr;
};

std::int64_t now_ns() { return ipc::monotonic_ns(); }

Status pin_to(std::uint32_t cpu) {
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const auto n = static_cast<std::uint32_t>(online > 0 ? online : 1);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % n, &set);
  const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) return internal_error("pinning to cpu " + std::to_string(cpu % n) + " failed: " + std::strerror(rc));
  return Status::ok();
}

// The producer loop, the same for every system: closed loop (at most the
// in-flight limit outstanding, submit as soon as there is room) or open loop
// (each task has a due time on a fixed schedule; latency counts from the due
// time, so a producer that falls behind does not hide the queueing delay).
class ProducerLoop {
 public:
  ProducerLoop(const LoadConfig& c, std::uint32_t index, SharedRun& run, ProducerPort& port)
      : c_(c), index_(index), run_(run), port_(port), report_(run.producer(index)), seen_(run.seen(index)) {}

  Status run() {
    const std::uint64_t quota = c_.tasks != 0 ? c_.tasks_for_producer(index_) : run_.capacity();
    const std::uint32_t limit = c_.inflight_limit();
    std::vector<std::string> buffers(c_.batch, std::string(c_.payload, 'x'));
    std::vector<std::string_view> views;
    views.reserve(2 * static_cast<std::size_t>(c_.batch));
    std::vector<Receipt> receipts(limit);

    start_ = run_.control().start_ns;
    const std::int64_t submit_end = c_.duration_ns != 0 ? start_ + c_.duration_ns : INT64_MAX;
    const bool open = c_.rate > 0;
    // Open loop: each producer offers rate / producers, staggered so the
    // producers' schedules interleave.
    interval_ = open ? 1e9 * c_.producers / c_.rate : 0;
    offset_ = interval_ * index_ / c_.producers;

    std::uint64_t next_seq = 0;
    std::uint64_t outstanding = 0;
    std::int64_t last_progress = now_ns();
    bool submitting = true;
    while (run_.control().abort.load(std::memory_order_relaxed) == 0) {  // relaxed: see Control::abort
      std::int64_t now = now_ns();
      // The previous turn's submit call ended just before this reading: its
      // duration costs no clock reading of its own.
      if (call_began_ >= 0) {
        report_.submit_call.record(now - call_began_);
        call_began_ = -1;
      }
      report_.heartbeat_ns.store(now, std::memory_order_relaxed);  // relaxed: see heartbeat_ns
      // An open loop stops at the first task due at or after the end, however
      // late the producer is: the tasks due before it are the run's, and the
      // latest of them are the ones a stalled system delays most.
      if (submitting && (next_seq >= quota || (open ? due_of(next_seq) : now) >= submit_end)) {
        submitting = false;
        if (c_.tasks == 0 && next_seq >= quota) report_.capacity_reached = 1;
      }
      if (!submitting && outstanding == 0) break;
      std::int64_t wait = c_.drain_timeout_ns;
      if (submitting) {
        const std::uint64_t n = std::min<std::uint64_t>(c_.batch, quota - next_seq);
        const bool room = outstanding + n <= limit;
        const std::int64_t due_last = open ? due_of(next_seq + n - 1) : now;
        if (room && now >= due_last) {
          TASKRING_RETURN_IF_ERROR(submit(next_seq, n, open ? -1 : now, now, buffers, views, outstanding));
          next_seq += n;
          report_.submitted = next_seq;
          continue;
        }
        if (room) {
          wait = std::min<std::int64_t>(wait, due_last - now);
          if (outstanding == 0) {  // nothing to collect: sleep until the batch is due
            sleep_ns(wait);
            continue;
          }
        }
      }
      auto got = port_.collect(receipts, std::max<std::int64_t>(wait, 0));
      if (!got.is_ok()) return got.status();
      now = now_ns();
      if (*got == 0) {
        if (outstanding > 0 && now - last_progress >= c_.drain_timeout_ns) {
          // Nothing finished for drain_timeout: whatever is outstanding is
          // lost, and a producer that still had tasks to submit stalled.
          if (submitting) report_.stalled = 1;
          break;
        }
        continue;
      }
      last_progress = now;
      report_.last_complete_ns = now;
      for (std::size_t i = 0; i < *got; ++i) account(receipts[i], now, next_seq, outstanding);
    }
    return Status::ok();
  }

 private:
  // When task `seq` of this producer is due in an open loop: computed from
  // the start for every task, so the schedule cannot drift by accumulated
  // rounding.
  std::int64_t due_of(std::uint64_t seq) const {
    return start_ + std::llround(offset_ + interval_ * static_cast<double>(seq));
  }

  // Writes the headers of tasks [seq, seq + n) and hands them over, applying
  // the fault injection of producer 0. `now` >= 0 is every task's due time
  // (closed loop); -1 takes each task's own from the schedule. `turn_ns` is
  // this loop turn's clock reading: where the submit call's duration starts.
  Status submit(std::uint64_t seq, std::uint64_t n, std::int64_t now, std::int64_t turn_ns,
                std::vector<std::string>& buffers, std::vector<std::string_view>& views,
                std::uint64_t& outstanding) {
    views.clear();
    std::uint64_t dropped = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t s = seq + i;
      TaskHeader h{make_key(index_, s), now >= 0 ? now : due_of(s)};
      std::string& buf = buffers[i];
      std::memcpy(buf.data(), &h, sizeof h);
      if (index_ == 0 && s < c_.inject_loss) {
        ++dropped;  // counted as submitted, never handed over
        continue;
      }
      views.emplace_back(buf);
      if (index_ == 0 && s < c_.inject_loss + c_.inject_duplicate) views.emplace_back(buf);
    }
    // A lost task holds its in-flight credit forever, as a real loss would.
    outstanding += views.size() + dropped;
    if (views.empty()) return Status::ok();
    call_began_ = turn_ns;
    return port_.submit(views);
  }

  void account(const Receipt& r, std::int64_t now, std::uint64_t issued, std::uint64_t& outstanding) {
    const std::uint64_t seq = key_sequence(r.key);
    if (key_producer(r.key) != index_ || seq >= issued) {
      ++report_.foreign;
      return;
    }
    if (outstanding > 0) --outstanding;
    std::uint8_t& s = seen_[seq];
    if (s < 255) ++s;
    if (s == 1) {
      ++report_.completed;
    } else {
      ++report_.duplicate_completions;
    }
    report_.submit_to_start.record(r.start_ns - r.intended_ns);
    report_.start_to_complete.record(r.end_ns - r.start_ns);
    report_.round_trip.record(now - r.intended_ns);
  }

  const LoadConfig& c_;
  std::uint32_t index_;
  SharedRun& run_;
  ProducerPort& port_;
  ProducerReport& report_;
  std::uint8_t* seen_;
  std::int64_t start_ = 0;   // the run's start signal
  double interval_ = 0;      // open loop: ns between this producer's tasks
  double offset_ = 0;        // open loop: this producer's stagger
  std::int64_t call_began_ = -1;  // the clock reading before the last submit call, until recorded
};

// Runs producer `index` to the end; failures go to the shared error.
void producer_main(System& system, const LoadConfig& c, SharedRun& run, std::uint32_t index) {
  Control& ctl = run.control();
  // Waits until a task is due must not overshoot by the default 50 us of
  // timer slack: that lateness would be charged to the system under test.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  Status st = c.pin ? pin_to(index) : Status::ok();
  std::unique_ptr<ProducerPort> port;
  if (st.is_ok()) {
    auto opened = system.open_producer(index);
    if (opened.is_ok()) {
      port = std::move(opened).value();
    } else {
      st = opened.status();
    }
  }
  if (!st.is_ok()) run.fail(Status(st.code(), "producer " + std::to_string(index) + ": " + st.message()));
  ctl.ready.fetch_add(1, std::memory_order_release);  // [B1]
  if (!st.is_ok()) {
    run.producer(index).heartbeat_ns.store(kProducerFinished, std::memory_order_relaxed);  // see heartbeat_ns
    return;
  }
  while (ctl.go.load(std::memory_order_acquire) == 0) {  // [B4]
    ipc::futex_wait(ctl.go, 0, 100'000'000);
  }
  if (ctl.abort.load(std::memory_order_relaxed) == 0) {  // relaxed: see Control::abort
    st = ProducerLoop(c, index, run, *port).run();
    if (!st.is_ok()) run.fail(Status(st.code(), "producer " + std::to_string(index) + ": " + st.message()));
  }
  run.producer(index).heartbeat_ns.store(kProducerFinished, std::memory_order_relaxed);  // see heartbeat_ns
}

void worker_main(System& system, const LoadConfig& c, SharedRun& run, std::uint32_t index) {
  Control& ctl = run.control();
  Status st = c.pin ? pin_to(c.producers + index) : Status::ok();
  std::unique_ptr<WorkerPort> port;
  if (st.is_ok()) {
    auto opened = system.open_worker(index);
    if (opened.is_ok()) {
      port = std::move(opened).value();
    } else {
      st = opened.status();
    }
  }
  if (!st.is_ok()) run.fail(Status(st.code(), "worker " + std::to_string(index) + ": " + st.message()));
  ctl.ready.fetch_add(1, std::memory_order_release);  // [B1]
  if (!st.is_ok()) return;
  Executor executor(c.handler, ExecutionLog(run.exec(index), c.producers, run.capacity()));
  st = port->run(executor);
  WorkerReport& r = run.worker(index);
  r.executed = executor.executed();
  r.malformed = executor.malformed();
  if (!st.is_ok()) run.fail(Status(st.code(), "worker " + std::to_string(index) + ": " + st.message()));
}

void add_rusage(const rusage& ru, std::int64_t& cpu_ns) {
  cpu_ns += (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000'000LL +
            (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

// Waits for every participant to open its port (or for a failure).
// `alive` reports whether the participants can still arrive.
template <typename Alive>
Status wait_ready(SharedRun& run, std::uint32_t count, Alive alive) {
  const std::int64_t deadline = now_ns() + kStartTimeoutNs;
  while (run.control().ready.load(std::memory_order_acquire) < count) {  // [B2]
    if (!alive()) return internal_error("a producer or worker process exited before it was ready");
    if (now_ns() > deadline) return deadline_exceeded("producers and workers not ready after 30 s");
    sleep_ns(200'000);
  }
  return Status::ok();
}

void start(SharedRun& run) {
  Control& ctl = run.control();
  ctl.start_ns = now_ns();
  ctl.go.store(1, std::memory_order_release);  // [B3]
  ipc::futex_wake(ctl.go, INT_MAX);
}

// How long a producer may go without a loop turn before the run is declared
// stuck: twice the drain timeout (a producer legitimately waits that long
// for a receipt) plus a second. Only a producer blocked inside the system
// under test (a send on a queue whose lock a dead process holds, say) stays
// silent that long.
std::int64_t watchdog_limit_ns(const LoadConfig& c) { return 2 * c.drain_timeout_ns + 1'000'000'000; }

// The first producer (of those for which `running(p)`) whose heartbeat is
// older than the watchdog limit, or -1.
template <typename Running>
int stuck_producer(SharedRun& run, const LoadConfig& c, Running running) {
  const std::int64_t now = now_ns();
  const std::int64_t start = run.control().start_ns;
  for (std::uint32_t p = 0; p < c.producers; ++p) {
    if (!running(p)) continue;
    // relaxed: see ProducerReport::heartbeat_ns
    const std::int64_t beat = run.producer(p).heartbeat_ns.load(std::memory_order_relaxed);
    if (beat == kProducerFinished) continue;
    if (now - std::max(start, beat) > watchdog_limit_ns(c)) return static_cast<int>(p);
  }
  return -1;
}

Status stuck_error(std::string_view system, int producer, const LoadConfig& c) {
  return deadline_exceeded("producer " + std::to_string(producer) + " made no progress for " +
                           std::to_string(watchdog_limit_ns(c) / 1'000'000) + " ms (twice --drain-timeout plus 1 s): " +
                           "blocked inside " + std::string(system) + "; every process of the run was killed");
}

// The body of a forked child: dies with the harness (so no worker outlives
// it), and never lets an exception unwind into the parent's code.
template <typename Body>
[[noreturn]] void run_child(pid_t parent, Body body) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0UL, 0UL, 0UL);
  if (getppid() != parent) _exit(70);  // the parent died before prctl
  try {
    body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "taskring-bench: child %d: %s\n", getpid(), e.what());
    _exit(70);
  } catch (...) {
    _exit(70);
  }
  _exit(0);
}

// Producers and workers as threads of this process.
void coordinate_threads(System& system, const LoadConfig& c, SharedRun& run) {
  Status st = system.prepare(c);
  if (!st.is_ok()) {
    run.fail(st);
    return;
  }
  std::vector<std::thread> workers, producers;
  for (std::uint32_t w = 0; w < c.workers; ++w) {
    workers.emplace_back([&, w] { worker_main(system, c, run, w); });
  }
  for (std::uint32_t p = 0; p < c.producers; ++p) {
    producers.emplace_back([&, p] { producer_main(system, c, run, p); });
  }
  st = wait_ready(run, c.producers + c.workers, [] { return true; });
  if (!st.is_ok()) run.fail(st);
  start(run);
  for (auto& t : producers) t.join();
  system.stop_workers({});
  for (auto& t : workers) t.join();
  system.cleanup();
}

// Producers and workers as processes; returns their total CPU time.
std::int64_t coordinate_processes(System& system, const LoadConfig& c, SharedRun& run) {
  Status st = system.prepare(c);
  if (!st.is_ok()) {
    run.fail(st);
    return 0;
  }
  std::vector<pid_t> workers, producers;
  auto spawn = [&](auto body) -> pid_t {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      run_child(parent, body);
    }
    if (pid < 0) run.fail(internal_error(std::string("fork failed: ") + std::strerror(errno)));
    return pid;
  };
  for (std::uint32_t w = 0; w < c.workers; ++w) {
    const pid_t pid = spawn([&] { worker_main(system, c, run, w); });
    if (pid > 0) workers.push_back(pid);
  }
  for (std::uint32_t p = 0; p < c.producers && run.control().failed.load(std::memory_order_acquire) == 0; ++p) {
    const pid_t pid = spawn([&] { producer_main(system, c, run, p); });
    if (pid > 0) producers.push_back(pid);
  }
  const auto expected = static_cast<std::uint32_t>(workers.size() + producers.size());
  auto all_alive = [&] {
    for (const auto* group : {&workers, &producers}) {
      for (pid_t pid : *group) {
        siginfo_t info{};
        // WNOWAIT: look without reaping, so wait4 later still gets the rusage.
        if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != 0) {
          return false;
        }
      }
    }
    return true;
  };
  if (expected != c.producers + c.workers) {
    run.control().abort.store(1, std::memory_order_relaxed);  // relaxed: see Control::abort
  } else {
    st = wait_ready(run, expected, all_alive);
    if (!st.is_ok()) run.fail(st);
  }
  start(run);

  std::int64_t cpu_ns = 0;
  auto reap = [&](pid_t pid, int options) -> bool {
    int status = 0;
    rusage ru{};
    pid_t r = 0;
    while ((r = wait4(pid, &status, options, &ru)) < 0 && errno == EINTR) {
    }
    if (r != pid) return false;
    add_rusage(ru, cpu_ns);
    if (WIFSIGNALED(status)) {
      run.fail(internal_error("process " + std::to_string(pid) + " was killed by signal " +
                              std::to_string(WTERMSIG(status))));
    }
    return true;
  };
  // Reap the producers, with the watchdog: poll, since a stuck producer
  // must not block the harness.
  std::vector<bool> done(producers.size(), false);
  for (std::size_t left_count = producers.size(); left_count > 0;) {
    for (std::size_t i = 0; i < producers.size(); ++i) {
      if (!done[i] && reap(producers[i], WNOHANG)) {
        done[i] = true;
        --left_count;
      }
    }
    if (left_count == 0) break;
    const int stuck = stuck_producer(run, c, [&](std::uint32_t p) { return p < done.size() && !done[p]; });
    if (stuck >= 0) {
      run.fail(stuck_error(system.name(), stuck, c));
      for (std::size_t i = 0; i < producers.size(); ++i) {
        if (!done[i]) kill(producers[i], SIGKILL);
      }
      for (pid_t pid : workers) kill(pid, SIGKILL);
      for (std::size_t i = 0; i < producers.size(); ++i) {
        if (!done[i]) reap(producers[i], 0);
      }
      break;
    }
    sleep_ns(10'000'000);
  }
  system.stop_workers(workers);
  const std::int64_t deadline = now_ns() + kStopTimeoutNs;
  std::vector<pid_t> left = workers;
  while (!left.empty()) {
    std::erase_if(left, [&](pid_t pid) { return reap(pid, WNOHANG); });
    if (left.empty()) break;
    if (now_ns() > deadline) {
      run.fail(internal_error(std::to_string(left.size()) + " worker process(es) did not stop within 10 s"));
      for (pid_t pid : left) kill(pid, SIGKILL);
      for (pid_t pid : left) reap(pid, 0);
      break;
    }
    sleep_ns(1'000'000);
  }
  system.cleanup();
  return cpu_ns;
}

}  // namespace

void sleep_ns(std::int64_t ns) noexcept {
  if (ns <= 0) return;
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool ExecutionLog::record(std::uint64_t key) noexcept {
  const std::uint32_t p = key_producer(key);
  const std::uint64_t seq = key_sequence(key);
  if (counts_ == nullptr || p >= producers_ || seq >= capacity_) return false;
  std::uint8_t& n = counts_[capacity_ * p + seq];
  if (n < 255) ++n;
  return true;
}

bool Executor::run(std::string_view payload, Receipt& out) noexcept {
  TaskHeader h;
  if (payload.size() < sizeof h) {
    ++malformed_;
    return false;
  }
  std::memcpy(&h, payload.data(), sizeof h);
  if (!log_.record(h.key)) {
    ++malformed_;
    return false;
  }
  out.key = h.key;
  out.intended_ns = h.intended_ns;
  out.start_ns = now_ns();
  if (handler_.kind == HandlerSpec::Kind::kSpin) {
    const std::int64_t until = out.start_ns + handler_.spin_ns;
    while (now_ns() < until) {
    }
  }
  out.end_ns = now_ns();
  ++executed_;
  return true;
}

RunResult run_load(System& system, const LoadConfig& config) {
  RunResult result;
  result.system = std::string(system.name());
  result.status = config.validate();
  if (!result.status.is_ok()) return result;
  const Layout layout = plan_layout(config);
  SharedRun run(config, layout);
  if (!run.status().is_ok()) {
    result.status = run.status();
    return result;
  }

  std::int64_t cpu_ns = 0;
  if (system.single_process()) {
    // The threads run in a child so that its CPU time is the run's alone
    // and a crash of the baseline cannot take the harness down.
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      run_child(parent, [&] { coordinate_threads(system, config, run); });
    }
    if (pid < 0) {
      result.status = internal_error(std::string("fork failed: ") + std::strerror(errno));
      return result;
    }
    int status = 0;
    rusage ru{};
    // Poll with the watchdog: producers that are threads of the child report
    // their heartbeats through the same mapping.
    for (;;) {
      const pid_t r = wait4(pid, &status, WNOHANG, &ru);
      if (r == pid || (r < 0 && errno != EINTR)) break;
      // [B4]: once go is set, start_ns is.
      const int stuck = run.control().go.load(std::memory_order_acquire) == 0
                            ? -1
                            : stuck_producer(run, config, [](std::uint32_t) { return true; });
      if (stuck >= 0) {
        run.fail(stuck_error(system.name(), stuck, config));
        kill(pid, SIGKILL);
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
        }
        break;
      }
      sleep_ns(10'000'000);
    }
    add_rusage(ru, cpu_ns);
    if (WIFSIGNALED(status)) {
      run.fail(internal_error(std::string(system.name()) + " run process was killed by signal " +
                              std::to_string(WTERMSIG(status))));
    }
  } else {
    cpu_ns = coordinate_processes(system, config, run);
  }

  // Every participant has exited: read the reports.
  const std::int64_t start = run.control().start_ns;
  std::int64_t last = start;
  for (std::uint32_t p = 0; p < config.producers; ++p) {
    ProducerReport& r = run.producer(p);
    result.submitted += r.submitted;
    result.malformed += r.foreign;
    result.stalled = result.stalled || r.stalled != 0;
    last = std::max(last, r.last_complete_ns);
    result.submit_to_start.merge(r.submit_to_start);
    result.start_to_complete.merge(r.start_to_complete);
    result.round_trip.merge(r.round_trip);
    result.submit_call.merge(r.submit_call);
    if (r.capacity_reached != 0 && result.status.is_ok()) {
      result.status = resource_exhausted("producer " + std::to_string(p) + " issued " +
                                         std::to_string(layout.capacity) +
                                         " tasks, the most a --duration run tracks; use a shorter --duration");
    }
  }
  for (std::uint32_t w = 0; w < config.workers; ++w) result.malformed += run.worker(w).malformed;
  // The oracle: every issued sequence seen completed once and run once.
  for (std::uint32_t p = 0; p < config.producers; ++p) {
    const std::uint8_t* seen = run.seen(p);
    const std::uint64_t issued = run.producer(p).submitted;
    for (std::uint64_t s = 0; s < issued; ++s) {
      unsigned runs = 0;
      for (std::uint32_t w = 0; w < config.workers; ++w) runs += run.exec(w)[layout.capacity * p + s];
      if (seen[s] == 0) {
        ++result.lost;
      } else {
        ++result.completed;
      }
      if (seen[s] > 1 || runs > 1) ++result.duplicates;
    }
  }
  Status err = run.first_error();
  if (!err.is_ok()) result.status = err;
  // The sidecar's figures, its CPU and its failure, if the system had one.
  system.finish_report(result);
  cpu_ns += result.helper_cpu_ns;
  result.elapsed_s = static_cast<double>(last - start) / 1e9;
  if (result.elapsed_s > 0) result.throughput_tps = static_cast<double>(result.completed) / result.elapsed_s;
  if (result.completed > 0) result.cpu_ns_per_task = static_cast<double>(cpu_ns) / static_cast<double>(result.completed);
  return result;
}

}  // namespace taskring::bench
