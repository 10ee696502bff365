// LogState: the tasks a log describes, folded from its records. Recovery
// uses it to find what to resubmit and which results to restore; the
// `taskring log stats` tool uses it to count live tasks.
//
// Records may arrive out of transition order: each process appends its
// journal event after its own state-word CAS, so a worker's "started" can
// follow the client's "freed" of the same task. The fold therefore orders
// the records of one task by what the state word says, not by sequence:
//   - a task is (epoch, slot, generation); a record of an older generation
//     than the one known for its (epoch, slot) is stale and ignored, a newer
//     one replaces the entry (the slot was freed and reused meanwhile);
//   - within one generation a record's key is (tag, rank): the tag is the
//     state word's bits 24..31, compared as 8-bit serial numbers (RFC 1982),
//     and rank is 0 pending, 1 running, 2 terminal, 3 freed; a record whose
//     key is below the entry's changes nothing but may fill in fields the
//     entry lacks (a late kSubmitted still brings the spec and payload);
//   - a freed entry stays as a tombstone (one per slot at most), so a late
//     record cannot bring the task back.
// Resynchronisation: at kResyncEnd, every live entry of that epoch that the
// snapshot between kResyncBegin and kResyncEnd did not mention, and whose
// last applied record came before the kResyncBegin, is marked freed (the
// snapshot proves it is gone). kRecovered marks (other_epoch, other_id) as
// carried over: it counts as finished in its old epoch.
//
// The rules in detail (what a sidecar writing records can rely on):
//  1. Which task. The generation always comes from task_id (bits 32..63),
//     never from the state word: a kFreed carries the word after freeing,
//     whose generation is already the next one. The slot is task_id's low
//     32 bits and must be below 2^22. Generations compare as 32-bit serial
//     numbers: g is newer than h iff (g - h) mod 2^32 is in 1..2^31-1. (The
//     engine skips generation 0 when it wraps, so across the wrap the
//     distance is one more than the number of frees; that changes no
//     comparison.) Two generations 2^31 apart are not comparable; such a
//     record is treated as stale.
//  2. The key. The tag is the state word's bits 24..31; a is newer than b
//     iff (a - b) mod 256 is in 1..127 (128 apart: not newer, so stale). So
//     a record that arrives after 128 or more later publishes and requeues
//     of its own task (max_attempts above 128, or many audit requeues) is
//     misordered. The rank comes from the word's state bits (pending 0,
//     running 1, terminal 2) for kSubmitted, kStarted, kRequeued,
//     kSucceeded, kFailed, kCancelled and kTaskSnapshot, and is 3 for kFreed
//     whatever its state bits (kSlotFree: rule 5). A record whose key is
//     newer than the entry's, or equal to it, applies: the state word is
//     replaced and the record's fields merge in (a spec or result it brings
//     replaces the entry's). Taking a non-terminal state clears the result
//     and finish_wall_ns; taking a terminal state from a newer key sets the
//     result to the record's (empty if result_missing). A tombstone takes
//     nothing more of its generation, not even a record with a newer tag.
//     A kSubmitted with payload_missing brings no spec, even if it has one.
//  3. finish_wall_ns is the wall_ns of the kSucceeded, kFailed or kCancelled
//     record that applied. A terminal kTaskSnapshot gives it only until such
//     a record of the same key applies (a snapshot's wall_ns is when it was
//     logged: an upper bound of the finish). Among records of the same key
//     and kind the earliest wall_ns wins, so the order does not matter.
//  4. A record with a lower key fills in only the spec, when the entry has
//     none (the spec is fixed for a whole generation). Results never come
//     from a lower key: an earlier terminal state of the same generation
//     (a dead letter requeued by Client::requeue) had another outcome.
//  5. kFreed with aux == FreeReason::kSlotFree says the slot was free with
//     task_id's generation G as the next one, tag T (from the state word).
//     Its key is (T, below pending): it replaces entries of generations
//     older than G (so their late records are stale from then on) with an
//     entry that holds no task, and loses to any record of G itself (whose
//     publish advanced the tag past T). Its state bits are not checked: a
//     reserved slot may be logged this way, with its word's generation.
//  6. kRecovered marks the old task (other_epoch, other_id) carried over.
//     If the entry of that slot is of the same generation, it is marked; of
//     an older one or none, it is replaced by a mark of that generation, so
//     records of the old task that arrive later fill it in but never make it
//     live; of a newer one, the mark changes nothing.
//  7. Resync. kResyncBegin (epoch E) starts a snapshot of E; a later
//     kResyncBegin of E restarts it. Between it and kResyncEnd of E, a
//     kTaskSnapshot or kSlotFree record of E whose generation is not older
//     than the entry's "mentions" that entry (records of other types and
//     other epochs may be interleaved and mention nothing). At kResyncEnd,
//     each live entry of E not mentioned whose last_seq is below the
//     kResyncBegin's seq becomes a tombstone. A kResyncEnd without an open
//     kResyncBegin of its epoch, or with a smaller seq, changes nothing.
//     This rule compares seqs, so resyncs need records applied in seq order;
//     everything else gives the same states in any order.
//  8. Epochs are numbered from 1: 0 means "none" (see last_epoch()). An epoch
//     needs no kSegmentAttached: its slots are then kept in a hash map
//     instead of a vector indexed by slot, and it is counted in
//     StateCounts::epochs_unattached. A repeated kSegmentAttached of an
//     epoch (a sidecar restart) keeps the first slot count.
//  9. Invalid records change nothing and are counted in StateCounts::invalid:
//     an unknown type; epoch 0 (other_epoch 0 for kRecovered); a task record
//     whose generation is 0 or whose slot is 2^22 or above; a state record
//     whose state bits are not the state its type means (kSubmitted and
//     kRequeued pending, kStarted running, kSucceeded, kFailed, kCancelled
//     their own, kTaskSnapshot any of pending..cancelled); a
//     kSegmentAttached whose slot count (aux) is not in 1..2^22.
//
// Cost: apply() is O(1) (a hash lookup only for epochs without a
// kSegmentAttached or after switching epochs) and allocates only to keep the
// spec and result strings (apply(Record&&) moves them instead), to grow the
// slot index of an epoch, and for the first record of a slot. kResyncEnd is
// O(tasks of its epoch).
//
// Thread safety: a value; one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "taskring/log.h"
#include "taskring/task.h"

