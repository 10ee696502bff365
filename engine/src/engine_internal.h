// detail::Engine: one process's typed view of an attached segment, shared by
// Client, Worker and the snapshot reader. It owns the mapping and offers the
// operations on slots that both sides need: allocation, freeing, storing and
// reading payload or result bytes, and the wake protocols.
//
// Thread safety: after attach, every method is safe from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "layout_internal.h"
#include "taskring/base/status.h"
#include "taskring/ipc/arena.h"
#include "taskring/ipc/free_stack.h"
#include "taskring/ipc/journal.h"
#include "taskring/ipc/ring.h"
#include "taskring/ipc/segment.h"
#include "taskring/log.h"
#include "taskring/options.h"
#include "taskring/task.h"

namespace taskring::detail {

// Builds the section list for `config` (already validated).
ipc::CreateOptions layout_for(const EngineConfig& config, bool replace);

class Engine {
 public:
  // Attaches and validates the engine sections against the config block.
  // One process maps a segment once per access mode: attaching a name that
  // this process already maps (the same file, not a re-created one) returns
  // the existing Engine. So a Client and a Worker in one process share
  // addresses, which is what lets ThreadSanitizer relate their accesses.
  static Result<std::shared_ptr<Engine>> attach(std::string_view name, ipc::Access access);
  // Formats a freshly created segment (called by create_segment).
  static Status format(ipc::Segment& seg, const EngineConfig& config);

  const EngineConfig& config() const noexcept { return config_; }
  const ipc::Segment& segment() const noexcept { return seg_; }
  ConfigBlock& control() const noexcept { return *control_; }

  std::uint32_t slot_count() const noexcept { return slot_count_; }
  TaskSlot& slot(std::uint32_t index) const noexcept { return slots_[index]; }
  std::uint32_t queue_count() const noexcept { return queue_count_; }
  QueueEntry& queue(std::uint32_t q) const noexcept { return queues_[q]; }
  // Index of queue `name` (empty: 0), or -1.
  int find_queue(std::string_view name) const noexcept;
  std::string_view queue_name(std::uint32_t q) const noexcept;
  // The error for a queue name that find_queue did not find: it names the
  // value and lists the segment's queues.
  Status unknown_queue(std::string_view name) const;
  ipc::Ring ring(std::uint32_t q, Priority p) const noexcept;
  std::uint32_t max_workers() const noexcept { return max_workers_; }
  WorkerEntry& worker(std::uint32_t w) const noexcept { return workers_[w]; }
  // One past the highest registry index ever used, bounded by max_workers.
  std::uint32_t worker_hwm() const noexcept;
  ipc::Ring deque(std::uint32_t w) const noexcept;
  ipc::Arena& arena() noexcept { return arena_; }
  const ipc::Arena& arena() const noexcept { return arena_; }
  ipc::FreeStack& free_slots() noexcept { return free_slots_; }

  bool closing() const noexcept;

  // The slot for task `id` and its current state word, if the id's slot is in
  // range and its generation matches a live (non-free) task.
  TaskSlot* lookup(TaskId id, std::uint64_t& word) const noexcept;

  // Stores `bytes` as the slot's payload or result: inline if it fits, else
  // in an arena block. Returns kOk, or the arena's failure.
  ipc::Arena::AllocResult store_bytes(TaskSlot& s, bool result, std::string_view bytes) noexcept;
  // The slot's payload or result, bounds-checked; false if the recorded
  // length or block is invalid (corruption).
  bool read_bytes(const TaskSlot& s, bool result, std::string_view& out) const noexcept;
  // Releases the slot's arena blocks (payload and result).
  void release_blocks(TaskSlot& s) noexcept;
  // Releases the slot's result (block and length) only: before a retry
  // stores a new one, or when recovery discards a dead worker's.
  void release_result(TaskSlot& s) noexcept;
  // Frees slot `index` whose state word is `word` (terminal or pending-never-
  // published): CAS to free with the next generation, release its blocks,
  // push it on the free stack, and journal kFreed with `why` (not for a
  // reservation, which was never a task). Returns false if the CAS lost
  // (someone else changed the word); `word` then holds the current value.
  bool free_slot(std::uint32_t index, std::uint64_t& word, log::FreeReason why) noexcept;

  // ---- The journal (docs/durability.md). Every task state change that the
  // log records is journalled by the process that made it, right after its
  // CAS. All are no-ops, returning kNoJournalPos, when the journal is off.
  bool journaling() const noexcept { return journal_mode_ != JournalMode::kOff; }
  ipc::Journal& journal() noexcept { return journal_; }
  const ipc::Journal& journal() const noexcept { return journal_; }
  // Journals one event: `type` (log::RecordType kSubmitted..kFreed) for slot
  // `index`, whose word is now `word`. A full journal drops the event and
  // counts it (best-effort) or waits for room (durable mode, or `keep`):
  // without limit in durable mode, until `deadline` (CLOCK_MONOTONIC) for a
  // `keep` event in best-effort mode or any event with a deadline; an event
  // not written by then, or when the segment closes, is dropped and counted
  // (the sidecar resyncs). Returns its position, or kNoJournalPos if it was
  // dropped or the journal is off. May block (waiting for room).
  std::uint64_t journal_event(log::RecordType type, std::uint32_t index, std::uint64_t word, std::uint32_t aux = 0,
                              bool keep = false, std::int64_t deadline = INT64_MAX) noexcept {
    if (journal_mode_ == JournalMode::kOff) return kNoJournalPos;
    return journal_events(type, &index, &word, 1, aux, keep, deadline);
  }
  // Journals `n` events of one type in one reservation; returns the
  // position of the last (or kNoJournalPos if any was dropped).
  std::uint64_t journal_events(log::RecordType type, const std::uint32_t* index, const std::uint64_t* word,
                               std::size_t n, std::uint32_t aux, bool keep,
                               std::int64_t deadline = INT64_MAX) noexcept;
  // The journal reader of this process (JournalReader): one at a time per
  // mapping. Returns false if one is attached already. The flag holds the
  // pid that took it, so a child forked meanwhile is not refused for its
  // parent's reader.
  bool take_journal_reader() noexcept;
  void give_journal_reader() noexcept;
  // Waits until journal position `pos` is durable (the sidecar published
  // it), up to `deadline` (CLOCK_MONOTONIC; INT64_MAX: no limit). `pos`
  // kNoJournalPos (the event was dropped) is never durable. Errors:
  // deadline exceeded (naming the sidecar's state), failed precondition
  // when the segment closes. May block.
  Status wait_durable(std::uint64_t pos, std::int64_t deadline, TaskId id, const SubmitOptions& o) noexcept;

