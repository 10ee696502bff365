// The engine's sections of a segment, byte for byte (docs/formats/segment.md).
// ipc/layout.h owns the header and the generic ring, stack and arena blocks;
// this file owns what they carry: the config block, the queue table, the task
// slots with their state words, and the worker registry.
//
// A change to any struct here bumps kLayoutVersion and updates
// docs/formats/segment.md in the same commit.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "taskring/base/config.h"
#include "taskring/ipc/layout.h"
#include "taskring/task.h"

namespace taskring::detail {

inline constexpr std::uint32_t kLayoutVersion = 7;

// Section ids in the segment directory.
enum SectionId : std::uint32_t {
  kSecConfig = 1,   // one ConfigBlock
  kSecQueues = 2,   // QueueEntry[queue_count]
  kSecRings = 3,    // queue_count * 4 rings of ring_capacity cells
  kSecSlots = 4,    // TaskSlot[slot_count]
  kSecSlotFree = 5, // one FreeStackHead over the slots
  kSecArena = 6,    // ArenaControl + payload area
  kSecWorkers = 7,  // WorkerEntry[max_workers]
  kSecDeques = 8,   // max_workers rings of deque_capacity cells
  kSecTimers = 9,   // one ring of timer_capacity(slot_count) cells: delayed tasks
  kSecJournal = 10, // JournalControl + journal_capacity cells; only when the journal is on
  // Reserved: 11 dead-letter queue. Adding it bumps kLayoutVersion.
};

// The timer ring holds every delayed task's name at most once, plus stale
// names not yet dropped: twice the slot count, rounded up to a power of two.
constexpr std::uint64_t timer_capacity(std::uint32_t slots) noexcept {
  std::uint64_t c = 16;
  while (c < 2 * std::uint64_t{slots}) c <<= 1;
  return c;
}

// ---- Config block --------------------------------------------------------
struct alignas(kFalseSharingRange) ConfigBlock {
  // Fixed at creation; every size the layout depends on.
  std::uint32_t slot_count;
  std::uint32_t queue_count;
  std::uint32_t ring_capacity;
  std::uint32_t max_payload;
  std::uint64_t payload_area_units;
  std::uint32_t max_workers;
  std::uint32_t deque_capacity;
  std::uint32_t slot_size;       // sizeof(TaskSlot), checked on attach
  std::uint32_t inline_bytes;    // kInlineBytes, checked on attach
  std::uint32_t mode;
  std::uint32_t inline_result_bytes;  // kInlineResultBytes, checked on attach
  std::uint64_t result_ttl_ns;        // EngineConfig::result_ttl_ns
  std::uint32_t journal_mode;         // EngineConfig::journal (JournalMode)
  std::uint32_t journal_capacity;     // EngineConfig::journal_capacity
  std::uint8_t reserved1[kFalseSharingRange - 64];

