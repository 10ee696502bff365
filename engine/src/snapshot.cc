

#include "engine_internal.h"
#include "taskring/ipc/futex.h"
#include "taskring/ipc/process.h"
#include "taskring/status.h"

namespace taskring {

std::string_view worker_state_name(WorkerState s) noexcept {
  switch (s) {
    case WorkerState::kFree: return "free";
    case WorkerState::kStarting: return "starting";
    case WorkerState::kIdle: return "idle";
    case WorkerState::kBusy: return "busy";
    case WorkerState::kParked: return "parked";
    case WorkerState::kStopped: return "stopped";
  }
  return "invalid";
}

Result<SegmentSnapshot> read_snapshot(std::string_view name) {
  auto engine = detail::Engine::attach(name, ipc::Access::kReadOnly);
  if (!engine) return engine.status();
  const detail::Engine& e = **engine;
  namespace sw = detail::sw;
  SegmentSnapshot snap;
  const ipc::SegmentHeader& h = e.segment().header();
  snap.name = std::string(name);
  snap.layout_version = h.layout_version;
  snap.size_bytes = h.total_size;
  snap.creator_uid = h.creator_uid;
  snap.creator_pid = h.creator_pid;
  snap.created_unix_ns = static_cast<std::int64_t>(h.created_unix_ns);
  snap.closing = e.closing();
  snap.config = e.config();
  // All loads below are relaxed: an observer's racy snapshot of live counters.
  for (std::uint32_t i = 0; i < e.slot_count(); ++i) {
    const std::uint64_t w = e.slot(i).state.load(std::memory_order_relaxed);
    const auto st = static_cast<std::size_t>(w & sw::kStateMask);
    if (st < snap.tasks_by_state.size()) ++snap.tasks_by_state[st];
  }
  snap.free_slots = snap.tasks_by_state[static_cast<std::size_t>(TaskState::kFree)];
  snap.payload_area_used_bytes = e.arena().bumped_units_approx() * ipc::kArenaUnit;
  if (e.journaling()) {
    const ipc::Journal& j = e.journal();
    const ipc::JournalControl& jc = j.control();
    snap.journal.written = j.tail_approx();
    snap.journal.read = j.head();
    snap.journal.durable = j.durable();
    snap.journal.dropped = j.dropped();
    snap.journal.lost = j.lost();
    snap.journal.sidecar_pid = jc.reader_pid.load(std::memory_order_relaxed);
    snap.journal.sidecar_alive =
        ipc::process_running(snap.journal.sidecar_pid, jc.reader_start_time.load(std::memory_order_relaxed));
    snap.journal.sidecar_heartbeat_age_ns =
        snap.journal.sidecar_pid == 0 ? 0 : ipc::monotonic_ns() - jc.reader_heartbeat_ns.load(std::memory_order_relaxed);
  }
  snap.workers_recovered = e.control().workers_recovered.load(std::memory_order_relaxed);
  snap.tasks_recovered = e.control().tasks_recovered.load(std::memory_order_relaxed);
  snap.lost_tasks_found = e.control().lost_tasks_found.load(std::memory_order_relaxed);
  for (std::uint32_t q = 0; q < e.queue_count(); ++q) {
    QueueSnapshot qs;
    qs.name = std::string(e.queue_name(q));
    for (int p = 0; p < kPriorityCount; ++p) qs.depth[p] = e.ring(q, static_cast<Priority>(p)).size_approx();
    qs.submitted = e.queue(q).submitted.load(std::memory_order_relaxed);
    qs.cancelled = e.queue(q).cancelled.load(std::memory_order_relaxed);
    snap.queues.push_back(std::move(qs));
  }
  const std::int64_t now = ipc::monotonic_ns();
  for (std::uint32_t i = 0; i < e.max_workers(); ++i) {
    const detail::WorkerEntry& w = e.worker(i);
    // Counters of every entry, used or not, so totals survive worker exits.
    for (std::uint32_t q = 0; q < e.queue_count(); ++q) {
      snap.queues[q].claimed += w.counters[q][detail::kCounterClaimed].load(std::memory_order_relaxed);
      snap.queues[q].succeeded += w.counters[q][detail::kCounterSucceeded].load(std::memory_order_relaxed);
      snap.queues[q].failed += w.counters[q][detail::kCounterFailed].load(std::memory_order_relaxed);
      snap.queues[q].cancelled += w.counters[q][detail::kCounterCancelled].load(std::memory_order_relaxed);
      snap.queues[q].retried += w.counters[q][detail::kCounterRetried].load(std::memory_order_relaxed);
    }
    const std::uint64_t claim = w.claim.load(std::memory_order_relaxed);
    const auto state = static_cast<WorkerState>(w.state.load(std::memory_order_relaxed));
    if (detail::claim_pid(claim) == 0) continue;  // a free entry
    WorkerSnapshot ws;
    ws.index = static_cast<int>(i);
    ws.pid = detail::claim_pid(claim);
    ws.cpu = w.cpu.load(std::memory_order_relaxed);
    ws.state = state;
    ws.alive = ipc::process_running(ws.pid, w.start_time.load(std::memory_order_relaxed));
    ws.heartbeat_age_ns = now - w.heartbeat_ns.load(std::memory_order_relaxed);
    ws.deque_depth = e.deque(i).size_approx();
    const std::uint64_t mask = w.queue_mask.load(std::memory_order_relaxed);
    for (std::uint32_t q = 0; q < e.queue_count(); ++q) {
      if ((mask >> q) & 1) ws.queues.emplace_back(e.queue_name(q));
      ws.claimed += w.counters[q][detail::kCounterClaimed].load(std::memory_order_relaxed);
      ws.succeeded += w.counters[q][detail::kCounterSucceeded].load(std::memory_order_relaxed);
      ws.failed += w.counters[q][detail::kCounterFailed].load(std::memory_order_relaxed);
      ws.cancelled += w.counters[q][detail::kCounterCancelled].load(std::memory_order_relaxed);
      ws.retried += w.counters[q][detail::kCounterRetried].load(std::memory_order_relaxed);
    }
    ws.stolen = w.stolen.load(std::memory_order_relaxed);
    ws.parks = w.parks.load(std::memory_order_relaxed);
    snap.workers.push_back(std::move(ws));
  }
  return snap;
}

}  // namespace taskring
