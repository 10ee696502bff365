// Futex waits on 32-bit words in shared memory, and the spin-then-yield-then-
// park backoff that every waiter in taskring uses so that many processes on
// few cores do not burn each other's time.
//
// Thread safety: all functions are safe from any thread of any process.
#pragma once

#include <atomic>
#include <cstdint>

namespace taskring::ipc {

// Sleeps while *word == expected, for at most timeout_ns (< 0: no limit).
// Returns true if woken or the value differed, false on timeout. Spurious
// returns are possible: callers re-check their condition. May block.
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::int64_t timeout_ns) noexcept;
// Wakes up to `count` waiters on `word`; returns how many were woken.
int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept;

// CLOCK_MONOTONIC in nanoseconds: system-wide, so comparable across processes.
std::int64_t monotonic_ns() noexcept;
// CLOCK_REALTIME in nanoseconds.
std::int64_t realtime_ns() noexcept;
// getpid(), cached (glibc makes every getpid a system call); the cache is
// refreshed in the child after fork.
std::uint32_t current_pid() noexcept;
// True if a process with this pid exists (kill(pid, 0) succeeds, or fails
// only for lack of permission). False for pid 0. A system call.
bool process_alive(std::uint32_t pid) noexcept;

// Spin with a CPU pause, then yield the CPU, then tell the caller to park.
class Backoff {
 public:
  static constexpr std::uint32_t kDefaultSpins = 128;
  static constexpr std::uint32_t kDefaultYields = 16;

  explicit Backoff(std::uint32_t spins = kDefaultSpins, std::uint32_t yields = kDefaultYields) noexcept
      : spins_(spins), yields_(yields) {}
  // Waits a little; returns false once spinning and yielding are used up and
  // the caller should park instead.
  bool pause() noexcept;
  void reset() noexcept { round_ = 0; }

 private:
  std::uint32_t spins_;
  std::uint32_t yields_;
  std::uint32_t round_ = 0;
};

}  // namespace taskring::ipc
