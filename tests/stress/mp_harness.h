// Multi-process harness for the stress tests: children forked from the test
// process attach to a segment after the fork and run producers or workers;
// they report through exit codes (and a line on stderr), never through
// gtest. Shared oracle counters live in an anonymous MAP_SHARED mapping made
// before the fork.
//
// Children end with _exit: no atexit handlers, no gtest teardown, no flush of
// the parent's buffers twice.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/status.h"
#include "taskring/worker.h"
#include "test_support.h"

namespace taskring::stress {

// These tests fork, so they are not run under TSan (which does not follow
// fork); ASan keeps up with the full counts.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Exit codes of the children.
enum ChildExit : int {
  kExitOk = 0,
  kExitAttach = 10,     // Client/Worker attach failed
  kExitSubmit = 11,     // submit or submit_batch failed
  kExitWait = 12,       // wait failed (timeout, not found, ...)
  kExitWrongResult = 13,// a result or state other than expected
  kExitRun = 14,        // Worker::run returned an error
  kExitRegister = 15,   // register_handler failed
  kExitUnexpected = 16, // an expectation of the scenario did not hold
  kExitException = 17,  // an exception escaped
};

inline const char* exit_name(int code) {
  switch (code) {
    case kExitOk: return "ok";
    case kExitAttach: return "attach failed";
    case kExitSubmit: return "submit failed";
    case kExitWait: return "wait failed";
    case kExitWrongResult: return "wrong result";
    case kExitRun: return "worker run failed";
    case kExitRegister: return "register failed";
    case kExitUnexpected: return "unexpected behaviour";
    case kExitException: return "exception";
    default: return "?";
  }
}

// An array of T in memory shared with forked children.
template <typename T>
class SharedArray {
 public:
  explicit SharedArray(std::size_t n) : n_(n) {
    void* p = mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ADD_FAILURE() << "mmap of " << bytes() << " bytes failed: " << std::strerror(errno);
      n_ = 0;
      return;
    }
    data_ = static_cast<T*>(p);
    for (std::size_t i = 0; i < n_; ++i) new (&data_[i]) T();
  }
  SharedArray(const SharedArray&) = delete;
  SharedArray& operator=(const SharedArray&) = delete;
  ~SharedArray() {
    if (data_ != nullptr) munmap(data_, bytes());
  }
  T& operator[](std::size_t i) const { return data_[i]; }
  std::size_t size() const { return n_; }

 private:
  std::size_t bytes() const { return n_ * sizeof(T) == 0 ? 1 : n_ * sizeof(T); }
  std::size_t n_;
  T* data_ = nullptr;
};

// Prints a child's complaint with its pid; the parent shows stderr on failure.
template <typename... Args>
void child_log(const char* fmt, Args... args) {
  std::fprintf(stderr, "[child %d] ", static_cast<int>(getpid()));
  std::fprintf(stderr, fmt, args...);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}
inline void child_log(const char* msg) { child_log("%s", msg); }

// Forks; the child runs `body` and _exits with its return value.
inline pid_t spawn(const std::function<int()>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    int rc = kExitException;
    try {
      rc = body();
    } catch (const std::exception& e) {
      child_log("exception: %s", e.what());
    } catch (...) {
      child_log("unknown exception");
    }
    std::fflush(stderr);
    _exit(rc);
  }
  EXPECT_GT(pid, 0) << "fork failed: " << std::strerror(errno);
  return pid;
}

struct ChildResult {
  pid_t pid = -1;
  bool exited = false;    // exited normally (else signalled or still running)
  int code = -1;          // exit code, or the signal number
  bool timed_out = false; // killed by the harness at the deadline
};

inline std::string describe(const ChildResult& r) {
  if (r.timed_out) return "pid " + std::to_string(r.pid) + " did not finish in time (killed)";
  if (r.exited) return "pid " + std::to_string(r.pid) + " exited " + std::to_string(r.code) + " (" + exit_name(r.code) + ")";
  return "pid " + std::to_string(r.pid) + " killed by signal " + std::to_string(r.code);
}