namespace taskring::log {

// Slots are at most 2^22 (EngineConfig); a record naming a higher one is invalid.
inline constexpr std::uint32_t kMaxLogSlots = 1u << 22;

struct LiveTask {
  std::uint64_t epoch = 0;
  std::uint64_t task_id = 0;
  TaskState state = TaskState::kPending;   // pending, running or terminal
  std::uint32_t attempts = 0;              // from the state word
  std::uint64_t state_word = 0;
  std::optional<TaskSpec> spec;            // empty if no record brought it (payload_missing)
  std::optional<std::string> result;       // terminal tasks, unless result_missing
  std::int64_t finish_wall_ns = 0;         // wall_ns of the terminal record; 0 otherwise
  std::uint64_t last_seq = 0;              // largest seq of the records whose key applied to it
};

struct StateCounts {
  std::uint64_t records = 0;                     // every record given to apply()
  std::uint64_t by_type[kRecordTypeCount] = {};  // index: RecordType value; invalid ones included
  std::uint64_t stale_ignored = 0;               // valid records that changed nothing
  std::uint64_t invalid = 0;                     // records rejected by rule 9 (not in stale_ignored)
  std::uint64_t epochs = 0;                      // distinct epochs with a valid kSegmentAttached
  std::uint64_t epochs_unattached = 0;           // distinct epochs with records but no kSegmentAttached
  std::uint64_t resync_freed = 0;                // entries made tombstones by a kResyncEnd
  std::uint64_t live_pending = 0, live_running = 0, live_succeeded = 0, live_failed = 0, live_cancelled = 0;
};

class LogState {
 public:
  // Folds one record in (any order of seq is tolerated as described above,
  // but seq must be the record's own: resync bookkeeping compares them).
  // Never fails: records that make no sense are counted (counts().invalid).
  void apply(const Record& r);
  // The same, moving the spec and result strings out of `r` instead of
  // copying them. `r` is left valid but unspecified.
  void apply(Record&& r);

