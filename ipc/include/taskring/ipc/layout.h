// The byte-exact format of the generic parts of a taskring segment: the
// header with its section directory, and the control blocks of rings, free
// stacks and the block arena. docs/formats/segment.md describes every field.
// The engine defines the contents of its own sections (engine/src/layout_internal.h)
// and stores their version in SegmentHeader::layout_version.
//
// Every struct here lives in shared memory: trivially copyable, standard
// layout, offsets instead of pointers, explicit padding, sizes pinned by
// static_assert. A change to any of them bumps kHeaderVersion.
//
// Thread safety: the structs are plain memory; the classes in ring.h,
// free_stack.h and arena.h define the concurrent protocol over them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "taskring/base/config.h"

namespace taskring::ipc {

// "TASKRING" read as a little-endian u64.
inline constexpr std::uint64_t kSegmentMagic = 0x474E49524B534154ULL;
// Version of the header and of the structs in this file.
inline constexpr std::uint32_t kHeaderVersion = 1;
// SegmentHeader::ready holds this once creation has finished.
inline constexpr std::uint32_t kReadyValue = 0x52454459;  // "YDER"
inline constexpr std::size_t kHeaderBytes = 4096;
inline constexpr std::uint32_t kMaxSections = 32;
// Every section starts on this boundary.
inline constexpr std::size_t kSectionAlign = 4096;

struct SectionEntry {
  std::uint32_t id;         // section kind, defined by the layer that owns it; 0 = unused
  std::uint32_t elem_size;  // bytes per element (1 for byte areas)
  std::uint64_t offset;     // from the start of the segment; multiple of kSectionAlign
  std::uint64_t size;       // bytes
  std::uint64_t count;      // number of elements
};
static_assert(sizeof(SectionEntry) == 32);

struct SegmentHeader {
  std::uint64_t magic;              // kSegmentMagic
  std::uint32_t header_version;     // kHeaderVersion
  std::uint32_t layout_version;     // the engine's layout version
  std::uint64_t total_size;         // bytes of the whole segment
  std::uint32_t creator_uid;        // geteuid() of the creator
  std::uint32_t creator_pid;        // getpid() of the creator
  std::uint64_t created_unix_ns;    // CLOCK_REALTIME at creation
  std::atomic<std::uint32_t> ready; // kReadyValue once every section is built
  std::uint32_t section_count;      // entries used in `sections`
  std::uint32_t header_bytes;       // kHeaderBytes
  std::uint32_t reserved0;
  std::uint8_t reserved1[64];       // zero; room for later header fields
  SectionEntry sections[kMaxSections];
};
static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(offsetof(SegmentHeader, ready) == 40);
static_assert(offsetof(SegmentHeader, sections) == 120);
static_assert(sizeof(SegmentHeader) <= kHeaderBytes);

// ---- Ring ------------------------------------------------------------------
// A ring section is a RingControl followed by `capacity` RingCells.
// A cell word is [turn:32 | value:32]: see ring.h for the protocol.
struct alignas(kFalseSharingRange) RingControl {
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> head;  // next position to pop (a hint)
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> tail;  // next position to push (a hint)
  alignas(kFalseSharingRange) std::uint64_t capacity;           // power of two; validated against the config
  std::uint64_t reserved[15];
};
static_assert(sizeof(RingControl) == 3 * kFalseSharingRange);
static_assert(offsetof(RingControl, tail) == kFalseSharingRange);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

struct RingCell {
  std::atomic<std::uint64_t> word;
};
static_assert(sizeof(RingCell) == 8);

inline constexpr std::size_t ring_bytes(std::uint64_t capacity) {
  return sizeof(RingControl) + capacity * sizeof(RingCell);
}

// ---- Free stack ------------------------------------------------------------
// A Treiber stack of 32-bit indices; the head word is [tag:32 | index:32] so a
// pop that raced with a pop-push of the same index fails its CAS (no ABA).
// The links live beside the elements they chain (FreeStack takes a link array).
inline constexpr std::uint32_t kNilIndex = 0xFFFFFFFFu;

struct alignas(kFalseSharingRange) FreeStackHead {
  std::atomic<std::uint64_t> word;  // [tag:32 | index:32], index kNilIndex = empty
  std::uint8_t pad[kFalseSharingRange - 8];
};
static_assert(sizeof(FreeStackHead) == kFalseSharingRange);

// ---- Block arena -----------------------------------------------------------
// Size classes of 2^k bytes, k in [kArenaMinShift, kArenaMaxShift]; a block
// starts with an ArenaBlockHeader. Blocks are cut from the area by bumping
// `bump` and return to their class's free stack; they are never merged.
inline constexpr std::uint32_t kArenaMinShift = 7;   // 128-byte blocks
inline constexpr std::uint32_t kArenaMaxShift = 30;  // 1 GiB blocks
inline constexpr std::uint32_t kArenaClasses = kArenaMaxShift - kArenaMinShift + 1;
// Offsets inside the arena are multiples of this unit, so a 32-bit block
// index reaches 2^32 * 128 bytes.
inline constexpr std::uint64_t kArenaUnit = std::uint64_t{1} << kArenaMinShift;

struct ArenaBlockHeader {
  std::uint32_t size_class;  // k - kArenaMinShift
  std::uint32_t magic;       // kArenaBlockMagic: catches a bad offset early
  std::atomic<std::uint32_t> next;  // free-stack link (unit index), valid while free
  std::uint32_t reserved;
};
inline constexpr std::uint32_t kArenaBlockMagic = 0x424C4B31;  // "1KLB"
static_assert(sizeof(ArenaBlockHeader) == 16);

struct alignas(kFalseSharingRange) ArenaControl {
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> bump;  // units handed out so far
  std::uint64_t area_units;                                     // size of the block area in units
  std::uint8_t pad[kFalseSharingRange - 16];
  FreeStackHead free[kArenaClasses];                            // one stack per size class
};
static_assert(sizeof(ArenaControl) == (1 + kArenaClasses) * kFalseSharingRange);

inline constexpr std::size_t arena_control_bytes() {
  // The control block is padded to kArenaUnit multiples so block 0 is aligned.
  return (sizeof(ArenaControl) + kArenaUnit - 1) / kArenaUnit * kArenaUnit;
}

// ---- Journal ---------------------------------------------------------------
// A journal section is a JournalControl followed by `capacity` JournalCells:
// a bounded MPSC log of fixed-size records (journal.h has the protocol).
// A cell word is [lap:40 | state:2 | pid:22].
inline constexpr std::size_t kJournalBodyBytes = 56;

struct alignas(kFalseSharingRange) JournalControl {
  // Next position to reserve; every writer CASes it.
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> tail;
  // Next position the reader will read; only the reader stores it.
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> head;
  // Every position below it is on disk (or covered by a snapshot that is);
  // the reader stores it, durable waiters park on durable_seq.
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> durable;
  std::atomic<std::uint32_t> durable_seq;
  std::atomic<std::uint32_t> durable_waiters;
  // Writers waiting for room park on space_seq; the reader bumps it after
  // freeing cells when space_waiters != 0.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> space_seq;
  std::atomic<std::uint32_t> space_waiters;
  // Events that found the journal full and were not written (best-effort).
  std::atomic<std::uint64_t> dropped;
  // Reservations whose cell the reader skipped before they were written.
  std::atomic<std::uint64_t> lost;
  // The reader parks on data_seq with reader_parked = 1; a writer that
  // commits CASes reader_parked 1 -> 0 and bumps data_seq.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> data_seq;
  std::atomic<std::uint32_t> reader_parked;
  // Who reads: pid 0 = nobody. Taken by CAS from 0 or from a dead reader.
  std::atomic<std::uint32_t> reader_pid;
  std::uint32_t reserved0;
  std::atomic<std::uint64_t> reader_start_time;  // /proc start time of reader_pid
  std::atomic<std::uint64_t> reader_heartbeat_ns;  // CLOCK_MONOTONIC of its last loop turn
  // Fixed at format time: cells (a power of two), validated on attach.
  alignas(kFalseSharingRange) std::uint64_t capacity;
  std::uint64_t reserved1[15];
};
static_assert(sizeof(JournalControl) == 6 * kFalseSharingRange);
static_assert(offsetof(JournalControl, head) == kFalseSharingRange);
static_assert(offsetof(JournalControl, capacity) == 5 * kFalseSharingRange);

struct alignas(kCacheLineSize) JournalCell {
  std::atomic<std::uint64_t> word;
  std::uint8_t body[kJournalBodyBytes];
};
static_assert(sizeof(JournalCell) == kCacheLineSize);

inline constexpr std::size_t journal_bytes(std::uint64_t capacity) {
  return sizeof(JournalControl) + capacity * sizeof(JournalCell);
}

}  // namespace taskring::ipc
