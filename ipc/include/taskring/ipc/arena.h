// Arena: a lock-free block allocator over a byte area of the segment, used
// for task payloads and results too large to sit inline in a slot.
//
// Algorithm: power-of-two size classes (128 B to 1 GiB, layout.h). A request
// takes a block from its class's free stack (free_stack.h); if that is empty,
// it cuts a new block by advancing the `bump` counter with a CAS. Freed blocks
// go back to their class's stack and are never merged, so the area fragments
// towards the block sizes the workload uses; docs/architecture.md discusses it.
//
// Invariants:
//   1. Blocks are addressed by their unit index (offset / kArenaUnit); a block
//      of class c covers 2^c units starting at its index, inside
//      [0, bump) and bump <= area_units.
//   2. A block's header (class, magic) is written by the allocator that cut
//      it, before the block is handed to anyone.
//   3. Every block index and header read from shared memory is validated
//      (range, magic, class, extent) before use; see `resolve`.
//
// Process death: a process killed between cutting or popping a block and
// recording it in a task slot leaks that block; nobody is blocked.
//
// Thread safety: allocate and release are lock-free from any thread of any
// process. Never allocates from the heap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "taskring/ipc/free_stack.h"
#include "taskring/ipc/layout.h"

namespace taskring::ipc {

class Arena {
 public:
  Arena() = default;
  // `control` is followed by the block area of `area_units` units. Both come
  // from the validated configuration.
  Arena(ArenaControl* control, std::uint64_t area_units) noexcept;

  static void format(ArenaControl* control, std::uint64_t area_units) noexcept;
  // Bytes of usable data in the largest block an area of `area_units` can
  // hold at all; requests above this can never succeed.
  static std::uint64_t max_block_data(std::uint64_t area_units) noexcept;

  enum class AllocResult { kOk, kExhausted, kTooLarge, kCorrupt };
  // Allocates a block with room for `bytes` of data; sets `unit` to its index.
  // kExhausted: no free block of the class and no room to cut one (retry
  // after others release); kTooLarge: no block class can hold `bytes`.
  [[nodiscard]] AllocResult allocate(std::uint64_t bytes, std::uint32_t& unit) noexcept;
  // Returns the block at `unit` to its free stack. Returns false (and does
  // nothing) if `unit` does not name a valid allocated block.
  bool release(std::uint32_t unit) noexcept;
  // The data area of the block at `unit`, validated; empty if invalid.
  std::span<std::byte> resolve(std::uint32_t unit) const noexcept;

  std::uint64_t area_units() const noexcept { return area_units_; }
  // Units cut so far. A racy observer.
  std::uint64_t bumped_units_approx() const noexcept;

 private:
  std::byte* block(std::uint32_t unit) const noexcept { return area_ + std::uint64_t{unit} * kArenaUnit; }
  FreeStack stack(std::uint32_t size_class) const noexcept;

  ArenaControl* control_ = nullptr;
  std::byte* area_ = nullptr;
  std::uint64_t area_units_ = 0;
};

}  // namespace taskring::ipc
