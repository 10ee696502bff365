// Arena (ipc/include/taskring/ipc/arena.h): size classes, reuse, limits,
// validation of block indices and headers, and a concurrent
// allocate/write/verify/release race with a no-overlap oracle. Threads share
// one buffer in one process so TSan sees them.
#include "taskring/ipc/arena.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "ipc_test_util.h"
#include "test_support.h"

namespace taskring::ipc {
namespace {

using taskring::ipc::test::AlignedBuffer;
using taskring::ipc::test::uniform;
using taskring::testing::StartBarrier;
using taskring::testing::test_seed;
using AllocResult = Arena::AllocResult;

#if defined(__SANITIZE_THREAD__)
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif

constexpr std::uint64_t kHeader = sizeof(ArenaBlockHeader);

// Bytes of data in a block of class c.
constexpr std::uint64_t data_bytes(std::uint32_t c) { return (kArenaUnit << c) - kHeader; }

// A formatted arena in a zeroed aligned heap buffer.
class HeapArena {
 public:
  explicit HeapArena(std::uint64_t area_units)
      : buf_(arena_control_bytes() + area_units * kArenaUnit), arena_(control(), area_units) {
    Arena::format(control(), area_units);
  }
  ArenaControl* control() const { return buf_.as<ArenaControl>(); }
  std::byte* area() const { return buf_.data() + arena_control_bytes(); }
  ArenaBlockHeader* header(std::uint32_t unit) const {
    return reinterpret_cast<ArenaBlockHeader*>(area() + std::uint64_t{unit} * kArenaUnit);
  }
  Arena& arena() { return arena_; }
  // The free stack of class c, as the arena builds it.
  FreeStack free_stack(std::uint32_t c) const {
    return FreeStack(&control()->free[c], area() + offsetof(ArenaBlockHeader, next), kArenaUnit,
                     static_cast<std::uint32_t>(arena_.area_units()));
  }
  // Units held by all free stacks; only meaningful when nobody allocates.
  std::uint64_t free_units_quiescent() const {
    std::uint64_t units = 0;
    for (std::uint32_t c = 0; c < kArenaClasses; ++c) units += free_stack(c).size_quiescent() << c;
    return units;
  }