  // Tasks that are neither freed nor carried over, ordered by (epoch, seq of
  // the first record of the task: the smallest seq among the records of its
  // generation applied so far), then slot.
  std::vector<LiveTask> live_tasks() const;
  // Live tasks of one epoch only.
  std::vector<LiveTask> live_tasks(std::uint64_t epoch) const;
  // The epoch of the kSegmentAttached with the highest seq applied (0: none)
  // and its segment name.
  std::uint64_t last_epoch() const noexcept { return last_epoch_; }
  const std::string& last_segment() const noexcept { return last_segment_; }
  // Counts over everything applied so far; live_* are computed on the call
  // (O(tasks)).
  StateCounts counts() const;

 private:
  static constexpr std::int8_t kNoKey = -2;     // a mark only: any record of the generation applies
  static constexpr std::int8_t kFreeRank = -1;  // a kSlotFree snapshot: below pending
  static constexpr std::int8_t kFreedRank = 3;
  // What is known about one slot of one epoch: its newest generation.
  struct Entry {
    std::uint32_t slot = 0;
    std::uint32_t generation = 0;
    std::uint64_t state_word = 0;
    std::uint64_t first_seq = 0;       // smallest seq of the records of this generation
    std::uint64_t last_seq = 0;        // largest seq of the records whose key applied
    std::int64_t finish_wall_ns = 0;
    std::uint32_t mentioned = 0;       // resync serial of the epoch's resync that mentioned it
    std::int8_t rank = kNoKey;         // kNoKey, kFreeRank, 0..3
    bool carried = false;              // kRecovered: carried over to a later epoch
    bool finish_exact = false;         // finish_wall_ns came from a terminal record, not a snapshot
    std::optional<TaskSpec> spec;
    std::optional<std::string> result;
  };

  struct EpochState {
    std::uint64_t epoch = 0;
    bool attached = false;
    std::uint32_t slot_count = 0;                         // from kSegmentAttached; 0 unknown
    std::vector<std::uint32_t> dense;                     // slot -> entry index + 1 (0: none); slots < slot_count
    std::unordered_map<std::uint32_t, std::uint32_t> sparse;  // the same for other slots
    std::vector<Entry> entries;
    bool resync_open = false;
    std::uint64_t resync_begin_seq = 0;
    std::uint32_t resync_serial = 0;
  };

  template <class R>
  void apply_impl(R&& r);
  // `rank`: 0..3 or kFreeRank, from the record's type and state bits.
  template <class R>
  bool apply_task(EpochState& es, R&& r, int rank);
  static void reset(Entry& e, std::uint32_t slot, std::uint32_t generation) noexcept;
  bool apply_recovered(const Record& r);
  bool apply_resync_end(const Record& r);
  void apply_attached(const Record& r);
  EpochState& epoch_state(std::uint64_t epoch);
  // The index cell of `slot` in `es`: entry index + 1, 0 if none yet
  // (created as 0 if need be). Valid until the next slot_cell call.
  std::uint32_t* slot_cell(EpochState& es, std::uint32_t slot);
  static bool live(const Entry& e) noexcept { return e.rank >= 0 && e.rank < kFreedRank && !e.carried; }
  std::vector<LiveTask> gather(const std::uint64_t* only_epoch) const;

  std::vector<EpochState> epochs_;
  std::unordered_map<std::uint64_t, std::uint32_t> epoch_index_;  // epoch -> index in epochs_
  std::uint32_t cached_epoch_ = UINT32_MAX;                        // index of the last epoch looked up
  std::uint64_t last_epoch_ = 0;
  std::uint64_t last_epoch_seq_ = 0;
  std::string last_segment_;
  StateCounts counts_;
};

}  // namespace taskring::log
