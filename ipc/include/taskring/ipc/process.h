// Process identity for crash detection: a pid alone is not an identity,
// because the kernel reuses pids. A process is named by its pid and its start
// time (clock ticks after boot, /proc/PID/stat field 22), which together
// never repeat while the machine is up.
//
// Thread safety: all functions are safe from any thread. Each reads /proc
// (a few microseconds); none is for a hot path.
#pragma once

#include <cstdint>

namespace taskring::ipc {

struct ProcessStat {
  bool exists = false;       // /proc/PID/stat could be read
  bool unknown = false;      // it could not be read for another reason than the process being gone
  char state = '?';          // R, S, D, Z (zombie: exited, not yet reaped), X, ...
  std::uint64_t start_time = 0;  // clock ticks after boot
  int exit_status = -1;      // a waitpid() status, for a zombie; -1 if unknown
};

// Reads /proc/PID/stat. exists is false if there is no such process (or
// /proc is not readable).
ProcessStat read_process_stat(std::uint32_t pid) noexcept;

// The start time of the calling process (cached after the first call and
// refreshed after fork).
std::uint64_t current_start_time() noexcept;

// True if the process that had `pid` and started at `start_time` is still
// running: it exists, is not a zombie, and (if start_time != 0) started at
// that time, so a reused pid reads as dead. False for pid 0. True when
// /proc cannot be read for another reason than the process being gone
// (out of descriptors, say): recovery must never act on a doubt.
bool process_running(std::uint32_t pid, std::uint64_t start_time) noexcept;

}  // namespace taskring::ipc