 private:
  AlignedBuffer buf_;
  Arena arena_;
};

std::uint32_t must_allocate(Arena& a, std::uint64_t bytes) {
  std::uint32_t unit = 0;
  const AllocResult r = a.allocate(bytes, unit);
  EXPECT_EQ(r, AllocResult::kOk) << "allocate(" << bytes << ")";
  return unit;
}

TEST(ArenaTest, FormatWritesAnEmptyArena) {
  HeapArena h(64);
  EXPECT_EQ(h.control()->area_units, 64u);
  EXPECT_EQ(h.arena().area_units(), 64u);
  EXPECT_EQ(h.arena().bumped_units_approx(), 0u);
  EXPECT_EQ(h.free_units_quiescent(), 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(h.area()) % kArenaUnit, 0u) << "block 0 must be unit-aligned";
}

TEST(ArenaTest, AllocateRoundsUpToThePowerOfTwoClass) {
  HeapArena h(64);
  struct Case {
    std::uint64_t bytes;
    std::uint64_t span;
    std::uint64_t bump_after;
  };
  // Each block holds its header, so 112 data bytes fill a 128-byte block.
  const Case cases[] = {{0, data_bytes(0), 1},   {1, data_bytes(0), 2},   {112, data_bytes(0), 3},
                        {113, data_bytes(1), 5}, {240, data_bytes(1), 7}, {241, data_bytes(2), 11},
                        {1000, data_bytes(3), 19}};
  for (const Case& c : cases) {
    std::uint32_t unit = 0;
    ASSERT_EQ(h.arena().allocate(c.bytes, unit), AllocResult::kOk) << c.bytes << " bytes";
    std::span<std::byte> s = h.arena().resolve(unit);
    EXPECT_EQ(s.size(), c.span) << c.bytes << " bytes";
    EXPECT_GE(s.size(), c.bytes);
    EXPECT_EQ(h.arena().bumped_units_approx(), c.bump_after) << c.bytes << " bytes";
    // The data follows the block header at the unit's offset.
    EXPECT_EQ(s.data(), h.area() + std::uint64_t{unit} * kArenaUnit + kHeader);
    EXPECT_EQ(h.header(unit)->magic, kArenaBlockMagic);
  }
}

TEST(ArenaTest, ReleasedBlockIsReusedForTheSameClass) {
  HeapArena h(64);
  const std::uint32_t a = must_allocate(h.arena(), 100);
  const std::uint32_t b = must_allocate(h.arena(), 100);
  ASSERT_NE(a, b);
  EXPECT_TRUE(h.arena().release(a));
  EXPECT_EQ(h.free_units_quiescent(), 1u);
  const std::uint64_t bump = h.arena().bumped_units_approx();
  // Any size of the same class takes the freed block, without cutting.
  EXPECT_EQ(must_allocate(h.arena(), 3), a);
  EXPECT_EQ(h.arena().bumped_units_approx(), bump);
  EXPECT_EQ(h.free_units_quiescent(), 0u);
}

TEST(ArenaTest, ReleasedBlockIsNotHandedToAnotherClass) {
  HeapArena h(64);
  const std::uint32_t small = must_allocate(h.arena(), 10);
  EXPECT_TRUE(h.arena().release(small));
  const std::uint32_t big = must_allocate(h.arena(), 200);
  EXPECT_NE(big, small);
  EXPECT_EQ(h.arena().resolve(big).size(), data_bytes(1));
  EXPECT_EQ(h.free_stack(0).size_quiescent(), 1u) << "the class-0 block stays on its own stack";
}

TEST(ArenaTest, AllocateReportsTooLarge) {
  HeapArena h(100);  // the largest block an area of 100 units can hold is 64 units
  ASSERT_EQ(Arena::max_block_data(100), data_bytes(6));
  std::uint32_t unit = 0xAAAA;
  EXPECT_EQ(h.arena().allocate(data_bytes(6) + 1, unit), AllocResult::kTooLarge);
  EXPECT_EQ(h.arena().allocate(std::uint64_t{1} << 40, unit), AllocResult::kTooLarge);
  // bytes + header overflows 64 bits: still too large, not a tiny class.
  EXPECT_EQ(h.arena().allocate(std::numeric_limits<std::uint64_t>::max(), unit), AllocResult::kTooLarge);
  EXPECT_EQ(h.arena().allocate(std::numeric_limits<std::uint64_t>::max() - 8, unit), AllocResult::kTooLarge);
  EXPECT_EQ(unit, 0xAAAAu);
  EXPECT_EQ(h.arena().bumped_units_approx(), 0u) << "a refused request cuts nothing";
  // The limit itself fits.
  ASSERT_EQ(h.arena().allocate(data_bytes(6), unit), AllocResult::kOk);
  EXPECT_EQ(h.arena().resolve(unit).size(), data_bytes(6));
}

TEST(ArenaTest, MaxBlockDataFollowsTheArea) {
  EXPECT_EQ(Arena::max_block_data(0), 0u);
  EXPECT_EQ(Arena::max_block_data(1), data_bytes(0));
  EXPECT_EQ(Arena::max_block_data(3), data_bytes(1));
  EXPECT_EQ(Arena::max_block_data(std::uint64_t{1} << 23), data_bytes(23));
  // Capped at the largest class (1 GiB blocks).
  EXPECT_EQ(Arena::max_block_data(std::uint64_t{1} << 30), data_bytes(kArenaClasses - 1));
}

TEST(ArenaTest, ExhaustedWhenTheAreaIsUsedUpThenOkAfterRelease) {
  constexpr std::uint32_t kUnits = 16;
  HeapArena h(kUnits);
  std::vector<std::uint32_t> units;
  for (std::uint32_t i = 0; i < kUnits; ++i) units.push_back(must_allocate(h.arena(), 50));
  std::uint32_t unit = 0xAAAA;
  EXPECT_EQ(h.arena().allocate(50, unit), AllocResult::kExhausted);
  EXPECT_EQ(h.arena().allocate(200, unit), AllocResult::kExhausted);
  EXPECT_EQ(unit, 0xAAAAu);
  EXPECT_EQ(h.arena().bumped_units_approx(), kUnits) << "a failed cut must not move bump";
  ASSERT_TRUE(h.arena().release(units[7]));
  ASSERT_EQ(h.arena().allocate(50, unit), AllocResult::kOk);
  EXPECT_EQ(unit, units[7]);
  EXPECT_EQ(h.arena().allocate(50, unit), AllocResult::kExhausted);
}

TEST(ArenaTest, ExhaustedWhenABlockWouldRunPastTheArea) {
  HeapArena h(6);
  ASSERT_EQ(must_allocate(h.arena(), 400), 0u);  // 4 units, 2 left
  std::uint32_t unit = 0;
  EXPECT_EQ(h.arena().allocate(400, unit), AllocResult::kExhausted);
  EXPECT_EQ(h.arena().allocate(200, unit), AllocResult::kOk);
  EXPECT_EQ(unit, 4u);
}

TEST(ArenaTest, ResolveRejectsBadUnitIndices) {
  HeapArena h(64);
  const std::uint32_t a = must_allocate(h.arena(), 200);  // units [0, 2)
  ASSERT_FALSE(h.arena().resolve(a).empty());
  for (std::uint32_t bad : {64u, 65u, 1000u, std::numeric_limits<std::uint32_t>::max()}) {
    EXPECT_TRUE(h.arena().resolve(bad).empty()) << "unit " << bad;
    EXPECT_FALSE(h.arena().release(bad)) << "unit " << bad;
  }
  EXPECT_TRUE(h.arena().resolve(a + 1).empty()) << "the middle of a block is not a block";
  EXPECT_TRUE(h.arena().resolve(10).empty()) << "a unit never cut is not a block";
  EXPECT_FALSE(h.arena().release(10));
  EXPECT_EQ(h.free_units_quiescent(), 0u) << "a refused release must push nothing";
}

TEST(ArenaTest, ResolveRejectsABlockWithBadMagic) {
  HeapArena h(64);
  const std::uint32_t a = must_allocate(h.arena(), 100);
  h.header(a)->magic ^= 1;
  EXPECT_TRUE(h.arena().resolve(a).empty());
  EXPECT_FALSE(h.arena().release(a));
  EXPECT_EQ(h.free_units_quiescent(), 0u);
  h.header(a)->magic = kArenaBlockMagic;
  EXPECT_EQ(h.arena().resolve(a).size(), data_bytes(0));
}

TEST(ArenaTest, ResolveRejectsABadClassOrAnExtentPastTheArea) {
  HeapArena h(64);
  const std::uint32_t a = must_allocate(h.arena(), 100);
  h.header(a)->size_class = kArenaClasses;
  EXPECT_TRUE(h.arena().resolve(a).empty()) << "class out of range";
  h.header(a)->size_class = 7;  // 128 units: more than the whole area
  EXPECT_TRUE(h.arena().resolve(a).empty()) << "extent past the area";
  EXPECT_FALSE(h.arena().release(a));
  // A block near the end whose class would cross the end of the area.
  std::vector<std::uint32_t> rest;
  for (int i = 0; i < 63; ++i) rest.push_back(must_allocate(h.arena(), 1));
  const std::uint32_t last = rest.back();
  ASSERT_EQ(last, 63u);
  h.header(last)->size_class = 1;
  EXPECT_TRUE(h.arena().resolve(last).empty());
}

TEST(ArenaTest, AllocateReportsCorruptWhenAFreeBlockHeaderIsDamaged) {
  HeapArena h(64);
  const std::uint32_t a = must_allocate(h.arena(), 100);
  ASSERT_TRUE(h.arena().release(a));
  h.header(a)->magic = 0;
  std::uint32_t unit = 0;
  EXPECT_EQ(h.arena().allocate(100, unit), AllocResult::kCorrupt);
  // The same for a block filed under the wrong class.
  const std::uint32_t b = must_allocate(h.arena(), 100);
  ASSERT_TRUE(h.arena().release(b));
  h.header(b)->size_class = 1;
  EXPECT_EQ(h.arena().allocate(100, unit), AllocResult::kCorrupt);
}

TEST(ArenaTest, AllocateReportsCorruptFreeStackHead) {
  HeapArena h(64);
  h.control()->free[2].word.store((std::uint64_t{3} << 32) | 64);  // index 64 of 64 units
  std::uint32_t unit = 0;
  EXPECT_EQ(h.arena().allocate(400, unit), AllocResult::kCorrupt);
  EXPECT_EQ(h.arena().bumped_units_approx(), 0u);
  // Other classes are unaffected.
  EXPECT_EQ(h.arena().allocate(100, unit), AllocResult::kOk);
}

// Threads allocate random sizes, claim every unit of the block in an owner
// map (a unit claimed twice means two live blocks overlap), fill the data
// with their own pattern, keep a few blocks live, verify and release them.
// At the end every cut unit is on a free stack.
TEST(ArenaStressTest, LiveBlocksNeverOverlap) {
  constexpr std::uint32_t kUnits = 128;  // less than 4 threads * 6 live * 8 units: exhaustion happens
  constexpr int kThreads = 4;
  constexpr std::size_t kMaxLive = 6;
  const int iterations = kUnderTsan ? 60'000 : 500'000;
  HeapArena h(kUnits);
  std::vector<std::atomic<int>> unit_owner(kUnits);
  std::atomic<std::uint64_t> overlaps{0};
  std::atomic<std::uint64_t> bad_spans{0};
  std::atomic<std::uint64_t> torn{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> exhausted{0};
  StartBarrier barrier(kThreads);
  const std::uint64_t seed = test_seed();

  struct Live {
    std::uint32_t unit;
    std::uint64_t units;
    std::byte fill;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 100 + static_cast<std::uint64_t>(t));
      const int me = t + 1;
      std::vector<Live> live;
      std::vector<std::byte> expected(data_bytes(3));
      auto release_one = [&](std::size_t i) {
        const Live l = live[i];
        std::span<std::byte> s = h.arena().resolve(l.unit);
        if (s.size() > expected.size()) {
          torn.fetch_add(1);  // a live block changed class under us
        } else {
          std::memset(expected.data(), static_cast<int>(l.fill), s.size());
          if (std::memcmp(s.data(), expected.data(), s.size()) != 0) torn.fetch_add(1);
        }
        for (std::uint64_t u = l.unit; u < l.unit + l.units; ++u) {
          if (unit_owner[u].exchange(0) != me) overlaps.fetch_add(1);
        }
        if (!h.arena().release(l.unit)) failures.fetch_add(1);
        live[i] = live.back();
        live.pop_back();
      };
      barrier.arrive_and_wait();
      for (int it = 0; it < iterations; ++it) {
        if (live.size() == kMaxLive || (!live.empty() && uniform(rng, 0, 2) == 0)) {
          release_one(static_cast<std::size_t>(uniform(rng, 0, live.size() - 1)));
          continue;
        }
        const std::uint32_t c = static_cast<std::uint32_t>(uniform(rng, 0, 3));
        const std::uint64_t bytes = uniform(rng, c == 0 ? 0 : data_bytes(c - 1) + 1, data_bytes(c));
        std::uint32_t unit = 0;
        const AllocResult r = h.arena().allocate(bytes, unit);
        if (r == AllocResult::kExhausted) {
          exhausted.fetch_add(1, std::memory_order_relaxed);
          if (!live.empty()) release_one(0);
          continue;
        }
        if (r != AllocResult::kOk) {
          failures.fetch_add(1);
          continue;
        }
        std::span<std::byte> s = h.arena().resolve(unit);
        if (s.size() != data_bytes(c) || unit + (std::uint64_t{1} << c) > kUnits) {
          bad_spans.fetch_add(1);
          continue;
        }
        const std::uint64_t units = std::uint64_t{1} << c;
        for (std::uint64_t u = unit; u < unit + units; ++u) {
          if (unit_owner[u].exchange(me) != 0) overlaps.fetch_add(1);
        }
        const auto fill = static_cast<std::byte>(me * 16 + (it & 15));
        std::memset(s.data(), static_cast<int>(fill), s.size());
        live.push_back({unit, units, fill});
      }
      while (!live.empty()) release_one(live.size() - 1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0u);
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(bad_spans.load(), 0u);
  EXPECT_EQ(failures.load(), 0u);
  const std::uint64_t bumped = h.arena().bumped_units_approx();
  EXPECT_LE(bumped, kUnits);
  EXPECT_EQ(h.free_units_quiescent(), bumped) << "every unit cut must be back on a free stack";
  std::fprintf(stderr, "[ info     ] %llu units cut, %llu allocations found the area exhausted\n",
               static_cast<unsigned long long>(bumped), static_cast<unsigned long long>(exhausted.load()));
}

}  // namespace
}  // namespace taskring::ipc
