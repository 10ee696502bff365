#include "engine_internal.h"


#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <cstring>
#include <memory>
#include <string>

#include "taskring/ipc/futex.h"

namespace taskring::detail {
namespace {

std::uint64_t arena_units_for(std::uint64_t bytes) { return bytes / ipc::kArenaUnit; }

// A ring section holds `n` rings of `capacity` cells, each ring starting on a
// RingControl boundary (ring_bytes is a multiple of it for capacity >= 16).
std::uint64_t ring_stride(std::uint64_t capacity) { return ipc::ring_bytes(capacity); }

}  // namespace

ipc::CreateOptions layout_for(const EngineConfig& c, bool replace) {
  ipc::CreateOptions o;
  o.layout_version = kLayoutVersion;
  o.mode = c.mode;
  o.replace = replace;
  const auto q = static_cast<std::uint64_t>(c.queues.size());
  o.sections = {
      {kSecConfig, sizeof(ConfigBlock), 1},
      {kSecQueues, sizeof(QueueEntry), q},
      {kSecRings, static_cast<std::uint32_t>(ring_stride(c.ring_capacity)), q * kPriorityCount},
      {kSecSlots, sizeof(TaskSlot), c.slots},
      {kSecSlotFree, sizeof(ipc::FreeStackHead), 1},
      {kSecArena, 1, ipc::arena_control_bytes() + arena_units_for(c.payload_area) * ipc::kArenaUnit},
      {kSecWorkers, sizeof(WorkerEntry), c.max_workers},
      {kSecDeques, static_cast<std::uint32_t>(ring_stride(c.deque_capacity)), c.max_workers},
      {kSecTimers, 1, ring_stride(timer_capacity(c.slots))},
  };
  if (c.journal != JournalMode::kOff) o.sections.push_back({kSecJournal, 1, ipc::journal_bytes(c.journal_capacity)});
  return o;
}

Status Engine::format(ipc::Segment& seg, const EngineConfig& c) {
  auto* control = reinterpret_cast<ConfigBlock*>(seg.section_bytes(kSecConfig).data());
  // Relaxed stores throughout: nothing is shared until the segment's ready
  // flag is stored with release (ipc::Segment::create).
  control->slot_count = c.slots;
  control->queue_count = static_cast<std::uint32_t>(c.queues.size());
  control->ring_capacity = c.ring_capacity;
  control->max_payload = c.max_payload;
  control->payload_area_units = arena_units_for(c.payload_area);
  control->max_workers = c.max_workers;
  control->deque_capacity = c.deque_capacity;
  control->slot_size = sizeof(TaskSlot);
  control->inline_bytes = kInlineBytes;
  control->inline_result_bytes = kInlineResultBytes;
  control->mode = c.mode;
  control->result_ttl_ns = c.result_ttl_ns;
  control->journal_mode = static_cast<std::uint32_t>(c.journal);
  control->journal_capacity = c.journal_capacity;
  if (c.journal != JournalMode::kOff) {
    ipc::Journal::format(reinterpret_cast<ipc::JournalControl*>(seg.section_bytes(kSecJournal).data()),
                         c.journal_capacity);
  }

  auto* queues = reinterpret_cast<QueueEntry*>(seg.section_bytes(kSecQueues).data());
  for (std::size_t i = 0; i < c.queues.size(); ++i) {
    std::memcpy(queues[i].name, c.queues[i].data(), c.queues[i].size());
  }
  std::byte* rings = seg.section_bytes(kSecRings).data();
  for (std::uint64_t r = 0; r < c.queues.size() * kPriorityCount; ++r) {
    ipc::Ring::format(reinterpret_cast<ipc::RingControl*>(rings + r * ring_stride(c.ring_capacity)),
                      c.ring_capacity);
  }
  std::byte* deques = seg.section_bytes(kSecDeques).data();
  for (std::uint64_t w = 0; w < c.max_workers; ++w) {
    ipc::Ring::format(reinterpret_cast<ipc::RingControl*>(deques + w * ring_stride(c.deque_capacity)),
                      c.deque_capacity);
  }
  ipc::Ring::format(reinterpret_cast<ipc::RingControl*>(seg.section_bytes(kSecTimers).data()),
                    timer_capacity(c.slots));
  control->next_due_ns.store(INT64_MAX, std::memory_order_relaxed);
  auto* slots = reinterpret_cast<TaskSlot*>(seg.section_bytes(kSecSlots).data());
  for (std::uint32_t i = 0; i < c.slots; ++i) {
    slots[i].state.store(sw::make_free(1), std::memory_order_relaxed);
    slots[i].payload_block = kNoBlock;
    slots[i].result_block = kNoBlock;
  }
  auto* free_head = reinterpret_cast<ipc::FreeStackHead*>(seg.section_bytes(kSecSlotFree).data());
  ipc::FreeStack(free_head, reinterpret_cast<std::byte*>(&slots[0].next_free), sizeof(TaskSlot), c.slots)
      .format(0, c.slots);
  ipc::Arena::format(reinterpret_cast<ipc::ArenaControl*>(seg.section_bytes(kSecArena).data()),
                     arena_units_for(c.payload_area));
  auto* workers = reinterpret_cast<WorkerEntry*>(seg.section_bytes(kSecWorkers).data());
  for (std::uint32_t w = 0; w < c.max_workers; ++w) {
    workers[w].current_slot.store(ipc::kNilIndex, std::memory_order_relaxed);
    workers[w].cpu.store(-1, std::memory_order_relaxed);
  }
  return Status::ok();
}

Engine::Engine(ipc::Segment seg) noexcept : seg_(std::move(seg)) {}

namespace {
// The process's mappings, by access mode and name. Process-local memory: the
// mutex is never in shared memory, and it guards only attach and the map.
struct MappingCache {
  std::mutex mu;
  std::map<std::pair<int, std::string>, std::weak_ptr<Engine>> engines;
};
MappingCache& mapping_cache() {
  static MappingCache* cache = new MappingCache;  // never destroyed: safe at exit
  return *cache;
}
}  // namespace

Result<std::shared_ptr<Engine>> Engine::attach(std::string_view name, ipc::Access access) {
  TASKRING_RETURN_IF_ERROR(ipc::validate_segment_name(name));
  MappingCache& cache = mapping_cache();
  const std::pair<int, std::string> key(static_cast<int>(access), std::string(name));
  std::lock_guard<std::mutex> lock(cache.mu);
  if (auto it = cache.engines.find(key); it != cache.engines.end()) {
    if (std::shared_ptr<Engine> e = it->second.lock()) {
      // Reuse only if the name still refers to the file we map.
      auto id = ipc::Segment::file_identity(name);
      if (id.is_ok() && *id == e->seg_.identity()) return e;
    }
    cache.engines.erase(it);
  }
  auto seg = ipc::Segment::attach(name, kLayoutVersion, access);
  if (!seg) return seg.status();
  std::shared_ptr<Engine> e(new Engine(std::move(seg).value()));
  TASKRING_RETURN_IF_ERROR(e->bind(access));
  cache.engines[key] = e;
  return e;
}

// Validates the engine's sections against the config block and builds the
// typed views. Every size read from the segment is checked before use.
Status Engine::bind(ipc::Access) {
  const std::string who = "segment '" + seg_.name() + "'";
  const auto need = [&](std::uint32_t id, const char* what) -> Result<const ipc::SectionEntry*> {
    const ipc::SectionEntry* e = seg_.section(id);
    if (e == nullptr) return data_loss(who + ": the " + what + " section (id " + std::to_string(id) + ") is missing");
    return e;
  };
  auto cfg = need(kSecConfig, "config");
  if (!cfg) return cfg.status();
  if ((*cfg)->size < sizeof(ConfigBlock)) return data_loss(who + ": config section too small");
  control_ = reinterpret_cast<ConfigBlock*>(seg_.base() + (*cfg)->offset);
  const ConfigBlock& c = *control_;
  if (c.slot_size != sizeof(TaskSlot) || c.inline_bytes != kInlineBytes ||
      c.inline_result_bytes != kInlineResultBytes) {
    return data_loss(who + ": slot size " + std::to_string(c.slot_size) + " / inline bytes " +
                     std::to_string(c.inline_bytes) + " differ from this build's " +
                     std::to_string(sizeof(TaskSlot)) + " / " + std::to_string(kInlineBytes));
  }
  // Rebuild the config and check it as if a user had passed it.
  config_.slots = c.slot_count;
  config_.ring_capacity = c.ring_capacity;
  config_.max_payload = c.max_payload;
  config_.payload_area = c.payload_area_units * ipc::kArenaUnit;
  config_.max_workers = c.max_workers;
  config_.deque_capacity = c.deque_capacity;
  config_.mode = c.mode;
  config_.result_ttl_ns = c.result_ttl_ns;
  config_.journal = static_cast<JournalMode>(c.journal_mode);
  config_.journal_capacity = c.journal_capacity;
  if (c.queue_count == 0 || c.queue_count > kMaxQueues) {
    return data_loss(who + ": queue count " + std::to_string(c.queue_count) + " outside 1.." +
                     std::to_string(kMaxQueues));
  }
  auto qs = need(kSecQueues, "queue table");
  if (!qs) return qs.status();
  if ((*qs)->size < std::uint64_t{c.queue_count} * sizeof(QueueEntry)) return data_loss(who + ": queue table too small");
  queues_ = reinterpret_cast<QueueEntry*>(seg_.base() + (*qs)->offset);
  config_.queues.clear();
  for (std::uint32_t q = 0; q < c.queue_count; ++q) {
    const char* n = queues_[q].name;
    const std::size_t len = strnlen(n, sizeof(queues_[q].name));
    // strnlen keeps the read inside the entry; validate() below checks the
    // characters and the length of every name.
    config_.queues.emplace_back(n, len);
  }
  Status valid = config_.validate();
  if (!valid.is_ok()) return data_loss(who + ": stored configuration is invalid: " + valid.message());

  // Each section must be exactly what this configuration lays out.
  const ipc::CreateOptions expect = layout_for(config_, false);
  for (const ipc::SectionSpec& s : expect.sections) {
    const ipc::SectionEntry* e = seg_.section(s.id);
    if (e == nullptr || e->elem_size != s.elem_size || e->count != s.count || e->size != s.count * s.elem_size) {
      return data_loss(who + ": section " + std::to_string(s.id) + " does not match its configuration");
    }
  }
  slot_count_ = c.slot_count;
  queue_count_ = c.queue_count;
  max_workers_ = c.max_workers;
  ring_stride_ = ring_stride(c.ring_capacity);
  deque_stride_ = ring_stride(c.deque_capacity);
  rings_ = seg_.section_bytes(kSecRings).data();
  slots_ = reinterpret_cast<TaskSlot*>(seg_.section_bytes(kSecSlots).data());
  workers_ = reinterpret_cast<WorkerEntry*>(seg_.section_bytes(kSecWorkers).data());
  deques_ = seg_.section_bytes(kSecDeques).data();
  timers_ = seg_.section_bytes(kSecTimers).data();
  if (reinterpret_cast<const ipc::RingControl*>(timers_)->capacity != timer_capacity(c.slot_count)) {
    return data_loss(who + ": the timer ring records capacity " +
                     std::to_string(reinterpret_cast<const ipc::RingControl*>(timers_)->capacity) + ", expected " +
                     std::to_string(timer_capacity(c.slot_count)));
  }
  // The rings and the arena record their sizes too; they must agree.
  for (std::uint32_t r = 0; r < queue_count_ * kPriorityCount; ++r) {
    const auto* rc = reinterpret_cast<const ipc::RingControl*>(rings_ + r * ring_stride_);
    if (rc->capacity != c.ring_capacity) {
      return data_loss(who + ": ring " + std::to_string(r) + " records capacity " + std::to_string(rc->capacity) +
                       ", the config says " + std::to_string(c.ring_capacity));
    }
  }
  for (std::uint32_t w = 0; w < max_workers_; ++w) {
    const auto* rc = reinterpret_cast<const ipc::RingControl*>(deques_ + w * deque_stride_);
    if (rc->capacity != c.deque_capacity) {
      return data_loss(who + ": deque " + std::to_string(w) + " records capacity " + std::to_string(rc->capacity) +
                       ", the config says " + std::to_string(c.deque_capacity));
    }
  }
  const auto* ac = reinterpret_cast<const ipc::ArenaControl*>(seg_.section_bytes(kSecArena).data());
  if (ac->area_units != c.payload_area_units) {
    return data_loss(who + ": the payload area records " + std::to_string(ac->area_units) +
                     " units, the config says " + std::to_string(c.payload_area_units));
  }
  if (config_.journal != JournalMode::kOff) {
    auto* jc = reinterpret_cast<ipc::JournalControl*>(seg_.section_bytes(kSecJournal).data());
    if (jc->capacity != c.journal_capacity) {
      return data_loss(who + ": the journal records capacity " + std::to_string(jc->capacity) +
                       ", the config says " + std::to_string(c.journal_capacity));
    }
    journal_ = ipc::Journal(jc, c.journal_capacity);
  }
  journal_mode_ = config_.journal;
  free_slots_ = ipc::FreeStack(reinterpret_cast<ipc::FreeStackHead*>(seg_.section_bytes(kSecSlotFree).data()),
                               reinterpret_cast<std::byte*>(&slots_[0].next_free), sizeof(TaskSlot), slot_count_);
  arena_ = ipc::Arena(reinterpret_cast<ipc::ArenaControl*>(seg_.section_bytes(kSecArena).data()),
                      c.payload_area_units);
  return Status::ok();
}

int Engine::find_queue(std::string_view name) const noexcept {
  if (name.empty()) return 0;
  for (std::uint32_t q = 0; q < queue_count_; ++q) {
    if (config_.queues[q] == name) return static_cast<int>(q);
  }
  return -1;
}

std::string_view Engine::queue_name(std::uint32_t q) const noexcept {
  return q < queue_count_ ? std::string_view(config_.queues[q]) : std::string_view("?");
}

Status Engine::unknown_queue(std::string_view name) const {
  std::string names;
  for (const std::string& n : config_.queues) names += (names.empty() ? "" : ", ") + n;
  return invalid_argument("queue '" + std::string(name) + "': not in segment '" + seg_.name() +
                          "', whose queues are: " + names);
}

ipc::Ring Engine::ring(std::uint32_t q, Priority p) const noexcept {
  const std::uint64_t r = std::uint64_t{q} * kPriorityCount + static_cast<std::uint32_t>(p);
  return ipc::Ring(reinterpret_cast<ipc::RingControl*>(rings_ + r * ring_stride_), config_.ring_capacity);
}

ipc::Ring Engine::deque(std::uint32_t w) const noexcept {
  return ipc::Ring(reinterpret_cast<ipc::RingControl*>(deques_ + std::uint64_t{w} * deque_stride_),
                   config_.deque_capacity);
}

std::uint32_t Engine::worker_hwm() const noexcept {
  // Relaxed: a scan bound; see Worker::attach. Clamped: shared memory is not
  // trusted to hold a sane value.
  const std::uint32_t hwm = control_->worker_hwm.load(std::memory_order_relaxed);
  return hwm < max_workers_ ? hwm : max_workers_;
}

bool Engine::closing() const noexcept {
  // Acquire: pairs with the release store in destroy_segment; nothing is
  // read through it, but it keeps "closing" ordered after the wake-ups' cause.
  return control_->closing.load(std::memory_order_acquire) != 0;
}

TaskSlot* Engine::lookup(TaskId id, std::uint64_t& word) const noexcept {
  if (!id.valid() || id.slot() >= slot_count_) return nullptr;
  TaskSlot& s = slots_[id.slot()];
  // [A3] acquire: pairs with the release in the transitions that published
  // the slot's fields ([R3] submit, [R4] completion).
  word = s.state.load(std::memory_order_acquire);
  if (sw::generation(word) != id.generation() || sw::state(word) == TaskState::kFree || sw::reserved(word)) {
    return nullptr;
  }
  return &s;
}

ipc::Arena::AllocResult Engine::store_bytes(TaskSlot& s, bool result, std::string_view bytes) noexcept {
  std::uint32_t& len = result ? s.result_len : s.payload_len;
  std::uint32_t& block = result ? s.result_block : s.payload_block;
  std::uint8_t* inline_area = result ? s.inline_result : s.inline_payload;
  if (bytes.size() <= (result ? kInlineResultBytes : kInlineBytes)) {
    if (!bytes.empty()) std::memcpy(inline_area, bytes.data(), bytes.size());
    block = kNoBlock;
  } else {
    std::uint32_t unit = 0;
    const auto r = arena_.allocate(bytes.size(), unit);
    if (r != ipc::Arena::AllocResult::kOk) return r;
    std::memcpy(arena_.resolve(unit).data(), bytes.data(), bytes.size());
    block = unit;
  }
  len = static_cast<std::uint32_t>(bytes.size());
  return ipc::Arena::AllocResult::kOk;
}

bool Engine::read_bytes(const TaskSlot& s, bool result, std::string_view& out) const noexcept {
  const std::uint32_t len = result ? s.result_len : s.payload_len;
  const std::uint32_t block = result ? s.result_block : s.payload_block;
  if (block == kNoBlock) {
    if (len > (result ? kInlineResultBytes : kInlineBytes)) return false;
    out = {reinterpret_cast<const char*>(result ? s.inline_result : s.inline_payload), len};
    return true;
  }
  const std::span<std::byte> data = arena_.resolve(block);
  if (data.empty() || len > data.size()) return false;
  out = {reinterpret_cast<const char*>(data.data()), len};
  return true;
}

// Each block number is cleared before its block is released: a process
// killed in between leaks the block, where the other order would let the
// next recoverer or the slot's next owner release it a second time.
void Engine::release_result(TaskSlot& s) noexcept {
  const std::uint32_t block = s.result_block;
  s.result_block = kNoBlock;
  s.result_len = 0;
  if (block != kNoBlock) arena_.release(block);
}

void Engine::release_blocks(TaskSlot& s) noexcept {
  const std::uint32_t payload = s.payload_block;
  s.payload_block = kNoBlock;
  s.payload_len = 0;
  if (payload != kNoBlock) arena_.release(payload);
  release_result(s);
  // Relaxed: the next owner pops the slot from the free stack, whose push
  // releases these stores. Resetting here, on the side that just read them,
  // keeps submit from touching the worker's cache line (line 3).
  s.start_ns.store(0, std::memory_order_relaxed);
  s.finish_ns.store(0, std::memory_order_relaxed);
  s.progress.store(0, std::memory_order_relaxed);
  // Only a delayed task that never ran still has one (a claim clears it):
  // submit writes line 2 only for delayed tasks.
  clear_if_set(s.run_at_ns);
  clear_if_set(s.time_limit_ms);
}

bool Engine::free_slot(std::uint32_t index, std::uint64_t& word, log::FreeReason why) noexcept {
  TaskSlot& s = slots_[index];
  // Every free advances the generation, a reserved slot's too (no id was
  // handed out for it, so skipping one costs nothing): no two reservations
  // of a slot have the same word, so a recoverer's CAS on a dead producer's
  // reservation can never free a later producer's. And an old task's id
  // never names the slot again.
  const std::uint32_t gen = sw::next_generation(sw::generation(word));
  // [R5] acq_rel: acquire the last writer's fields before we release their
  // blocks; release so the next owner, who pops the slot from the free stack,
  // sees it free. Once this CAS succeeds we own the slot exclusively: a free
  // slot is reachable only through the free stack.
  if (!s.state.compare_exchange_strong(word, sw::make_free(gen, word), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
    return false;  // acquire on failure: the caller re-examines the new word, as [A3]
  }
  // Journalled before the push: once the slot is on the free stack a new
  // task may take it, and its kSubmitted must come after our kFreed.
  if (!sw::reserved(word)) journal_event(log::RecordType::kFreed, index, sw::make_free(gen, word), static_cast<std::uint32_t>(why));
  release_blocks(s);
  free_slots_.push(index);
  notify_space();
  return true;
}

std::uint64_t Engine::journal_events(log::RecordType type, const std::uint32_t* index, const std::uint64_t* word,
                                     std::size_t n, std::uint32_t aux, bool keep, std::int64_t deadline) noexcept {
  if (journal_mode_ == JournalMode::kOff || n == 0) return kNoJournalPos;
  const bool wait = keep || journal_mode_ == JournalMode::kDurable;
  const auto count = static_cast<std::uint32_t>(std::min<std::uint64_t>(n, journal_.capacity()));
  std::uint64_t first = 0;
  ipc::Backoff backoff;
  while (!journal_.try_reserve(count, first)) {
    const std::int64_t now = deadline == INT64_MAX ? 0 : ipc::monotonic_ns();
    if (!wait || closing() || now >= deadline) {
      journal_.add_dropped(n);
      return kNoJournalPos;
    }
    // Re-check closing and the deadline at least every 10 ms.
    if (!backoff.pause()) journal_.wait_for_space(count, std::min<std::int64_t>(deadline - now, 10'000'000));
  }
  JournalEvent ev{};
  ev.pid = ipc::current_pid();
  ev.type = static_cast<std::uint8_t>(type);
  ev.aux = aux;
  for (std::uint32_t i = 0; i < count; ++i) {
    ev.word = word[i];
    ev.slot = index[i];
    journal_.write(first + i, &ev, sizeof ev);  // false: skipped, and the sidecar resyncs
  }
  if (count < n) return journal_events(type, index + count, word + count, n - count, aux, keep, deadline);
  return first + count - 1;
}

bool Engine::take_journal_reader() noexcept {
  const std::uint32_t me = ipc::current_pid();
  std::uint32_t held = journal_reader_pid_.load(std::memory_order_acquire);
  for (;;) {
    if (held == me) return false;  // a reader of ours is attached
    // 0, or our parent's before a fork: ours now.
    if (journal_reader_pid_.compare_exchange_weak(held, me, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return true;
    }
  }
}

void Engine::give_journal_reader() noexcept {
  std::uint32_t me = ipc::current_pid();
  journal_reader_pid_.compare_exchange_strong(me, 0, std::memory_order_release, std::memory_order_relaxed);
}

Status Engine::wait_durable(std::uint64_t pos, std::int64_t deadline, TaskId id, const SubmitOptions& o) noexcept {
  if (pos == kNoJournalPos) {
    // The event was dropped: the segment is closing, or the journal stayed
    // full past the deadline. The sidecar's resync will still find the task.
    if (closing()) return failed_precondition("segment '" + seg_.name() + "' is closing");
    return deadline_exceeded("task " + to_string(id) +
                             " was submitted but could not enter the full journal in time: is the sidecar of "
                             "segment '" + seg_.name() + "' running?");
  }
  ipc::Backoff backoff;
  for (;;) {
    if (journal_.is_durable(pos)) return Status::ok();
    if (closing()) return failed_precondition("segment '" + seg_.name() + "' is closing");
    const std::int64_t now = ipc::monotonic_ns();
    if (now >= deadline) {
      // Relaxed: for the message only.
      const std::uint32_t reader = journal_.control().reader_pid.load(std::memory_order_relaxed);
      return deadline_exceeded("task " + to_string(id) + " was submitted but is not on disk yet: " +
                               (reader == 0 ? "no sidecar serves segment '" + seg_.name() +
                                                  "' (start one: taskring sidecar --segment " + seg_.name() + " --log-dir DIR)"
                                            : "the sidecar (pid " + std::to_string(reader) + ") is behind"));
    }
    if (backoff.pause()) continue;
    journal_.wait_durable(pos, std::min<std::int64_t>(deadline - now, 100'000'000));
    if (o.interrupted != nullptr && o.interrupted(o.interrupt_arg)) {
      return Status(StatusCode::kCancelled,
                    "task " + to_string(id) + " was submitted; the wait for it to reach the disk was interrupted");
    }
  }
}

bool Engine::drop_queued(std::uint32_t ref) noexcept {
  const std::uint32_t index = sw::ref_slot(ref);
  if (index >= slot_count_) return false;
  TaskSlot& s = slots_[index];
  std::uint64_t w = s.state.load(std::memory_order_acquire);  // as [A3]
  for (;;) {
    if ((w & sw::kQueued) == 0 || sw::state(w) == TaskState::kPending || sw::reserved(w)) return false;
    if (sw::tag(w) != sw::ref_tag(ref)) return false;  // a stale name: the queued bit is not ours
    if ((w & sw::kReleased) != 0 && is_terminal(sw::state(w))) {
      if (free_slot(index, w, log::FreeReason::kReleased)) return true;
    } else if (s.state.compare_exchange_weak(w, w & ~sw::kQueued, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
      // acq_rel: as [R5]; the reader that frees the slot later sees our view.
      return true;
    }
  }
}

ipc::Ring Engine::timers() const noexcept {
  return ipc::Ring(reinterpret_cast<ipc::RingControl*>(timers_), timer_capacity(slot_count_));
}

void Engine::lower_next_due(std::int64_t due) noexcept {
  // Relaxed CAS-min: a schedule hint; the timer ring's push ([R1]) publishes
  // the task, and a scan that misses a lowered value runs at the next one.
  std::int64_t cur = control_->next_due_ns.load(std::memory_order_relaxed);
  while (due < cur && !control_->next_due_ns.compare_exchange_weak(cur, due, std::memory_order_relaxed)) {
  }
}

bool Engine::push_ref(std::uint32_t index, std::uint64_t w, ipc::Ring* fallback, std::int64_t now) noexcept {
  const TaskSlot& s = slots_[index];
  // Relaxed: the caller holds the task (its queued tag is not yet pushed).
  const std::uint32_t q0 = s.queue.load(std::memory_order_relaxed);
  const std::uint32_t q = q0 < queue_count_ ? q0 : 0;
  const std::uint32_t value = sw::ref(index, w);
  const std::int64_t run_at = s.run_at_ns.load(std::memory_order_relaxed);
  if (run_at != 0 && run_at > (now != 0 ? now : ipc::monotonic_ns())) {
    // Not due: into the timer ring, which has room for every slot.
    if (!timers().try_push(value)) return false;
    const std::int64_t before = control_->next_due_ns.load(std::memory_order_relaxed);  // relaxed: as lower_next_due
    lower_next_due(run_at);
    // A parked worker sleeps until its timeout or the old due time: wake
    // one to plan around the earlier one.
    if (run_at < before) notify_work(q, 1);
    return true;
  }
  if (!ring(q, static_cast<Priority>(s.priority & 3)).try_push(value) &&
      (fallback == nullptr || !fallback->try_push(value))) {
    return false;
  }
  notify_work(q, 1);
  return true;
}

std::size_t Engine::release_due_timers(std::int64_t now) noexcept {
  ConfigBlock& c = *control_;
  // Relaxed: a schedule (see lower_next_due); the swap to INT64_MAX elects
  // one scanner, and adders racing it lower the value again.
  std::int64_t due = c.next_due_ns.load(std::memory_order_relaxed);
  if (now < due || !c.next_due_ns.compare_exchange_strong(due, INT64_MAX, std::memory_order_relaxed)) return 0;
  ipc::Ring t = timers();
  std::int64_t next = INT64_MAX;
  std::size_t released = 0;
  std::uint32_t value = 0;
  // Each name is looked at once: names put back go behind the budget. A
  // scanner that dies holding names leaves them to the audit, and the
  // schedule at INT64_MAX until the next audit resets it.
  for (std::uint64_t budget = t.size_approx(); budget > 0 && t.try_pop(value); --budget) {
    const std::uint32_t index = sw::ref_slot(value);
    if (index >= slot_count_) continue;  // corrupt: dropped, never dereferenced
    TaskSlot& s = slots_[index];
    const std::uint64_t w = s.state.load(std::memory_order_acquire);  // as [A3]
    if (sw::tag(w) != sw::ref_tag(value) || (w & sw::kQueued) == 0 || !sw::live(w)) continue;  // stale
    if (sw::state(w) != TaskState::kPending) {
      drop_queued(value);  // cancelled while it waited
      continue;
    }
    const std::int64_t run_at = s.run_at_ns.load(std::memory_order_relaxed);  // ordered by the acquire above
    if (run_at <= now && push_ref(index, w, nullptr, now)) {
      ++released;
      continue;
    }
    // Not due, or its queue ring is full (then retry at once). The ring
    // holds every slot's name once, so the name fits back.
    const bool back = t.try_push(value);
    TASKRING_ASSERT(back);
    next = std::min(next, run_at <= now ? now : run_at);
  }
  lower_next_due(next);
  return released;
}

namespace {
// Ends the park of worker `e` if it is parked: CAS parked 1 -> 0, so that
// each park is ended by one waker, then bump and wake its futex word.
// Returns true if a live worker was woken. A worker killed while parked
// leaves its flag raised: the waker that takes the flag then accounts for
// the dead worker's park (the count it will never lower) and reports false,
// so the wake goes to a live worker instead. The liveness check is a system
// call, but this path is taken only when a worker is parked, and a futex
// wake follows it anyway.
bool wake_worker(WorkerEntry& e, ConfigBlock& c) noexcept {
  // [S1b] seq_cst: see [S1]; the flag was raised before the count was
  // incremented, so a waker that saw the count sees the flag.
  if (e.parked.load(std::memory_order_seq_cst) != 1) return false;
  const bool alive = ipc::process_alive(claim_pid(e.claim.load(std::memory_order_relaxed)));  // relaxed: a hint
  std::uint32_t parked = 1;
  if (!e.parked.compare_exchange_strong(parked, 0, std::memory_order_seq_cst, std::memory_order_relaxed)) {
    return false;
  }
  if (!alive) {
    c.parked_workers.fetch_sub(1, std::memory_order_seq_cst);  // as [S2]'s decrement, on the dead worker's behalf
    return false;
  }
  // Release: orders the bump after the push for the parked worker's re-read.
  e.wake_seq.fetch_add(1, std::memory_order_release);
  ipc::futex_wake(e.wake_seq, 1);
  return true;
}
}  // namespace

void Engine::notify_work(std::uint32_t queue, std::uint32_t n) noexcept {
  // [S1] seq_cst: the load must not be ordered before the push that made the
  // work visible ([R1] in ring.cc); pairs with the worker's seq_cst flag
  // store and count increment and its re-check ([S2] in worker.cc).
  // Dekker-style: one of the two sides sees the other.
  if (control_->parked_workers.load(std::memory_order_seq_cst) == 0) return;
  const std::uint32_t hwm = worker_hwm();
  std::uint32_t woken = 0;
  for (std::uint32_t v = 0; v < hwm && woken < n; ++v) {
    WorkerEntry& e = workers_[v];
    // Relaxed: the mask is informative; a worker whose mask we read stale
    // has only just registered and re-checks the rings before parking.
    if (((e.queue_mask.load(std::memory_order_relaxed) >> queue) & 1) == 0) continue;
    if (wake_worker(e, *control_)) ++woken;
  }
}

void Engine::notify_thief(std::uint64_t mask) noexcept {
  if (control_->parked_workers.load(std::memory_order_seq_cst) == 0) return;  // [S1]
  const std::uint32_t hwm = worker_hwm();
  for (std::uint32_t v = 0; v < hwm; ++v) {
    WorkerEntry& e = workers_[v];
    // A thief must serve every queue the victim serves (WorkerImpl::steal).
    if ((mask & ~e.queue_mask.load(std::memory_order_relaxed)) != 0) continue;  // relaxed, as above
    if (wake_worker(e, *control_)) return;
  }
}

void Engine::wake_all_workers() noexcept {
  for (std::uint32_t v = 0; v < max_workers_; ++v) {
    WorkerEntry& e = workers_[v];
    e.wake_seq.fetch_add(1, std::memory_order_release);  // release: after the cause (stop, closing)
    ipc::futex_wake(e.wake_seq, INT_MAX);
  }
}

void Engine::notify_space() noexcept {
  // [S3] seq_cst: pairs with the producer's seq_cst increment of
  // space_waiters and its retry ([S4] in client.cc), as [S1].
  if (control_->space_waiters.load(std::memory_order_seq_cst) == 0) return;
  control_->space_seq.fetch_add(1, std::memory_order_release);
  ipc::futex_wake(control_->space_seq, INT_MAX);
}

void Engine::notify_done(TaskSlot& s) noexcept {
  // [S5] seq_cst: pairs with [S6] in client.cc (waiters increment, then the
  // state re-check), as [S1]; the terminal CAS before it is seq_cst too.
  if (s.waiters.load(std::memory_order_seq_cst) != 0) {
    s.done_seq.fetch_add(1, std::memory_order_release);
    ipc::futex_wake(s.done_seq, INT_MAX);
  }
  // [S7] seq_cst: pairs with [S8] in client.cc (a listener's increment,
  // then its check of the tasks it waits for), as [S5].
  if (control_->done_listeners.load(std::memory_order_seq_cst) != 0) {
    control_->done_any_seq.fetch_add(1, std::memory_order_release);  // release: after the terminal CAS
    ipc::futex_wake(control_->done_any_seq, INT_MAX);
  }
}

}  // namespace taskring::detail