// Reaps `pids`; any still running at `deadline` is SIGKILLed and marked.
inline std::vector<ChildResult> reap(const std::vector<pid_t>& pids,
                                     std::chrono::steady_clock::time_point deadline) {
  std::vector<ChildResult> out(pids.size());
  std::size_t left = pids.size();
  for (std::size_t i = 0; i < pids.size(); ++i) out[i].pid = pids[i];
  std::vector<bool> done(pids.size(), false);
  while (left > 0) {
    bool progress = false;
    for (std::size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      const pid_t r = waitpid(pids[i], &status, WNOHANG);
      if (r == pids[i]) {
        done[i] = true;
        --left;
        progress = true;
        out[i].exited = WIFEXITED(status);
        out[i].code = WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);
      } else if (r < 0) {
        done[i] = true;
        --left;
        out[i].code = -1;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      for (std::size_t i = 0; i < pids.size(); ++i) {
        if (done[i]) continue;
        kill(pids[i], SIGKILL);
        int status = 0;
        waitpid(pids[i], &status, 0);
        out[i].timed_out = true;
        done[i] = true;
      }
      break;
    }
    if (!progress) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return out;
}

// ---- the workload -------------------------------------------------------------------

// Task "xform": payload "p:seq:" plus padding; result = mix(p, seq) "/" size.
inline std::uint64_t mix(std::uint64_t p, std::uint64_t seq) {
  std::uint64_t x = (p << 32 | seq) + 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
inline std::string make_payload(int p, int seq) {
  std::string s = std::to_string(p) + ":" + std::to_string(seq) + ":";
  if (seq % 7 == 0) s.append(100 + static_cast<std::size_t>(seq % 300), 'x');  // some go to the arena
  return s;
}
inline std::string expected_result(int p, int seq) {
  return std::to_string(mix(static_cast<std::uint64_t>(p), static_cast<std::uint64_t>(seq))) + "/" +
         std::to_string(make_payload(p, seq).size());
}
inline bool parse_payload(std::string_view payload, int& p, int& seq) {
  const std::size_t a = payload.find(':');
  const std::size_t b = a == std::string_view::npos ? a : payload.find(':', a + 1);
  if (b == std::string_view::npos) return false;
  try {
    p = std::stoi(std::string(payload.substr(0, a)));
    seq = std::stoi(std::string(payload.substr(a + 1, b - a - 1)));
  } catch (...) {
    return false;
  }
  return true;
}

// Counts of handler runs per (producer, seq): the exactly-once oracle.
class RunCounts {
 public:
  RunCounts(int producers, int per_producer)
      : producers_(producers), per_(per_producer), runs_(static_cast<std::size_t>(producers) * per_producer),
        bad_(1) {}
  void record(int p, int seq) {
    if (p < 0 || p >= producers_ || seq < 0 || seq >= per_) {
      bad_[0].fetch_add(1, std::memory_order_relaxed);
      return;
    }
    runs_[index(p, seq)].fetch_add(1, std::memory_order_relaxed);
  }
  std::uint32_t runs(int p, int seq) const { return runs_[index(p, seq)].load(std::memory_order_relaxed); }
  std::uint32_t out_of_range() const { return bad_[0].load(std::memory_order_relaxed); }
  int producers() const { return producers_; }
  int per_producer() const { return per_; }

 private:
  std::size_t index(int p, int seq) const { return static_cast<std::size_t>(p) * per_ + seq; }
  int producers_, per_;
  SharedArray<std::atomic<std::uint32_t>> runs_;
  SharedArray<std::atomic<std::uint32_t>> bad_;
};

// ---- worker child ----------------------------------------------------------------------

inline std::atomic<Worker*> g_worker{nullptr};
static_assert(std::atomic<Worker*>::is_always_lock_free, "used from a signal handler");

inline void on_sigterm(int) {
  // Async-signal-safe: a lock-free load and Worker::stop (a store, an
  // atomic add and a futex wake).
  if (Worker* w = g_worker.load(std::memory_order_acquire)) w->stop();
}

// Runs a worker until SIGTERM. SIGTERM is blocked until the handler and the
// worker are in place, so an early SIGTERM is delivered, not lost.
// Runs worker `w` (handlers registered) until SIGTERM, which the caller
// blocked in `term` before attaching: the signal is let in only while
// run() can be stopped through g_worker. Returns the child's exit code.
inline int run_until_sigterm(Worker& w, const sigset_t& term) {
  g_worker.store(&w, std::memory_order_release);
  sigprocmask(SIG_UNBLOCK, &term, nullptr);
  const Status st = w.run();
  sigprocmask(SIG_BLOCK, &term, nullptr);
  g_worker.store(nullptr, std::memory_order_release);
  if (!st.is_ok()) {
    child_log("worker run: %s", st.to_string().c_str());
    return kExitRun;
  }
  return kExitOk;
}

inline int worker_child(const std::string& segment, const WorkerOptions& options, RunCounts* counts) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  auto w = Worker::attach(segment, options);
  if (!w) {
    child_log("worker attach: %s", w.status().to_string().c_str());
    return kExitAttach;
  }
  (*w)->register_builtins();
  const Status reg = (*w)->register_handler("xform", [counts](TaskContext& ctx) {
    int p = 0, seq = 0;
    if (!parse_payload(ctx.payload(), p, seq)) {
      ctx.fail("bad payload");
      return;
    }
    if (counts != nullptr) counts->record(p, seq);
    ctx.set_result(std::to_string(mix(static_cast<std::uint64_t>(p), static_cast<std::uint64_t>(seq))) + "/" +
                   std::to_string(ctx.payload().size()));
  });
  if (!reg.is_ok()) {
    child_log("register: %s", reg.to_string().c_str());
    return kExitRegister;
  }
  return run_until_sigterm(**w, term);
}

// ---- producer child -------------------------------------------------------------------

struct ProducerPlan {
  int producer = 0;
  int tasks = 0;
  int window = 512;     // tasks in flight (unread results hold slots)
  int batch = 0;        // 0: submit one at a time; else submit_batch chunks of this size
  std::atomic<std::uint64_t>* progress = nullptr;  // tasks submitted so far, for the parent
};

// Submits plan.tasks "xform" tasks, waits for every result and checks it.
inline int producer_child(const std::string& segment, const ProducerPlan& plan) {
  auto c = Client::attach(segment);
  if (!c) {
    child_log("client attach: %s", c.status().to_string().c_str());
    return kExitAttach;
  }
  Client& client = *c;
  std::deque<std::pair<TaskId, int>> inflight;
  constexpr std::int64_t kWaitNs = 120'000'000'000;
  const auto drain_one = [&]() -> int {
    const auto [id, seq] = inflight.front();
    inflight.pop_front();
    auto out = client.wait(id, kWaitNs);
    if (!out) {
      child_log("producer %d: wait for seq %d: %s", plan.producer, seq, out.status().to_string().c_str());
      return kExitWait;
    }
    if (out->state != TaskState::kSucceeded || out->value != expected_result(plan.producer, seq) ||
        out->attempts != 1 || !(out->id == id)) {
      child_log("producer %d seq %d: state %d value '%s' attempts %u, expected '%s'", plan.producer, seq,
                static_cast<int>(out->state), out->value.c_str(), out->attempts,
                expected_result(plan.producer, seq).c_str());
      return kExitWrongResult;
    }
    return kExitOk;
  };
  int seq = 0;
  std::vector<std::string> payloads;
  std::vector<TaskSpec> specs;
  std::vector<TaskId> ids;
  while (seq < plan.tasks) {
    if (plan.batch == 0) {
      auto id = client.submit("xform", make_payload(plan.producer, seq));
      if (!id) {
        child_log("producer %d: submit seq %d: %s", plan.producer, seq, id.status().to_string().c_str());
        return kExitSubmit;
      }
      inflight.emplace_back(*id, seq);
      ++seq;
    } else {
      const int n = std::min(plan.batch, plan.tasks - seq);
      payloads.clear();
      specs.clear();
      for (int i = 0; i < n; ++i) payloads.push_back(make_payload(plan.producer, seq + i));
      for (const auto& p : payloads) specs.push_back({"xform", p});
      ids.assign(static_cast<std::size_t>(n), TaskId{});
      std::size_t done = 0;
      while (done < specs.size()) {  // a partial batch is legal: submit the rest
        auto got = client.submit_batch(std::span<const TaskSpec>(specs).subspan(done),
                                       std::span<TaskId>(ids).subspan(done));
        if (!got || *got == 0) {
          child_log("producer %d: submit_batch at seq %d: %s", plan.producer, seq + static_cast<int>(done),
                    got ? "0 submitted" : got.status().to_string().c_str());
          return kExitSubmit;
        }
        done += *got;
      }
      for (int i = 0; i < n; ++i) inflight.emplace_back(ids[static_cast<std::size_t>(i)], seq + i);
      seq += n;
    }
    if (plan.progress != nullptr) plan.progress->store(static_cast<std::uint64_t>(seq), std::memory_order_relaxed);
    while (inflight.size() >= static_cast<std::size_t>(plan.window)) {
      if (const int rc = drain_one(); rc != kExitOk) return rc;
    }
  }
  while (!inflight.empty()) {
    if (const int rc = drain_one(); rc != kExitOk) return rc;
  }
  return kExitOk;
}

}  // namespace taskring::stress
