// The sidecar's child process: fork, Sidecar::start, run until SIGTERM,
// statistics back through an anonymous shared mapping made before the fork.
#include "sidecar_process.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <type_traits>

#include "load.h"
#include "taskring/ipc/futex.h"

namespace taskring::bench {

namespace {

constexpr std::int64_t kStartTimeoutNs = 30'000'000'000;
constexpr std::size_t kErrorBytes = 512;

enum Phase : std::uint32_t { kStarting = 0, kReady = 1, kFailed = 2, kStopped = 3 };

// Set by SIGTERM in the child; Sidecar::run polls it at least every 100 ms.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");
extern "C" void on_term(int) { g_stop.store(true, std::memory_order_relaxed); }  // relaxed: a polled flag

static_assert(std::is_trivially_copyable_v<sidecar::SidecarStats>, "copied through the shared mapping");

Status status_from(std::int32_t code, std::string text) {
  if (code <= static_cast<std::int32_t>(StatusCode::kOk) || code > static_cast<std::int32_t>(StatusCode::kInternal)) {
    return internal_error(std::move(text));
  }
  return Status(static_cast<StatusCode>(code), std::move(text));
}

}  // namespace

struct SidecarProcess::Shared {
  // [S1] release by the child after it wrote error/stats for the new phase;
  // pairs with [S2] in the parent, which then reads them. (After waitpid the
  // parent could read them anyway; the phase also tells it the child is
  // ready while it still runs.)
  std::atomic<std::uint32_t> phase{kStarting};
  std::int32_t error_code = 0;
  char error[kErrorBytes] = {};
  sidecar::SidecarStats stats;

  void set_error(const Status& st) {
    const std::string text = st.to_string();
    std::memcpy(error, text.data(), std::min(text.size(), kErrorBytes - 1));
    error_code = static_cast<std::int32_t>(st.code());
  }
  std::string error_text() const { return std::string(error, strnlen(error, kErrorBytes)); }
  void set_phase(Phase p) {
    phase.store(p, std::memory_order_release);  // [S1]
    ipc::futex_wake(phase, 1);
  }
};

Result<std::unique_ptr<SidecarProcess>> SidecarProcess::start(const sidecar::SidecarOptions& options) {
  void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return internal_error(std::string("mmap for the sidecar's report failed: ") + std::strerror(errno));
  }
  std::unique_ptr<SidecarProcess> sp(new SidecarProcess());
  sp->shared_ = new (p) Shared();
  Shared* shared = sp->shared_;

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return internal_error(std::string("fork of the sidecar failed: ") + std::strerror(errno));
  if (pid == 0) {
    // The child: dies with the harness, stops on SIGTERM, never returns.
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0UL, 0UL, 0UL);
    if (getppid() != parent) _exit(70);
    struct sigaction sa {};
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    int code = 0;
    try {
      auto sc = sidecar::Sidecar::start(options);
      if (!sc) {
        shared->set_error(sc.status());
        shared->set_phase(kFailed);
        _exit(1);
      }
      shared->set_phase(kReady);
      const Status st = (*sc)->run(g_stop);
      shared->stats = (*sc)->stats();
      if (!st.is_ok()) {
        shared->set_error(st);
        code = 1;
      }
      shared->set_phase(st.is_ok() ? kStopped : kFailed);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "taskring-bench: sidecar %d: %s\n", getpid(), e.what());
      _exit(70);
    } catch (...) {
      _exit(70);
    }
    _exit(code);
  }
  sp->pid_ = pid;

  const std::int64_t deadline = ipc::monotonic_ns() + kStartTimeoutNs;
  for (;;) {
    const std::uint32_t phase = shared->phase.load(std::memory_order_acquire);  // [S2]
    if (phase == kReady) return sp;
    if (phase == kFailed) {
      return status_from(shared->error_code, "sidecar: " + shared->error_text());
    }
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0 &&
        shared->phase.load(std::memory_order_acquire) == kStarting) {  // [S2]
      return internal_error("the sidecar process " + std::to_string(pid) + " died before it was ready");
    }
    if (ipc::monotonic_ns() > deadline) return deadline_exceeded("the sidecar was not ready after 30 s");
    ipc::futex_wait(shared->phase, kStarting, 10'000'000);
  }
}

Status SidecarProcess::stop(std::int64_t timeout_ns) {
  if (pid_ <= 0) return failed_precondition("the sidecar process was already stopped");
  kill(pid_, SIGTERM);
  const std::int64_t deadline = ipc::monotonic_ns() + timeout_ns;
  int status = 0;
  rusage ru{};
  bool killed = false;
  for (;;) {
    const pid_t r = wait4(pid_, &status, WNOHANG, &ru);
    if (r == pid_) break;
    if (r < 0 && errno != EINTR) return internal_error(std::string("wait4 on the sidecar: ") + std::strerror(errno));
    if (!killed && ipc::monotonic_ns() > deadline) {
      kill(pid_, SIGKILL);
      killed = true;
    }
    sleep_ns(1'000'000);
  }
  pid_ = -1;
  cpu_ns_ = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000'000LL +
            (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
  // After wait4 the child's writes are visible; the acquire keeps [S2]'s pairing.
  const std::uint32_t phase = shared_->phase.load(std::memory_order_acquire);
  stats_ = shared_->stats;
  if (killed) {
    return deadline_exceeded("the sidecar did not stop within " + std::to_string(timeout_ns / 1'000'000) +
                             " ms and was killed");
  }
  if (phase == kFailed) {
    return status_from(shared_->error_code, "sidecar: " + shared_->error_text());
  }
  if (WIFSIGNALED(status)) {
    return internal_error("the sidecar was killed by signal " + std::to_string(WTERMSIG(status)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || phase != kStopped) {
    return internal_error("the sidecar exited with status " + std::to_string(WEXITSTATUS(status)));
  }
  return Status::ok();
}

SidecarProcess::~SidecarProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (shared_ != nullptr) {
    shared_->~Shared();
    munmap(shared_, sizeof(Shared));
  }
}

}  // namespace taskring::bench