  alignas(kFalseSharingRange) std::atomic<std::uint32_t> reserved_wake;  // 0, unused
  // Workers parked right now; each parks on its own WorkerEntry::wake_seq.
  // Producers look further only when this is non-zero.
  std::atomic<std::uint32_t> parked_workers;
  // Producers waiting for room park on space_seq; whoever frees room bumps it
  // when space_waiters != 0.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> space_seq;
  std::atomic<std::uint32_t> space_waiters;
  // Set by destroy: workers return, waiting producers fail.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> closing;
  // One past the highest registry index ever taken: scans stop there.
  std::atomic<std::uint32_t> worker_hwm;
  // Bumped by drain_segment: a worker that attached under an older value
  // stops claiming and returns from run().
  std::atomic<std::uint32_t> drain_epoch;
  std::uint32_t reserved2;
  // CLOCK_MONOTONIC after which the next periodic lost-reference audit is
  // due; the process whose CAS moves it forward runs the audit.
  std::atomic<std::int64_t> next_audit_ns;
  // Recovery totals, for observers (relaxed counters).
  std::atomic<std::uint64_t> workers_recovered;
  std::atomic<std::uint64_t> tasks_recovered;   // requeued or failed after a worker died
  std::atomic<std::uint64_t> lost_tasks_found;  // requeued or dropped by the audit
  // A lower bound of the run-at times of the tasks in the timer ring
  // (INT64_MAX: none). Adders lower it with a CAS-min; the worker that swaps
  // it to INT64_MAX releases the due tasks and puts back the new minimum.
  std::atomic<std::int64_t> next_due_ns;
  // Completion listeners (Client::listen_completions): processes parked
  // until any task finishes, and the futex word every terminal transition
  // bumps while done_listeners != 0.
  std::atomic<std::uint32_t> done_listeners;
  std::atomic<std::uint32_t> done_any_seq;
  std::uint8_t pad[kFalseSharingRange - 64];
};
static_assert(sizeof(ConfigBlock) == 4 * kFalseSharingRange);
static_assert(offsetof(ConfigBlock, parked_workers) == kFalseSharingRange + 4);
static_assert(offsetof(ConfigBlock, space_seq) == 2 * kFalseSharingRange);
static_assert(offsetof(ConfigBlock, closing) == 3 * kFalseSharingRange);
static_assert(offsetof(ConfigBlock, next_audit_ns) == 3 * kFalseSharingRange + 16);
static_assert(offsetof(ConfigBlock, done_listeners) == 3 * kFalseSharingRange + 56);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// ---- Queue table ---------------------------------------------------------
struct alignas(kFalseSharingRange) QueueEntry {
  char name[kMaxQueueNameLength + 1];   // NUL-terminated; validated on attach
  std::uint8_t reserved[kFalseSharingRange - kMaxQueueNameLength - 1];
  // Multi-writer counters, each on its own line: producers bump submitted,
  // clients bump cancelled. Claims and completions are per worker (WorkerEntry).
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> submitted;
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> cancelled;
  std::uint8_t pad[kFalseSharingRange - 8];
};
static_assert(sizeof(QueueEntry) == 3 * kFalseSharingRange);

// ---- Task slots ------------------------------------------------------------
// The state word, one atomic u64 per slot; every transition is one CAS.
//   bits  0..3   TaskState
//   bit   4      queued: the slot index sits in a queue ring or a deque; the
//                slot is not freed while it is set (so a ring never names a
//                reused slot)
//   bit   5      released: the producer will not read the result; free the
//                slot once terminal and not queued
//   bit   6      cancel requested (running tasks poll it)
//   bit   7      timed out: set with bit 6 when the task outlived its time limit
//   bits  8..15  owner: registry index + 1 of the worker running it; 0 none
//   bits 16..23  attempts: how many times a worker claimed it
//   bits 24..31  reference tag: bumped every time the task is (re)queued;
//                a ring or deque names the task as [tag:8 | slot:24], and a
//                name whose tag differs from the word's is stale and ignored,
//                so a task requeued by recovery never runs from two names
//   bits 32..63  generation; the task id is generation << 32 | slot
// State kReserved (6) is internal: a producer took the slot off the free
// stack and is filling it. Its word is [generation:32 | tag:8 | 0:20 | 6],
// the generation the task will get; the producer stored its pid in
// TaskSlot::submitter_pid before it, so recovery can free the slots of
// dead producers.
namespace sw {
inline constexpr std::uint64_t kStateMask = 0xF;
inline constexpr std::uint64_t kQueued = 1u << 4;
inline constexpr std::uint64_t kReleased = 1u << 5;
inline constexpr std::uint64_t kCancelReq = 1u << 6;
inline constexpr std::uint64_t kTimedOut = 1u << 7;
inline constexpr int kOwnerShift = 8;
inline constexpr int kAttemptShift = 16;
inline constexpr int kTagShift = 24;
inline constexpr std::uint64_t kOwnerMask = 0xFFull << kOwnerShift;
inline constexpr std::uint64_t kAttemptMask = 0xFFull << kAttemptShift;
inline constexpr std::uint64_t kTagMask = 0xFFull << kTagShift;
inline constexpr std::uint64_t kReservedState = 6;
// A ring value: [tag:8 | slot:24]. Slots are at most 2^22 (EngineConfig).
inline constexpr std::uint32_t kRefSlotMask = 0xFFFFFF;

constexpr TaskState state(std::uint64_t w) noexcept { return static_cast<TaskState>(w & kStateMask); }
constexpr std::uint32_t generation(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }
constexpr int owner(std::uint64_t w) noexcept { return static_cast<int>((w & kOwnerMask) >> kOwnerShift) - 1; }
constexpr std::uint32_t attempts(std::uint64_t w) noexcept {
  return static_cast<std::uint32_t>((w & kAttemptMask) >> kAttemptShift);
}
constexpr std::uint64_t with_state(std::uint64_t w, TaskState s) noexcept {
  return (w & ~kStateMask) | static_cast<std::uint64_t>(s);
}
constexpr std::uint32_t tag(std::uint64_t w) noexcept { return static_cast<std::uint32_t>((w & kTagMask) >> kTagShift); }
// `w` with its tag advanced by one (wrapping within 8 bits).
constexpr std::uint64_t next_tag(std::uint64_t w) noexcept {
  return (w & ~kTagMask) | ((std::uint64_t{(tag(w) + 1) & 0xFF}) << kTagShift);
}
// A free word of `generation` that keeps `w`'s tag: tags only ever move
// forward for a slot, so a stale name from an earlier task stays stale.
constexpr std::uint64_t make_free(std::uint32_t generation, std::uint64_t w = 0) noexcept {
  return (std::uint64_t{generation} << 32) | (w & kTagMask);
}
// `w` (a running or failed task) put back in its queue: pending and
// queued under the next tag, no owner, its cancel and timed-out flags
// cleared; generation, attempts and released bit kept.
constexpr std::uint64_t requeued(std::uint64_t w) noexcept {
  return next_tag(w & ~(kOwnerMask | kStateMask | kCancelReq | kTimedOut)) |
         static_cast<std::uint64_t>(TaskState::kPending) | kQueued;
}
constexpr bool reserved(std::uint64_t w) noexcept { return (w & kStateMask) == kReservedState; }
// True if the word holds a task (pending, running or terminal): not free,
// not reserved, not an invalid state value.
constexpr bool live(std::uint64_t w) noexcept {
  const std::uint64_t st = w & kStateMask;
  return st >= static_cast<std::uint64_t>(TaskState::kPending) && st <= static_cast<std::uint64_t>(TaskState::kCancelled);
}
// The reserved word for free word `w`: same generation and tag.
constexpr std::uint64_t make_reserved(std::uint64_t w) noexcept {
  return (w & (~std::uint64_t{0xFFFFFFFF} | kTagMask)) | kReservedState;
}
// The ring value naming slot `index` whose state word is `w`.
constexpr std::uint32_t ref(std::uint32_t index, std::uint64_t w) noexcept { return (tag(w) << 24) | index; }
constexpr std::uint32_t ref_slot(std::uint32_t ref) noexcept { return ref & kRefSlotMask; }
constexpr std::uint32_t ref_tag(std::uint32_t ref) noexcept { return ref >> 24; }
// The generation after `g`, skipping 0 so that a task id is never 0.
constexpr std::uint32_t next_generation(std::uint32_t g) noexcept { return g + 1 == 0 ? 1 : g + 1; }
}  // namespace sw

inline constexpr std::uint32_t kInlineBytes = 56;        // payloads up to this size sit in the slot
inline constexpr std::uint32_t kInlineResultBytes = 32;  // results up to this size sit in the slot
inline constexpr std::uint32_t kNoBlock = 0xFFFFFFFFu;

// Fields are grouped by who writes them, so that a task moves as few cache
// lines between the producer's core and the worker's as it can: the producer
// writes lines 0 and 1 (and 2 for payloads over 32 bytes or names over 16),
// the worker writes line 0's state word and line 3. Freeing a slot resets
// line 3, on the freeing side, so that submitting never touches it.
struct alignas(kCacheLineSize) TaskSlot {
  // ---- line 0: the state word and what the producer writes
  std::atomic<std::uint64_t> state;    // 0: the state word above
  std::atomic<std::uint32_t> done_seq; // 8: futex word, bumped on every terminal transition
  std::atomic<std::uint32_t> waiters;  // 12: producers parked on done_seq
  std::atomic<std::uint32_t> next_free;// 16: free-stack link, valid while free
  std::atomic<std::uint16_t> queue;    // 20: queue index (atomic: a canceller reads it without owning the slot)
  std::uint8_t priority;               // 22: Priority
  std::uint8_t name_len;               // 23: bytes of `name` used
  std::uint32_t payload_len;           // 24
  std::uint32_t payload_block;         // 28: arena unit, or kNoBlock when inline
  std::atomic<std::uint32_t> submitter_pid;  // 32 (atomic: a recoverer reads it while the slot may be reused)
  std::uint8_t max_attempts;           // 36: 0 until the submitter or the first worker sets it
  std::uint8_t crashes;                // 37: attempts that ended with the worker dying
  std::uint8_t max_crashes;            // 38: 0: kDefaultMaxCrashes
  std::uint8_t reserved0;              // 39
  // Timestamps are atomics (relaxed) because peek reads them racily; the
  // state word's CAS orders them for readers.
  std::atomic<std::int64_t> submit_ns; // 40: CLOCK_MONOTONIC
  char name[kMaxTaskNameLength + 1];   // 48: task name (not NUL-terminated: name_len); to 96
  // ---- line 1 (from 64): the rest of a long name, then the payload
  std::uint8_t inline_payload[kInlineBytes];  // 96: to 152
  // ---- line 2 (from 128): the payload's tail and rarely written fields
  // 152: when a canceller won against the claim: [generation:32 | delay:32],
  // delay since submit_ns in microseconds, or in milliseconds with bit 31
  // set when longer than 2^31 us. Written before the cancel CAS; tagged with
  // the generation so that a losing or stale canceller leaves no trace on a
  // later task in the slot. Read only for tasks cancelled before they ran.
  std::atomic<std::uint64_t> cancel_stamp;
  // 160: the last worker that died running it, and how (recovery writes
  // these while it holds the task; readers trust them when crashes > 0).
  std::uint32_t crash_pid;             // 160
  std::uint32_t crash_reason;          // 164: [kind:8 | code:8], see encode_exit
  // 168: CLOCK_MONOTONIC before which the task must not start (0: no
  // delay): a delayed submit, or a retry's backoff. Written by whoever
  // holds the task before it is named in a ring; atomic because the timer
  // scan and peek read it while others may hold it.
  std::atomic<std::int64_t> run_at_ns;
  // 176: when the running attempt must end (0: no limit), and how long a
  // handler that was asked to stop may take before its worker is killed;
  // written by the worker at claim, read by watchdogs (recovery.cc).
  std::atomic<std::int64_t> deadline_ns;
  std::atomic<std::uint32_t> kill_grace_ms;  // 184
  // 188: the submitter's time limit in ms (0: the handler's); written by
  // submit only when set, reset when non-zero by whoever frees the slot.
  std::atomic<std::uint32_t> time_limit_ms;
  // ---- line 3 (from 192): what the worker writes
  std::uint32_t result_len;            // 192
  std::uint32_t result_block;          // 196: arena unit, or kNoBlock when inline
  std::atomic<std::int64_t> start_ns;  // 200
  std::atomic<std::int64_t> finish_ns; // 208
  // 216: the handler's progress, [done:32 | total:32] (TaskContext::
  // set_progress); relaxed, read racily by peek. Reset at claim and at free.
  std::atomic<std::uint64_t> progress;
  std::uint8_t inline_result[kInlineResultBytes];  // 224: to 256
};
static_assert(sizeof(TaskSlot) == 256);
static_assert(offsetof(TaskSlot, next_free) == 16);
static_assert(offsetof(TaskSlot, queue) == 20);
static_assert(offsetof(TaskSlot, submit_ns) == 40);
static_assert(offsetof(TaskSlot, name) == 48);
static_assert(offsetof(TaskSlot, inline_payload) == 96);
static_assert(offsetof(TaskSlot, cancel_stamp) == 152);
static_assert(offsetof(TaskSlot, result_len) == 3 * kCacheLineSize);
static_assert(offsetof(TaskSlot, start_ns) == 200);
static_assert(offsetof(TaskSlot, max_attempts) == 36);
static_assert(offsetof(TaskSlot, crash_pid) == 160);
static_assert(offsetof(TaskSlot, run_at_ns) == 168);
static_assert(offsetof(TaskSlot, deadline_ns) == 176);
static_assert(offsetof(TaskSlot, time_limit_ms) == 188);

static_assert(offsetof(TaskSlot, inline_result) == 224);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// ---- Worker registry -------------------------------------------------------

struct alignas(kFalseSharingRange) WorkerEntry {
  // [incarnation:32 | pid:32]; pid 0 = free. Taken by one CAS (Worker::attach)
  // from a free value or from a value whose pid is dead, so exactly one
  // process owns an entry; the incarnation grows at every take. While a
  // recoverer settles a dead worker's entry, the low half is
  // kRecoveringBit | the recoverer's pid (see recovery.cc).
  std::atomic<std::uint64_t> claim;
  std::atomic<std::int32_t> cpu;         // -1: not pinned
  std::atomic<std::uint32_t> state;      // WorkerState, informative
  std::atomic<std::uint64_t> queue_mask; // bit q: serves queue q
  std::atomic<std::int64_t> heartbeat_ns;// CLOCK_MONOTONIC of the last loop turn
  std::atomic<std::int64_t> started_ns;
  std::atomic<std::uint64_t> stolen;     // tasks taken from other deques
  std::atomic<std::uint64_t> parks;      // times parked on the futex
  std::atomic<std::uint32_t> current_slot; // slot being run, or kNilIndex
  // How the owner ended, as encode_exit; 0 while unknown. Written by a
  // supervisor (worker_exited) before it recovers the entry.
  std::atomic<std::uint32_t> exit_reason;  // 60
  // The owner's identity, kept while a recoverer holds the claim word.
  std::atomic<std::uint64_t> start_time;   // 64: ticks after boot (ipc::current_start_time)
  std::atomic<std::uint32_t> owner_pid;    // 72
  std::atomic<std::uint32_t> drain_epoch;  // 76: ConfigBlock::drain_epoch when it attached
  std::uint8_t reserved1[kFalseSharingRange - 80];
  // The worker parks on wake_seq with parked = 1; a waker CASes parked 1 -> 0
  // and then bumps wake_seq, so each park is ended by at most one waker.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> wake_seq;
  std::atomic<std::uint32_t> parked;
  std::uint8_t reserved2[kFalseSharingRange - 8];
  // Per-queue counters, one writer each (relaxed load + store, no RMW):
  // claimed, succeeded, failed, cancelled, retried (kCounter*).
  std::atomic<std::uint64_t> counters[kMaxQueues][5];
};
static_assert(offsetof(WorkerEntry, current_slot) == 56);
static_assert(offsetof(WorkerEntry, start_time) == 64);
static_assert(offsetof(WorkerEntry, wake_seq) == kFalseSharingRange);
static_assert(sizeof(WorkerEntry) == 2 * kFalseSharingRange + kMaxQueues * 40);
// Encodes and decodes TaskSlot::cancel_stamp.
constexpr std::uint64_t make_cancel_stamp(std::uint32_t generation, std::int64_t delay_ns) noexcept {
  const std::uint64_t us = delay_ns < 0 ? 0 : static_cast<std::uint64_t>(delay_ns) / 1000;
  std::uint64_t field = us;
  if (us >= (1u << 31)) {
    const std::uint64_t ms = us / 1000;
    field = (1u << 31) | (ms >= (1u << 31) ? (1u << 31) - 1 : ms);
  }
  return (std::uint64_t{generation} << 32) | field;
}
constexpr std::int64_t cancel_stamp_delay_ns(std::uint64_t stamp) noexcept {
  const auto field = static_cast<std::uint32_t>(stamp);
  const std::int64_t v = field & ((1u << 31) - 1);
  return (field >> 31) != 0 ? v * 1'000'000 : v * 1000;
}

inline constexpr std::uint32_t kRecoveringBit = 0x80000000u;
// The owner's pid (0: free), or 0 while a recoverer holds the entry.
constexpr std::uint32_t claim_pid(std::uint64_t c) noexcept {
  return (static_cast<std::uint32_t>(c) & kRecoveringBit) != 0 ? 0 : static_cast<std::uint32_t>(c);
}
constexpr bool claim_recovering(std::uint64_t c) noexcept { return (static_cast<std::uint32_t>(c) & kRecoveringBit) != 0; }
constexpr std::uint32_t claim_recoverer(std::uint64_t c) noexcept {
  return static_cast<std::uint32_t>(c) & ~kRecoveringBit;
}
// True if the entry is neither free nor being recovered.
constexpr bool claim_owned(std::uint64_t c) noexcept { return claim_pid(c) != 0; }
constexpr std::uint32_t claim_incarnation(std::uint64_t c) noexcept { return static_cast<std::uint32_t>(c >> 32); }
// Stores 0 into a field that is usually 0 already, only when it is not:
// a read leaves the cache line shared, where a store would take it over.
template <typename T>
inline void clear_if_set(std::atomic<T>& field) noexcept {
  // Relaxed: callers hold the task; what publishes the fields publishes this.
  if (field.load(std::memory_order_relaxed) != 0) field.store(0, std::memory_order_relaxed);
}

// ExitReason in 32 bits: [kind:8 | code:8]; 0 is "unknown".
constexpr std::uint32_t encode_exit(std::uint8_t kind, int code) noexcept {
  return (std::uint32_t{kind} << 8) | (static_cast<std::uint32_t>(code) & 0xFF);
}
constexpr ExitReason decode_exit(std::uint32_t v) noexcept {
  const auto kind = static_cast<ExitReason::Kind>(v >> 8);
  if (kind != ExitReason::Kind::kExited && kind != ExitReason::Kind::kSignaled) return ExitReason{};
  return ExitReason{kind, static_cast<int>(v & 0xFF)};
}
// ---- Journal events ----------------------------------------------------------
// The body of a journal cell (ipc::Journal): one task state change, written
// by the process that made it, right after its CAS. The sidecar reads the
// rest (spec, payload, result) from the slot, checking the generation.
struct JournalEvent {
  std::uint64_t word;   // the state word after the transition
  std::uint32_t slot;   // slot index (the sidecar bounds-checks it)
  std::uint32_t pid;    // the process that made the transition
  std::uint8_t type;    // log::RecordType: kSubmitted .. kFreed
  std::uint8_t reserved0;
  std::uint16_t reserved1;
  std::uint32_t aux;    // by type: worker index (started), log::RequeueReason, log::FreeReason
};
static_assert(sizeof(JournalEvent) == 24);
static_assert(sizeof(JournalEvent) <= ipc::kJournalBodyBytes);
static_assert(std::is_trivially_copyable_v<JournalEvent>);
// A journal position that no event has: journaling is off, or the event was dropped.
inline constexpr std::uint64_t kNoJournalPos = ~std::uint64_t{0};

inline constexpr int kCounterClaimed = 0, kCounterSucceeded = 1, kCounterFailed = 2, kCounterCancelled = 3,
                     kCounterRetried = 4;

}  // namespace taskring::detail
