// A point-in-time snapshot of a segment for observers (taskring status, the
// metrics exporter): header facts, configuration, task counts per state,
// per-queue depths and counters, and the worker registry. Taken through a
// read-only attach; values are racy reads of live counters.
//
// Thread safety: read_snapshot is safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/options.h"
#include "taskring/task.h"

namespace taskring {

struct QueueSnapshot {
  std::string name;
  std::array<std::uint64_t, kPriorityCount> depth{};  // per priority, approximate
  std::uint64_t submitted = 0;
  std::uint64_t claimed = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t retried = 0;  // failed attempts put back in the queue
};

enum class WorkerState : std::uint32_t {
  kFree = 0, kStarting = 1, kIdle = 2, kBusy = 3, kParked = 4, kStopped = 5,
};
std::string_view worker_state_name(WorkerState s) noexcept;

struct WorkerSnapshot {
  int index = -1;
  std::uint32_t pid = 0;
  int cpu = -1;
  WorkerState state = WorkerState::kFree;
  bool alive = false;              // the process runs (not a zombie, not a reused pid)
  std::int64_t heartbeat_age_ns = 0;
  std::uint64_t deque_depth = 0;
  std::vector<std::string> queues;
  std::uint64_t claimed = 0, succeeded = 0, failed = 0, cancelled = 0, retried = 0, stolen = 0, parks = 0;
};

struct SegmentSnapshot {
  std::string name;
  std::uint32_t layout_version = 0;
  std::uint64_t size_bytes = 0;
  std::uint32_t creator_uid = 0;
  std::uint32_t creator_pid = 0;
  std::int64_t created_unix_ns = 0;
  bool closing = false;
  EngineConfig config;
  std::array<std::uint64_t, kTaskStateCount> tasks_by_state{};
  std::uint64_t free_slots = 0;
  std::uint64_t payload_area_used_bytes = 0;
  // Crash recovery totals since creation (recovery.h).
  std::uint64_t workers_recovered = 0;
  std::uint64_t tasks_recovered = 0;    // requeued or failed after their worker died
  std::uint64_t lost_tasks_found = 0;   // found unnamed by the audit
  std::vector<QueueSnapshot> queues;
  std::vector<WorkerSnapshot> workers;  // registry entries in use
  // The journal the sidecar mirrors (config.journal says whether there is one).
  struct Journal {
    std::uint64_t written = 0;      // events reserved so far (the next position)
    std::uint64_t read = 0;         // events the sidecar has taken (its position)
    std::uint64_t durable = 0;      // events below this position are on disk
    std::uint64_t dropped = 0;      // best-effort: events dropped when it was full
    std::uint64_t lost = 0;         // reservations the sidecar skipped (their writer died)
    std::uint32_t sidecar_pid = 0;  // 0: no sidecar
    bool sidecar_alive = false;
    std::int64_t sidecar_heartbeat_age_ns = 0;
  } journal;
};

// Attaches read-only to `name` and reads everything. Errors: attach's.
Result<SegmentSnapshot> read_snapshot(std::string_view name);

}  // namespace taskring
