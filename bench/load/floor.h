// The machine's own latency floor, which the harness's latency targets are
// stated against: how long a cache line takes to travel from one core to
// another and back, and how long a futex wake takes to reach a parked process
// and come back. Both are measured between two forked processes pinned to two
// different CPUs, over an anonymous shared mapping, with nothing of taskring
// in between. `taskring-bench floor` prints them; the run command can print
// them beside its own results.
//
// Thread safety: measure_floor forks and waits for its children; call it from
// one thread of a process that has no other threads (fork copies only the
// caller). parse_cpu_pair is a function of its argument.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>

#include "histogram.h"
#include "taskring/base/status.h"

namespace taskring::bench {

struct FloorOptions {
  // The two CPUs the processes are pinned to; they must differ.
  int cpu_a = 0;
  int cpu_b = 1;
  // Recorded round trips of each measurement, each in [1, kMaxFloorIterations].
  std::uint64_t cache_line_iterations = 100'000;
  std::uint64_t futex_iterations = 20'000;
};

inline constexpr std::uint64_t kMaxFloorIterations = 1'000'000'000;

struct FloorResult {
  Histogram cache_line;  // one cache-line round trip per value, ns
  Histogram futex;       // one futex wake round trip per value, ns
};

// Runs both measurements, cache line first. Each forks two processes (side A
// records, side B echoes), pins them, runs a short unrecorded warm-up and
// then the recorded round trips, and waits for both.
// Returns the two histograms on success, or:
//  - failed precondition: fewer than 2 online CPUs, or a CPU of `options`
//    is not one this process may run on;
//  - invalid argument: the CPUs are equal or negative, an iteration count is
//    out of range;
//  - internal: mmap or fork failed, or a child could not pin itself, died or
//    exited with an error (its message is in the Status);
//  - deadline exceeded: a measurement ran far longer than its iteration count
//    allows (a stuck child); both children are killed.
// No child outlives the call, on success or failure. May block for seconds.
Result<FloorResult> measure_floor(const FloorOptions& options);

// Parses "A,B": two different CPU numbers (decimal, each below 1024).
// The error names the text and what is accepted; the caller adds the flag.
Result<std::pair<int, int>> parse_cpu_pair(std::string_view text);

}  // namespace taskring::bench