  // For a popped ring value (sw::ref) whose task is no longer pending
  // (cancelled while queued): clears the queued bit, and frees the slot if
  // its producer has released it. Returns false if the value is stale (its
  // tag is not the slot's) or the word is not queued, true otherwise.
  bool drop_queued(std::uint32_t ref) noexcept;

  // Puts task `index` (state word `w`, which the caller holds: pending and
  // queued with a tag nobody has pushed yet) in its queue ring, or if that
  // is full in `fallback` (a deque; may be null). Returns false if neither
  // had room: the task is then named by nothing, and the lost-reference
  // audit requeues it.
  // A task whose run_at_ns is later than `now` (0: read the clock) goes to
  // the timer ring instead.
  bool push_ref(std::uint32_t index, std::uint64_t w, ipc::Ring* fallback, std::int64_t now = 0) noexcept;
  // The ring of delayed tasks' names (section kSecTimers).
  ipc::Ring timers() const noexcept;
  // If the earliest delayed task is due at `now`, moves every due task from
  // the timer ring to its queue ring; one caller at a time does the scan.
  // Returns how many were released.
  std::size_t release_due_timers(std::int64_t now) noexcept;
  // Lowers ConfigBlock::next_due_ns to `due` if it is later.
  void lower_next_due(std::int64_t due) noexcept;

  // Wake protocols (docs/architecture.md "Waking").
  // After making work available in queue `queue`: wakes up to `n` parked
  // workers that serve it, if any worker is parked.
  void notify_work(std::uint32_t queue, std::uint32_t n) noexcept;
  // After a worker with queue set `mask` put tasks in its deque: wakes one
  // parked worker that may steal them (whose queue set includes `mask`).
  void notify_thief(std::uint64_t mask) noexcept;
  // Wakes every worker's futex word (destroy_segment).
  void wake_all_workers() noexcept;
  // After making room (ring pop, slot or block freed): wakes producers
  // waiting for room, if any.
  void notify_space() noexcept;
  // After a terminal transition of `s`: wakes its waiters, if any.
  void notify_done(TaskSlot& s) noexcept;

 private:
  Engine(ipc::Segment seg) noexcept;
  Status bind(ipc::Access access);

  ipc::Segment seg_;
  EngineConfig config_;
  ConfigBlock* control_ = nullptr;
  QueueEntry* queues_ = nullptr;
  std::byte* rings_ = nullptr;
  TaskSlot* slots_ = nullptr;
  WorkerEntry* workers_ = nullptr;
  std::byte* deques_ = nullptr;
  std::byte* timers_ = nullptr;
  ipc::FreeStack free_slots_;
  ipc::Arena arena_;
  ipc::Journal journal_;
  JournalMode journal_mode_ = JournalMode::kOff;
  // Process-local: the pid whose JournalReader holds the reader role (0:
  // none). acq_rel/release: orders one reader's use of the journal before
  // the next's.
  std::atomic<std::uint32_t> journal_reader_pid_{0};
  std::uint32_t slot_count_ = 0;
  std::uint32_t queue_count_ = 0;
  std::uint32_t max_workers_ = 0;
  std::uint64_t ring_stride_ = 0;
  std::uint64_t deque_stride_ = 0;
};

// The options a task from the durable log is submitted again with: its
// queue, priority and limits, failing at once when the segment is full.
// `spec` must outlive the result (the queue name is a view of it).
inline SubmitOptions submit_options_for(const log::TaskSpec& spec) {
  SubmitOptions o;
  o.queue = spec.queue;
  o.priority = static_cast<Priority>(spec.priority & 3);
  o.on_full = FullPolicy::kFail;
  o.detached = spec.detached;
  o.max_attempts = spec.max_attempts;
  o.max_crashes = spec.max_crashes;
  o.time_limit_ns = std::int64_t{spec.time_limit_ms} * 1'000'000;
  return o;
}

// Stores a finished task (from the durable log, during recovery) in a new
// slot of `e`, readable and expiring like any finished task. The task's
// kSubmitted event carries its terminal word. Errors: the submit checks'
// (name, payload, queue); kResourceExhausted when full. Defined in client.cc.
Result<TaskId> restore_finished(Engine& e, const log::TaskSpec& spec, TaskState state, std::uint32_t attempts,
                                std::string_view result, std::int64_t finish_ns);

}  // namespace taskring::detail
