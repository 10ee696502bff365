#include "taskring/ipc/arena.h"

#include <bit>

namespace taskring::ipc {
namespace {
constexpr std::uint64_t kLinkOffset = offsetof(ArenaBlockHeader, next);

// Smallest class whose blocks hold `bytes` of data after the header.
std::uint32_t class_for(std::uint64_t bytes) noexcept {
  const std::uint64_t need = bytes + sizeof(ArenaBlockHeader);
  const std::uint32_t shift = static_cast<std::uint32_t>(std::bit_width(need - 1));
  return shift <= kArenaMinShift ? 0 : shift - kArenaMinShift;
}
}  // namespace

Arena::Arena(ArenaControl* control, std::uint64_t area_units) noexcept
    : control_(control),
      area_(reinterpret_cast<std::byte*>(control) + arena_control_bytes()),
      area_units_(area_units) {}

void Arena::format(ArenaControl* control, std::uint64_t area_units) noexcept {
  // Relaxed: published by the creator's release store of the ready flag.
  control->bump.store(0, std::memory_order_relaxed);
  control->area_units = area_units;
  for (auto& head : control->free) FreeStack::format_empty(&head);
}

std::uint64_t Arena::max_block_data(std::uint64_t area_units) noexcept {
  if (area_units == 0) return 0;
  std::uint64_t units = std::bit_floor(area_units);
  const std::uint64_t max_units = std::uint64_t{1} << (kArenaMaxShift - kArenaMinShift);
  if (units > max_units) units = max_units;
  return units * kArenaUnit - sizeof(ArenaBlockHeader);
}

FreeStack Arena::stack(std::uint32_t size_class) const noexcept {
  // Unit indices bound every link; a block's link sits kLinkOffset into it.
  const auto count = static_cast<std::uint32_t>(area_units_ > kNilIndex - 1 ? kNilIndex - 1 : area_units_);
  return FreeStack(&control_->free[size_class], area_ + kLinkOffset, kArenaUnit, count);
}

Arena::AllocResult Arena::allocate(std::uint64_t bytes, std::uint32_t& unit) noexcept {
  const std::uint32_t c = class_for(bytes);
  if (c >= kArenaClasses || bytes > max_block_data(area_units_)) return AllocResult::kTooLarge;
  switch (stack(c).pop(unit)) {
    case FreeStack::PopResult::kOk: {
      auto* h = reinterpret_cast<ArenaBlockHeader*>(block(unit));
      // A popped block must still say it is ours; anything else is corruption.
      if (h->magic != kArenaBlockMagic || h->size_class != c) return AllocResult::kCorrupt;
      return AllocResult::kOk;
    }
    case FreeStack::PopResult::kCorrupt:
      return AllocResult::kCorrupt;
    case FreeStack::PopResult::kEmpty:
      break;
  }
  const std::uint64_t units = std::uint64_t{1} << c;
  // Relaxed: the bump counter only hands out disjoint ranges; the block's
  // contents are published later through the task slot's state word.
  std::uint64_t cur = control_->bump.load(std::memory_order_relaxed);
  do {
    if (cur + units > area_units_) return AllocResult::kExhausted;
  } while (!control_->bump.compare_exchange_weak(cur, cur + units, std::memory_order_relaxed,
                                                 std::memory_order_relaxed));
  unit = static_cast<std::uint32_t>(cur);
  auto* h = reinterpret_cast<ArenaBlockHeader*>(block(unit));
  h->size_class = c;
  h->magic = kArenaBlockMagic;
  h->reserved = 0;
  return AllocResult::kOk;
}

std::span<std::byte> Arena::resolve(std::uint32_t unit) const noexcept {
  if (unit >= area_units_ || std::uint64_t{unit} + 1 > area_units_) return {};
  const auto* h = reinterpret_cast<const ArenaBlockHeader*>(block(unit));
  const std::uint32_t c = h->size_class;
  if (h->magic != kArenaBlockMagic || c >= kArenaClasses) return {};
  const std::uint64_t units = std::uint64_t{1} << c;
  if (std::uint64_t{unit} + units > area_units_) return {};
  return {block(unit) + sizeof(ArenaBlockHeader), units * kArenaUnit - sizeof(ArenaBlockHeader)};
}

bool Arena::release(std::uint32_t unit) noexcept {
  if (resolve(unit).empty()) return false;
  const auto* h = reinterpret_cast<const ArenaBlockHeader*>(block(unit));
  stack(h->size_class).push(unit);
  return true;
}

std::uint64_t Arena::bumped_units_approx() const noexcept {
  return control_->bump.load(std::memory_order_relaxed);  // an observer's snapshot
}

}  // namespace taskring::ipc
