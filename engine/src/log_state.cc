// LogState: the fold of durable-log records into task states. The rules are
// in log_state.h; this file keeps one Entry per (epoch, slot), holding the
// newest generation seen there, found through a vector indexed by slot (a
// hash map for epochs without a slot count, or slots beyond it).

#include "taskring/log_state.h"

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <utility>

#include "layout_internal.h"

namespace taskring::log {
namespace {

namespace sw = ::taskring::detail::sw;

// RFC 1982 serial comparison: a is newer than b.
constexpr bool tag_newer(std::uint32_t a, std::uint32_t b) noexcept {
  const std::uint32_t d = (a - b) & 0xFFu;
  return d >= 1 && d <= 127;
}
constexpr bool generation_newer(std::uint32_t a, std::uint32_t b) noexcept {
  const std::uint32_t d = a - b;
  return d >= 1 && d <= 0x7FFFFFFFu;
}
static_assert(tag_newer(0, 255) && !tag_newer(255, 0) && !tag_newer(128, 0) && tag_newer(127, 0));
static_assert(generation_newer(1, 0xFFFFFFFFu) && !generation_newer(0x80000000u, 0));

// The rank the state bits of `w` give a record of type `t`, or -1 if they
// are not a state that type can carry (rule 9).
int state_rank(RecordType t, std::uint64_t w) noexcept {
  const auto st = static_cast<TaskState>(w & sw::kStateMask);
  switch (t) {
    case RecordType::kSubmitted:
    case RecordType::kRequeued:
      return st == TaskState::kPending ? 0 : -1;
    case RecordType::kStarted:
      return st == TaskState::kRunning ? 1 : -1;
    case RecordType::kSucceeded:
      return st == TaskState::kSucceeded ? 2 : -1;
    case RecordType::kFailed:
      return st == TaskState::kFailed ? 2 : -1;
    case RecordType::kCancelled:
      return st == TaskState::kCancelled ? 2 : -1;
    case RecordType::kTaskSnapshot:
      if (st == TaskState::kPending) return 0;
      if (st == TaskState::kRunning) return 1;
      return is_terminal(st) ? 2 : -1;
    default:
      return -1;
  }
}

constexpr bool is_terminal_record(RecordType t) noexcept {
  return t == RecordType::kSucceeded || t == RecordType::kFailed || t == RecordType::kCancelled;
}

// -1: the record's key is below the entry's; 0 equal; 1 above.
int compare_key(std::uint32_t record_tag, int record_rank, std::uint32_t entry_tag, int entry_rank) noexcept {
  if (record_tag == entry_tag) return record_rank < entry_rank ? -1 : (record_rank > entry_rank ? 1 : 0);
  return tag_newer(record_tag, entry_tag) ? 1 : -1;
}

constexpr std::uint32_t slot_of(std::uint64_t id) noexcept { return static_cast<std::uint32_t>(id); }
constexpr std::uint32_t generation_of(std::uint64_t id) noexcept { return static_cast<std::uint32_t>(id >> 32); }
constexpr bool valid_task_id(std::uint64_t id) noexcept {
  return generation_of(id) != 0 && slot_of(id) < kMaxLogSlots;
}

}  // namespace

void LogState::apply(const Record& r) { apply_impl(r); }
void LogState::apply(Record&& r) { apply_impl(std::move(r)); }

template <class R>
void LogState::apply_impl(R&& r) {
  ++counts_.records;
  const auto type_value = static_cast<unsigned>(r.type);
  if (type_value >= 1 && type_value < static_cast<unsigned>(kRecordTypeCount)) ++counts_.by_type[type_value];
  bool valid = true;
  bool changed = false;
  switch (r.type) {
    case RecordType::kSegmentAttached:
      valid = r.epoch != 0 && r.aux >= 1 && r.aux <= kMaxLogSlots;
      if (valid) {
        apply_attached(r);
        changed = true;
      }
      break;
    case RecordType::kResyncBegin:
      valid = r.epoch != 0;
      if (valid) {
        EpochState& es = epoch_state(r.epoch);
        es.resync_open = true;
        es.resync_begin_seq = r.seq;
        if (++es.resync_serial == 0) es.resync_serial = 1;  // 0 means "never mentioned"
        changed = true;
      }
      break;
    case RecordType::kResyncEnd:
      valid = r.epoch != 0;
      if (valid) changed = apply_resync_end(r);
      break;
    case RecordType::kRecovered:
      valid = r.other_epoch != 0 && valid_task_id(r.other_id);
      if (valid) changed = apply_recovered(r);
      break;
    case RecordType::kSubmitted:
    case RecordType::kStarted:
    case RecordType::kRequeued:
    case RecordType::kSucceeded:
    case RecordType::kFailed:
    case RecordType::kCancelled:
    case RecordType::kTaskSnapshot:
    case RecordType::kFreed: {
      int rank = kFreedRank;
      if (r.type == RecordType::kFreed) {
        if (r.aux == static_cast<std::uint32_t>(FreeReason::kSlotFree)) rank = kFreeRank;
      } else {
        rank = state_rank(r.type, r.state_word);
        valid = rank >= 0;
      }
      valid = valid && r.epoch != 0 && valid_task_id(r.task_id);
      if (valid) changed = apply_task(epoch_state(r.epoch), std::forward<R>(r), rank);
      break;
    }
    default:
      valid = false;
      break;
  }
  if (!valid) {
    ++counts_.invalid;
  } else if (!changed) {
    ++counts_.stale_ignored;
  }
}

void LogState::apply_attached(const Record& r) {
  EpochState& es = epoch_state(r.epoch);
  if (!es.attached) {
    // A repeated kSegmentAttached (a sidecar restart) keeps the first slot count.
    es.attached = true;
    es.slot_count = r.aux;
    // Slots that arrived before the slot count was known move to the vector.
    for (auto it = es.sparse.begin(); it != es.sparse.end();) {
      if (it->first < es.slot_count) {
        *slot_cell(es, it->first) = it->second;
        it = es.sparse.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (last_epoch_ == 0 || r.seq >= last_epoch_seq_) {
    last_epoch_ = r.epoch;
    last_epoch_seq_ = r.seq;
    last_segment_ = r.text;
  }
}

LogState::EpochState& LogState::epoch_state(std::uint64_t epoch) {
  if (cached_epoch_ < epochs_.size() && epochs_[cached_epoch_].epoch == epoch) [[likely]] {
    return epochs_[cached_epoch_];
  }
  const auto [it, inserted] = epoch_index_.try_emplace(epoch, static_cast<std::uint32_t>(epochs_.size()));
  if (inserted) {
    epochs_.emplace_back();
    epochs_.back().epoch = epoch;
  }
  cached_epoch_ = it->second;
  return epochs_[it->second];
}

std::uint32_t* LogState::slot_cell(EpochState& es, std::uint32_t slot) {
  if (slot < es.slot_count) {
    if (slot >= es.dense.size()) {
      // Grow geometrically, never past the slot count: a log naming only
      // low slots of a large segment keeps a small index.
      const std::size_t doubled = std::max<std::size_t>(1024, es.dense.size() * 2);
      es.dense.resize(std::max<std::size_t>(std::size_t{slot} + 1, std::min<std::size_t>(es.slot_count, doubled)), 0);
    }
    return &es.dense[slot];
  }
  return &es.sparse[slot];
}

void LogState::reset(Entry& e, std::uint32_t slot, std::uint32_t generation) noexcept {
  e.slot = slot;
  e.generation = generation;
  e.state_word = 0;
  e.first_seq = UINT64_MAX;
  e.last_seq = 0;
  e.finish_wall_ns = 0;
  e.mentioned = 0;
  e.rank = kNoKey;
  e.carried = false;
  e.finish_exact = false;
  e.spec.reset();
  e.result.reset();
}

template <class R>
bool LogState::apply_task(EpochState& es, R&& r, int rank) {
  const std::uint32_t slot = slot_of(r.task_id);
  const std::uint32_t generation = generation_of(r.task_id);
  const bool slot_free = rank == kFreeRank;
  const std::uint32_t tag = sw::tag(r.state_word);

  std::uint32_t& cell = *slot_cell(es, slot);
  if (cell == 0) {
    es.entries.emplace_back();
    cell = static_cast<std::uint32_t>(es.entries.size());
    reset(es.entries.back(), slot, generation);
  }
  Entry& e = es.entries[cell - 1];
  if (e.generation != generation) {
    if (!generation_newer(generation, e.generation)) return false;  // rule 1: stale
    reset(e, slot, generation);
  }
  if ((r.type == RecordType::kTaskSnapshot || slot_free) && es.resync_open && r.seq > es.resync_begin_seq) {
    e.mentioned = es.resync_serial;  // rule 7
  }
  e.first_seq = std::min(e.first_seq, r.seq);
  if (e.rank == kFreedRank) return false;  // a tombstone: nothing brings the task back

  const bool brings_spec = r.spec.has_value() && !r.payload_missing;
  const int cmp = e.rank == kNoKey ? 1 : compare_key(tag, rank, sw::tag(e.state_word), e.rank);
  if (cmp < 0) {
    // Rule 4: a lower key fills in the spec only.
    if (brings_spec && !e.spec.has_value()) {
      e.spec = std::forward<R>(r).spec;
      return true;
    }
    return false;
  }

  e.state_word = r.state_word;
  e.last_seq = std::max(e.last_seq, r.seq);
  e.rank = static_cast<std::int8_t>(rank);
  if (rank == kFreedRank) {
    // The tombstone keeps only its key: free the strings.
    e.spec.reset();
    e.result.reset();
    e.finish_wall_ns = 0;
    e.finish_exact = false;
    return true;
  }
  if (brings_spec) e.spec = std::forward<R>(r).spec;
  if (rank == kFreeRank) {
    e.result.reset();
    e.finish_wall_ns = 0;
    e.finish_exact = false;
    return true;
  }
  if (rank != 2) {
    e.result.reset();
    e.finish_wall_ns = 0;
    e.finish_exact = false;
    return true;
  }
  // Terminal (rules 2 and 3).
  const bool brings_result = r.result.has_value() && !r.result_missing;
  const bool exact = is_terminal_record(r.type);
  if (cmp > 0) {
    if (brings_result) {
      e.result = std::forward<R>(r).result;
    } else {
      e.result.reset();
    }
    e.finish_wall_ns = r.wall_ns;
    e.finish_exact = exact;
  } else {
    if (brings_result) e.result = std::forward<R>(r).result;
    if (exact && !e.finish_exact) {
      e.finish_wall_ns = r.wall_ns;
      e.finish_exact = true;
    } else if (exact == e.finish_exact && (e.finish_wall_ns == 0 || r.wall_ns < e.finish_wall_ns)) {
      // Duplicates of the same kind: the earliest, whatever the order.
      e.finish_wall_ns = r.wall_ns;
    }
  }
  return true;
}

bool LogState::apply_recovered(const Record& r) {
  const std::uint32_t slot = slot_of(r.other_id);
  const std::uint32_t generation = generation_of(r.other_id);
  EpochState& es = epoch_state(r.other_epoch);
  std::uint32_t& cell = *slot_cell(es, slot);
  if (cell == 0) {
    es.entries.emplace_back();
    cell = static_cast<std::uint32_t>(es.entries.size());
  } else {
    Entry& known = es.entries[cell - 1];
    if (known.generation == generation) {
      if (known.carried) return false;
      known.carried = true;
      return true;
    }
    if (!generation_newer(generation, known.generation)) return false;  // the slot moved on: nothing to mark
  }
  // Rule 6: a mark of a task not seen yet (or newer than what was seen).
  Entry& e = es.entries[cell - 1];
  reset(e, slot, generation);
  e.carried = true;
  return true;
}

bool LogState::apply_resync_end(const Record& r) {
  EpochState& es = epoch_state(r.epoch);
  if (!es.resync_open || r.seq <= es.resync_begin_seq) return false;
  es.resync_open = false;
  for (Entry& e : es.entries) {
    if (!live(e) || e.mentioned == es.resync_serial || e.last_seq >= es.resync_begin_seq) continue;
    e.rank = kFreedRank;
    e.spec.reset();
    e.result.reset();
    e.finish_wall_ns = 0;
    e.finish_exact = false;
    ++counts_.resync_freed;
  }
  return true;
}

namespace {
// live_tasks order: (epoch, first seq, slot), over (key, where) pairs so
// that only the tasks returned are copied.
struct Order {
  std::uint64_t epoch;
  std::uint64_t first_seq;
  std::uint32_t slot;
  std::uint32_t epoch_index;
  std::uint32_t entry_index;
  friend bool operator<(const Order& a, const Order& b) noexcept {
    return std::tie(a.epoch, a.first_seq, a.slot) < std::tie(b.epoch, b.first_seq, b.slot);
  }
};
}  // namespace

std::vector<LiveTask> LogState::gather(const std::uint64_t* only_epoch) const {
  std::vector<Order> order;
  for (std::size_t ei = 0; ei < epochs_.size(); ++ei) {
    const EpochState& es = epochs_[ei];
    if (only_epoch != nullptr && es.epoch != *only_epoch) continue;
    for (std::size_t i = 0; i < es.entries.size(); ++i) {
      const Entry& e = es.entries[i];
      if (live(e)) {
        order.push_back(
            Order{es.epoch, e.first_seq, e.slot, static_cast<std::uint32_t>(ei), static_cast<std::uint32_t>(i)});
      }
    }
  }
  std::sort(order.begin(), order.end());
  std::vector<LiveTask> out;
  out.reserve(order.size());
  for (const Order& o : order) {
    const Entry& e = epochs_[o.epoch_index].entries[o.entry_index];
    LiveTask& t = out.emplace_back();
    t.epoch = o.epoch;
    t.task_id = (std::uint64_t{e.generation} << 32) | e.slot;
    t.state = sw::state(e.state_word);
    t.attempts = sw::attempts(e.state_word);
    t.state_word = e.state_word;
    t.spec = e.spec;
    t.result = e.result;
    t.finish_wall_ns = e.finish_wall_ns;
    t.last_seq = e.last_seq;
  }
  return out;
}

std::vector<LiveTask> LogState::live_tasks() const { return gather(nullptr); }
std::vector<LiveTask> LogState::live_tasks(std::uint64_t epoch) const { return gather(&epoch); }

StateCounts LogState::counts() const {
  StateCounts c = counts_;
  for (const EpochState& es : epochs_) {
    if (es.attached) {
      ++c.epochs;
    } else {
      ++c.epochs_unattached;
    }
    for (const Entry& e : es.entries) {
      if (!live(e)) continue;
      switch (sw::state(e.state_word)) {
        case TaskState::kPending: ++c.live_pending; break;
        case TaskState::kRunning: ++c.live_running; break;
        case TaskState::kSucceeded: ++c.live_succeeded; break;
        case TaskState::kFailed: ++c.live_failed; break;
        case TaskState::kCancelled: ++c.live_cancelled; break;
        default: break;
      }
    }
  }
  return c;
}

}  // namespace taskring::log
