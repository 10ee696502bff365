// Helpers shared by the engine tests: a segment with a client for one test,
// a worker running on its own thread that a hung engine cannot wedge the
// test binary with, polling with a deadline, and per-sanitizer scaling.
//
// ThreadSanitizer and these tests: a process maps a segment once
// (detail::Engine::attach shares the mapping between every Client and
// Worker of the process), so TSan relates the accesses of producers,
// workers and readers in one test binary, and the atomics that order them.
// Forking tests are not run under TSan.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/status.h"
#include "taskring/worker.h"
#include "test_support.h"

namespace taskring::testing {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderTsan = true;
#else
inline constexpr bool kUnderTsan = false;
#endif
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kUnderAsan = true;
#else
inline constexpr bool kUnderAsan = false;
#endif

// `normal` iterations, fewer under the sanitizers that slow threads down.
constexpr int scaled(int normal, int tsan, int asan) {
  return kUnderTsan ? tsan : (kUnderAsan ? asan : normal);
}

// A bound for waits that only a broken engine reaches. Generous: the test
// machine has two loaded cores and runs sanitizer builds.
inline constexpr std::chrono::seconds kHangTimeout{30};
inline constexpr std::int64_t kHangTimeoutNs = 30'000'000'000;

// Polls `pred` every millisecond until it holds or `timeout` passes.
template <typename Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout = kHangTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// A segment created for one test (removed at scope exit) and a client on it.
class TestSegment {
 public:
  explicit TestSegment(const std::string& tag, const EngineConfig& config = small_config())
      : guard_(unique_segment(tag)), config_(config) {
    status_ = create_segment(guard_.name(), config_);
    if (!status_.is_ok()) return;
    auto c = Client::attach(guard_.name());
    if (!c) {
      status_ = c.status();
      return;
    }
    client_.emplace(std::move(c).value());
  }

  // OK if the segment and the client exist; tests ASSERT on it first.
  const Status& status() const { return status_; }
  const std::string& name() const { return guard_.name(); }
  const EngineConfig& config() const { return config_; }
  Client& client() { return *client_; }

  // A worker with the built-in handlers registered (unless told otherwise).
  std::unique_ptr<Worker> worker(const WorkerOptions& options = {}, bool builtins = true) {
    auto w = Worker::attach(guard_.name(), options);
    EXPECT_TRUE(w.is_ok()) << w.status().to_string();
    if (!w) return nullptr;
    if (builtins) (*w)->register_builtins();
    return std::move(w).value();
  }

  SegmentSnapshot snapshot() const {
    auto s = read_snapshot(guard_.name());
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    return s ? std::move(s).value() : SegmentSnapshot{};
  }
  std::uint64_t tasks_in(TaskState st) const {
    return snapshot().tasks_by_state[static_cast<std::size_t>(st)];
  }
  std::uint64_t free_slots() const { return snapshot().free_slots; }

 private:
  SegmentGuard guard_;
  EngineConfig config_;
  Status status_;
  std::optional<Client> client_;
};

// Runs a worker's loop on its own thread: run() when n == 0, else
// run_tasks(n). If the loop does not return when asked (an engine bug), the
// thread and the worker are leaked rather than wedging the test binary: the
// test fails with a message instead of hanging until the ctest timeout.
class WorkerThread {
 public:
  explicit WorkerThread(std::unique_ptr<Worker> worker, std::uint64_t n = 0)
      : worker_(worker.release()), done_(std::make_shared<std::atomic<bool>>(false)) {
    Worker* w = worker_;
    auto done = done_;
    thread_ = std::thread([w, done, n] {
      const Status st = n == 0 ? w->run() : w->run_tasks(n);
      EXPECT_TRUE(st.is_ok()) << st.to_string();
      done->store(true, std::memory_order_release);
    });
  }
  WorkerThread(const WorkerThread&) = delete;
  WorkerThread& operator=(const WorkerThread&) = delete;
  ~WorkerThread() {
    if (!joined_ && !stop_and_join()) {
      ADD_FAILURE() << "a worker did not return from its loop within " << kHangTimeout.count()
                    << " s of stop(); its thread was leaked";
    }
  }

  // The running worker; valid until joined (or forever, if leaked).
  Worker& worker() const { return *worker_; }
  bool finished() const { return done_->load(std::memory_order_acquire); }

  // Waits for the loop to return by itself. False (thread and worker leaked)
  // on timeout. After a successful join, worker() is gone; use last_stats().
  bool join_within(std::chrono::milliseconds timeout = kHangTimeout) {
    if (joined_) return !leaked_;
    joined_ = true;
    if (!wait_until([&] { return finished(); }, timeout)) {
      thread_.detach();  // the worker object stays alive (leaked) for it
      leaked_ = true;
      return false;
    }
    thread_.join();
    last_stats_ = worker_->stats();
    delete worker_;
    worker_ = nullptr;
    return true;
  }
  // stop(), then join_within.
  bool stop_and_join(std::chrono::milliseconds timeout = kHangTimeout) {
    if (joined_) return !leaked_;
    worker_->stop();
    return join_within(timeout);
  }
  // The worker's stats when it was joined.
  const WorkerStats& last_stats() const { return last_stats_; }

 private:
  Worker* worker_;
  std::shared_ptr<std::atomic<bool>> done_;
  std::thread thread_;
  bool joined_ = false;
  bool leaked_ = false;
  WorkerStats last_stats_{};
};

}  // namespace taskring::testing
