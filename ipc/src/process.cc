#include "taskring/ipc/process.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "taskring/ipc/futex.h"

namespace taskring::ipc {
namespace {

std::atomic<std::uint64_t> g_start_time{0};

void reset_start_time_after_fork() { g_start_time.store(0, std::memory_order_relaxed); }

enum class ProcRead { kOk, kGone, kUnknown };

// Reads /proc/PID/<file> into buf (NUL-terminated). kGone only when the
// kernel says there is no such process (ENOENT, ESRCH, or an empty read);
// any other failure (out of descriptors or memory, ...) is kUnknown, which
// callers must not take for a death.
template <std::size_t N>
ProcRead read_proc_file(std::uint32_t pid, const char* file, char (&buf)[N]) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%u/%s", pid, file);
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? ProcRead::kGone : ProcRead::kUnknown;
  ssize_t n;
  do {
    n = read(fd, buf, N - 1);
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  close(fd);
  if (n < 0) return err == ESRCH ? ProcRead::kGone : ProcRead::kUnknown;
  if (n == 0) return ProcRead::kGone;
  buf[n] = '\0';
  return ProcRead::kOk;
}

// A process whose main thread exited while others run shows as a zombie
// in /proc/PID/stat; /proc/PID/status counts its threads. An unreadable
// status counts as running: never take a doubt for a death.
bool other_threads_run(std::uint32_t pid) noexcept {
  char buf[4096];
  const ProcRead r = read_proc_file(pid, "status", buf);
  if (r != ProcRead::kOk) return r == ProcRead::kUnknown;
  const char* t = std::strstr(buf, "\nThreads:");
  return t != nullptr && std::strtol(t + 9, nullptr, 10) > 1;
}

}  // namespace

ProcessStat read_process_stat(std::uint32_t pid) noexcept {
  ProcessStat st;
  if (pid == 0) return st;
  char buf[1024];
  const ProcRead r = read_proc_file(pid, "stat", buf);
  if (r != ProcRead::kOk) {
    st.unknown = r == ProcRead::kUnknown;
    return st;
  }
  // Field 2 (comm) is in parentheses and may hold spaces and ')': the
  // fields after it start after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return st;
  p += 2;  // field 3, the state
  st.exists = true;
  st.state = *p;
  // Fields 3.. are space-separated numbers; walk to 22 (starttime) and 52
  // (exit_code, Linux 3.5 and later).
  int field = 3;
  while (*p != '\0' && field < 52) {
    while (*p != '\0' && *p != ' ') ++p;
    if (*p == ' ') ++p;
    ++field;
    if (field == 22) st.start_time = std::strtoull(p, nullptr, 10);
  }
  if (field == 52 && *p != '\0' && (st.state == 'Z' || st.state == 'X')) {
    st.exit_status = static_cast<int>(std::strtol(p, nullptr, 10));
  }
  return st;
}

std::uint64_t current_start_time() noexcept {
  // Relaxed: a per-process cache of an immutable value.
  std::uint64_t t = g_start_time.load(std::memory_order_relaxed);
  if (t == 0) {
    static const int registered = pthread_atfork(nullptr, nullptr, reset_start_time_after_fork);
    (void)registered;
    t = read_process_stat(current_pid()).start_time;
    g_start_time.store(t, std::memory_order_relaxed);
  }
  return t;
}

bool process_running(std::uint32_t pid, std::uint64_t start_time) noexcept {
  if (pid == 0) return false;
  const ProcessStat st = read_process_stat(pid);
  if (st.unknown) return true;  // could not look: never take a doubt for a death
  if (!st.exists) {
    // No /proc entry: gone, unless /proc itself is unreadable here; then
    // fall back to kill(2), which cannot tell a zombie or a reused pid.
    return access("/proc/self/stat", R_OK) != 0 && process_alive(pid);
  }
  if ((st.state == 'Z' || st.state == 'X') && !other_threads_run(pid)) return false;
  return start_time == 0 || st.start_time == start_time;
}

}  // namespace taskring::ipc
