#include "taskring/ipc/futex.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace taskring::ipc {
namespace {
long futex(const std::atomic<std::uint32_t>& word, int op, std::uint32_t val,
           const struct timespec* ts) noexcept {
  // std::atomic<uint32_t> has the size and representation of uint32_t
  // (static_asserted in layout.h as always lock-free). Not FUTEX_PRIVATE:
  // waiters and wakers are different processes.
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), op, val, ts, nullptr, 0);
}
}  // namespace

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::int64_t timeout_ns) noexcept {
  struct timespec ts {};
  const struct timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
    tsp = &ts;
  }
  const long rc = futex(word, FUTEX_WAIT, expected, tsp);
  return !(rc == -1 && errno == ETIMEDOUT);
}

int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept {
  const long rc = futex(word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

std::int64_t monotonic_ns() noexcept {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t realtime_ns() noexcept {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

namespace {
std::atomic<std::uint32_t> g_pid{0};
void reset_pid_after_fork() noexcept { g_pid.store(0, std::memory_order_relaxed); }
}  // namespace

std::uint32_t current_pid() noexcept {
  // Relaxed: a per-process cache of an immutable value; a race only makes
  // two threads both call getpid.
  std::uint32_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    static const int registered = pthread_atfork(nullptr, nullptr, reset_pid_after_fork);
    (void)registered;
    pid = static_cast<std::uint32_t>(getpid());
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

bool process_alive(std::uint32_t pid) noexcept {
  return pid != 0 && (kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

bool Backoff::pause() noexcept {
  if (round_ < spins_) {
    ++round_;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
    return true;
  }
  if (round_ < spins_ + yields_) {
    ++round_;
    sched_yield();
    return true;
  }
  return false;
}

}  // namespace taskring::ipc
