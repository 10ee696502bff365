#include "taskring/admin.h"

#include <climits>

#include "engine_internal.h"
#include "taskring/ipc/futex.h"

namespace taskring {

Status create_segment(std::string_view name, const EngineConfig& config, bool replace) {
  TASKRING_RETURN_IF_ERROR(config.validate());
  auto seg = ipc::Segment::create(name, detail::layout_for(config, replace),
                                  [&](ipc::Segment& s) { return detail::Engine::format(s, config); });
  return seg.is_ok() ? Status::ok() : seg.status();
}

Status destroy_segment(std::string_view name) {
  TASKRING_RETURN_IF_ERROR(ipc::validate_segment_name(name));
  auto engine = detail::Engine::attach(name, ipc::Access::kReadWrite);
  if (!engine) {
    const StatusCode code = engine.status().code();
    if (code == StatusCode::kNotFound) return not_found("segment '" + std::string(name) + "' does not exist");
    if (code == StatusCode::kPermissionDenied) return engine.status();
    // A segment that fails validation cannot have live users of this build:
    // remove it, and say why it could not be closed politely.
    TASKRING_RETURN_IF_ERROR(ipc::Segment::remove(name));
    return Status::ok();
  }
  detail::Engine& e = **engine;
  detail::ConfigBlock& c = e.control();
  // [R6] release: workers and producers that see closing != 0 stop; pairs
  // with the acquire in Engine::closing.
  c.closing.store(1, std::memory_order_release);
  e.wake_all_workers();
  c.space_seq.fetch_add(1, std::memory_order_release);
  ipc::futex_wake(c.space_seq, INT_MAX);
  c.done_any_seq.fetch_add(1, std::memory_order_release);  // completion listeners see closing
  ipc::futex_wake(c.done_any_seq, INT_MAX);
  for (std::uint32_t i = 0; i < e.slot_count(); ++i) {
    detail::TaskSlot& s = e.slot(i);
    // Relaxed: a racy scan; a waiter parked after it still has its park timeout.
    if (s.waiters.load(std::memory_order_relaxed) != 0) {
      s.done_seq.fetch_add(1, std::memory_order_release);
      ipc::futex_wake(s.done_seq, INT_MAX);
    }
  }
  return ipc::Segment::remove(name);
}

Status drain_segment(std::string_view name) {
  auto engine = detail::Engine::attach(name, ipc::Access::kReadWrite);
  if (!engine) return engine.status();
  detail::Engine& e = **engine;
  // Relaxed: workers poll the epoch on every turn of their loop; the wake
  // below makes parked ones take that turn now (release on the futex word).
  e.control().drain_epoch.fetch_add(1, std::memory_order_relaxed);
  e.wake_all_workers();
  return Status::ok();
}

}  // namespace taskring
