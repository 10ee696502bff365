// A taskring sidecar (tools/sidecar) run for the load harness in a child
// process of its own, as `taskring sidecar` runs beside an engine in
// production: it mirrors the segment's journal to a log directory with the
// given fsync policy until it is stopped, then writes and syncs what it has
// and hands its statistics back through a shared mapping. The harness counts
// its CPU time (from wait4) in the run's.
//
// Thread safety: one thread owns a SidecarProcess. start() forks: call it
// from a process with one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>

#include "sidecar.h"
#include "taskring/base/status.h"

namespace taskring::bench {

class SidecarProcess {
 public:
  // Forks the sidecar process for `options` (segment and log_dir set) and
  // waits until it has attached to the segment's journal and opened the log,
  // or up to 30 s. Errors: those of Sidecar::start (as the child reported
  // them: no journal, another reader, the log's I/O), kInternal if fork
  // failed or the child died before it was ready, kDeadlineExceeded after
  // 30 s. May block.
  static Result<std::unique_ptr<SidecarProcess>> start(const sidecar::SidecarOptions& options);
  // Kills and reaps the child if stop() was not called.
  ~SidecarProcess();
  SidecarProcess(const SidecarProcess&) = delete;
  SidecarProcess& operator=(const SidecarProcess&) = delete;

  // Asks the sidecar to stop (SIGTERM; it polls the flag at least every
  // 100 ms), waits up to `timeout_ns` for it to flush, sync and exit, then
  // SIGKILLs it. Returns OK if it exited cleanly; otherwise its error (an
  // I/O error of the log), or kInternal if it was killed or crashed, or
  // kDeadlineExceeded if it had to be killed. Call once. May block.
  Status stop(std::int64_t timeout_ns);

  // After stop(): its statistics as it left them (zero if it died without
  // writing them), and the CPU time of the process.
  const sidecar::SidecarStats& stats() const noexcept { return stats_; }
  std::int64_t cpu_ns() const noexcept { return cpu_ns_; }
  pid_t pid() const noexcept { return pid_; }

 private:
  struct Shared;
  SidecarProcess() = default;

  pid_t pid_ = -1;
  Shared* shared_ = nullptr;  // the anonymous shared mapping with the child
  sidecar::SidecarStats stats_;
  std::int64_t cpu_ns_ = 0;
};

}  // namespace taskring::bench
