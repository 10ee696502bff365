// Ring (ipc/include/taskring/ipc/ring.h): single-thread behaviour, the cell
// protocol after a process died between its cell CAS and the head/tail hint
// update, and MPMC races with oracles. The race tests run their threads over
// one mapping in one process so ThreadSanitizer sees every access.
#include "taskring/ipc/ring.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ipc_test_util.h"
#include "taskring/ipc/segment.h"
#include "test_support.h"

namespace taskring::ipc {
namespace {

using taskring::ipc::test::AlignedBuffer;
using taskring::ipc::test::uniform;
using taskring::testing::SegmentGuard;
using taskring::testing::StartBarrier;
using taskring::testing::test_seed;
using taskring::testing::unique_segment;

#if defined(__SANITIZE_THREAD__)
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif

// A formatted ring in a zeroed aligned heap buffer.
class HeapRing {
 public:
  explicit HeapRing(std::uint64_t capacity) : buf_(ring_bytes(capacity)), capacity_(capacity) {
    Ring::format(control(), capacity);
  }
  RingControl* control() const { return buf_.as<RingControl>(); }
  RingCell* cells() const { return reinterpret_cast<RingCell*>(control() + 1); }
  Ring ring() const { return Ring(control(), capacity_); }

 private:
  AlignedBuffer buf_;
  std::uint64_t capacity_;
};

// The cell words of ring.h, written the way a push or pop CAS would: turn 2L+1
// is "full for lap L", 2L+2 "consumed for lap L".
std::uint64_t full_word(std::uint64_t pos, std::uint64_t capacity, std::uint32_t value) {
  const std::uint64_t turn = (pos / capacity) * 2 + 1;
  return (turn << 32) | value;
}
std::uint64_t consumed_word(std::uint64_t pos, std::uint64_t capacity, std::uint32_t value) {
  const std::uint64_t turn = (pos / capacity) * 2 + 2;
  return (turn << 32) | value;
}

// Simulates a producer killed right after its cell CAS for position `pos`:
// the cell holds the value, tail was not advanced.
void die_after_push_cas(HeapRing& r, std::uint64_t pos, std::uint64_t capacity, std::uint32_t value) {
  RingCell& cell = r.cells()[pos % capacity];
  std::uint64_t expected = (pos / capacity) * 2 << 32;  // empty for pos's lap (any old value bits)
  expected |= cell.word.load() & 0xFFFFFFFFu;
  ASSERT_EQ(cell.word.load(), expected) << "position " << pos << " is not the next empty cell";
  ASSERT_TRUE(cell.word.compare_exchange_strong(expected, full_word(pos, capacity, value)));
}

// Simulates a consumer killed right after its cell CAS for position `pos`:
// the cell is consumed, head was not advanced. Returns the value it took.
std::uint32_t die_after_pop_cas(HeapRing& r, std::uint64_t pos, std::uint64_t capacity) {
  RingCell& cell = r.cells()[pos % capacity];
  std::uint64_t w = cell.word.load();
  EXPECT_EQ(w >> 32, (pos / capacity) * 2 + 1) << "position " << pos << " is not full";
  const auto value = static_cast<std::uint32_t>(w);
  EXPECT_TRUE(cell.word.compare_exchange_strong(w, consumed_word(pos, capacity, value)));
  return value;
}

std::vector<std::uint32_t> drain(Ring& ring) {
  std::vector<std::uint32_t> out;
  std::uint32_t v = 0;
  while (ring.try_pop(v)) out.push_back(v);
  return out;
}

// ---- Single thread ---------------------------------------------------------

TEST(RingTest, TryPushFailsWhenFull) {
  HeapRing h(64);
  Ring ring = h.ring();
  for (std::uint32_t i = 0; i < 64; ++i) ASSERT_TRUE(ring.try_push(i)) << "push " << i;
  EXPECT_FALSE(ring.try_push(1000));
  EXPECT_FALSE(ring.try_push(1001));
  EXPECT_EQ(ring.size_approx(), 64u);
  // The refused values left no trace: one pop makes room for exactly one.
  std::uint32_t v = 0;
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(ring.try_push(64));
  EXPECT_FALSE(ring.try_push(65));
  std::vector<std::uint32_t> expected;
  for (std::uint32_t i = 1; i <= 64; ++i) expected.push_back(i);
  EXPECT_EQ(drain(ring), expected);
}

TEST(RingTest, TryPopFailsWhenEmpty) {
  HeapRing h(64);
  Ring ring = h.ring();
  std::uint32_t v = 0xDEADBEEF;
  EXPECT_FALSE(ring.try_pop(v));
  EXPECT_EQ(v, 0xDEADBEEFu) << "a failed pop must not write its output";
  ASSERT_TRUE(ring.try_push(7));
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 7u);
  v = 0xDEADBEEF;
  EXPECT_FALSE(ring.try_pop(v));
  EXPECT_EQ(v, 0xDEADBEEFu);
  EXPECT_EQ(ring.try_pop_batch(&v, 4), 0u);
}

TEST(RingTest, ZeroLengthBatchesDoNothing) {
  HeapRing h(64);
  Ring ring = h.ring();
  std::uint32_t v = 5;
  EXPECT_EQ(ring.try_push_batch(&v, 0), 0u);
  EXPECT_EQ(ring.tail_approx(), 0u);
  ASSERT_TRUE(ring.try_push(5));
  EXPECT_EQ(ring.try_pop_batch(&v, 0), 0u);
  EXPECT_EQ(ring.head_approx(), 0u);
  EXPECT_EQ(ring.size_approx(), 1u);
}

TEST(RingTest, CapacityIsTheConstructorArgument) {
  HeapRing h(64);
  EXPECT_EQ(h.ring().capacity(), 64u);
  HeapRing tiny(Ring::kMinCapacity);
  Ring t = tiny.ring();
  EXPECT_EQ(t.capacity(), Ring::kMinCapacity);
  EXPECT_TRUE(t.try_push(1));
  EXPECT_TRUE(t.try_push(2));
  EXPECT_FALSE(t.try_push(3));
}

TEST(RingTest, PopsInFifoOrderSingleThread) {
  HeapRing h(64);
  Ring ring = h.ring();
  // Values that look like turns or sentinels must come back unchanged.
  std::vector<std::uint32_t> in = {0, 1, 2, 3, 0xFFFFFFFFu, 0x80000000u, kNilIndex - 1, 42};
  for (std::uint32_t i = 0; in.size() < 64; ++i) in.push_back(i * 2654435761u);
  for (std::uint32_t v : in) ASSERT_TRUE(ring.try_push(v));
  EXPECT_EQ(drain(ring), in);
}

TEST(RingTest, WrapsAroundManyLaps) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  std::mt19937_64 rng(test_seed());
  std::uint32_t next_in = 0;
  std::uint32_t next_out = 0;
  // About 2000 laps with a fill level that keeps changing, so every cell
  // sees every turn parity with the ring at all fill levels.
  while (next_in < 2000 * kCap) {
    const auto n_push = static_cast<std::uint32_t>(uniform(rng, 0, kCap));
    for (std::uint32_t i = 0; i < n_push; ++i) {
      const bool full = next_in - next_out == kCap;
      ASSERT_EQ(ring.try_push(next_in), !full) << "at position " << next_in;
      if (!full) ++next_in;
    }
    const auto n_pop = static_cast<std::uint32_t>(uniform(rng, 0, kCap));
    for (std::uint32_t i = 0; i < n_pop; ++i) {
      std::uint32_t v = 0;
      const bool empty = next_in == next_out;
      ASSERT_EQ(ring.try_pop(v), !empty) << "at position " << next_out;
      if (!empty) {
        ASSERT_EQ(v, next_out);
        ++next_out;
      }
    }
    ASSERT_EQ(ring.tail_approx(), next_in);
    ASSERT_EQ(ring.head_approx(), next_out);
    ASSERT_EQ(ring.size_approx(), next_in - next_out);
  }
  // Turn of each cell is 2 * laps (+1 if full): the cell words follow the
  // documented format after thousands of laps.
  for (std::uint64_t p = next_out; p < next_out + kCap; ++p) {
    const std::uint64_t turn = h.cells()[p % kCap].word.load() >> 32;
    const std::uint64_t expected = p < next_in ? (p / kCap) * 2 + 1 : (p / kCap) * 2;
    EXPECT_EQ(turn, expected) << "cell for position " << p;
  }
}

TEST(RingTest, PushBatchPushesOnlyTheFrontWhenNearlyFull) {
  HeapRing h(64);
  Ring ring = h.ring();
  for (std::uint32_t i = 0; i < 60; ++i) ASSERT_TRUE(ring.try_push(i));
  std::array<std::uint32_t, 10> batch{};
  for (std::uint32_t i = 0; i < batch.size(); ++i) batch[i] = 100 + i;
  EXPECT_EQ(ring.try_push_batch(batch.data(), batch.size()), 4u);
  EXPECT_EQ(ring.try_push_batch(batch.data(), batch.size()), 0u);
  EXPECT_EQ(ring.size_approx(), 64u);
  std::vector<std::uint32_t> expected;
  for (std::uint32_t i = 0; i < 60; ++i) expected.push_back(i);
  for (std::uint32_t i = 0; i < 4; ++i) expected.push_back(100 + i);
  EXPECT_EQ(drain(ring), expected);
}

TEST(RingTest, PopBatchReturnsWhatIsThereWhenNearlyEmpty) {
  HeapRing h(64);
  Ring ring = h.ring();
  for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(ring.try_push(10 + i));
  std::array<std::uint32_t, 10> out{};
  out.fill(0xEEEEEEEEu);
  ASSERT_EQ(ring.try_pop_batch(out.data(), out.size()), 3u);
  EXPECT_EQ(out[0], 10u);
  EXPECT_EQ(out[1], 11u);
  EXPECT_EQ(out[2], 12u);
  for (std::size_t i = 3; i < out.size(); ++i) EXPECT_EQ(out[i], 0xEEEEEEEEu) << "slot " << i << " written";
  EXPECT_EQ(ring.try_pop_batch(out.data(), out.size()), 0u);
}

TEST(RingTest, BatchesCrossTheWrapPoint) {
  HeapRing h(64);
  Ring ring = h.ring();
  std::vector<std::uint32_t> scratch(64);
  // Move head and tail to 50 so batches straddle the cell 63 -> 0 boundary.
  for (std::uint32_t i = 0; i < 50; ++i) ASSERT_TRUE(ring.try_push(i));
  ASSERT_EQ(ring.try_pop_batch(scratch.data(), 50), 50u);
  std::vector<std::uint32_t> in(64);
  for (std::uint32_t i = 0; i < 64; ++i) in[i] = 1000 + i;
  ASSERT_EQ(ring.try_push_batch(in.data(), in.size()), 64u);
  ASSERT_EQ(ring.try_pop_batch(scratch.data(), 64), 64u);
  EXPECT_EQ(scratch, in);
  EXPECT_EQ(ring.head_approx(), 114u);
  EXPECT_EQ(ring.tail_approx(), 114u);
}

TEST(RingTest, SizeApproxAndNonemptyApproxFollowPushesAndPops) {
  HeapRing h(64);
  Ring ring = h.ring();
  EXPECT_EQ(ring.size_approx(), 0u);
  EXPECT_FALSE(ring.nonempty_approx());
  ASSERT_TRUE(ring.try_push(1));
  EXPECT_EQ(ring.size_approx(), 1u);
  EXPECT_TRUE(ring.nonempty_approx());
  for (std::uint32_t i = 0; i < 63; ++i) ASSERT_TRUE(ring.try_push(i));
  EXPECT_EQ(ring.size_approx(), 64u);
  EXPECT_TRUE(ring.nonempty_approx());
  std::vector<std::uint32_t> out(64);
  ASSERT_EQ(ring.try_pop_batch(out.data(), 63), 63u);
  EXPECT_EQ(ring.size_approx(), 1u);
  EXPECT_TRUE(ring.nonempty_approx());
  ASSERT_EQ(ring.try_pop_batch(out.data(), 1), 1u);
  EXPECT_EQ(ring.size_approx(), 0u);
  EXPECT_FALSE(ring.nonempty_approx());
}

TEST(RingTest, FormatEmptiesAUsedRing) {
  HeapRing h(64);
  Ring ring = h.ring();
  for (std::uint32_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(ring.try_push(i));
    if (i % 3 != 0) {
      std::uint32_t v = 0;
      ASSERT_TRUE(ring.try_pop(v));
    }
  }
  Ring::format(h.control(), 64);
  EXPECT_EQ(h.control()->capacity, 64u);
  EXPECT_EQ(ring.head_approx(), 0u);
  EXPECT_EQ(ring.tail_approx(), 0u);
  std::uint32_t v = 0;
  EXPECT_FALSE(ring.try_pop(v));
  for (std::uint32_t i = 0; i < 64; ++i) ASSERT_TRUE(ring.try_push(i));
  EXPECT_FALSE(ring.try_push(64));
}

TEST(RingTest, TwoMappingsOfOneSegmentShareTheRing) {
  constexpr std::uint64_t kCap = 64;
  SegmentGuard guard(unique_segment("ring"));
  CreateOptions opts;
  opts.layout_version = 1;
  opts.sections = {{1, 1, ring_bytes(kCap)}};
  auto created = Segment::create(guard.name(), opts, [](Segment& s) {
    Ring::format(reinterpret_cast<RingControl*>(s.section_bytes(1).data()), kCap);
    return Status::ok();
  });
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  auto attached = Segment::attach(guard.name(), 1);
  ASSERT_TRUE(attached.is_ok()) << attached.status().to_string();
  ASSERT_NE(created->base(), attached->base()) << "expected two distinct mappings";
  Ring a(reinterpret_cast<RingControl*>(created->section_bytes(1).data()), kCap);
  Ring b(reinterpret_cast<RingControl*>(attached->section_bytes(1).data()), kCap);
  for (std::uint32_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(a.try_push(i));
    std::uint32_t v = 0;
    ASSERT_TRUE(b.try_pop(v));
    ASSERT_EQ(v, i);
  }
  ASSERT_TRUE(b.try_push(7));
  EXPECT_EQ(a.size_approx(), 1u);
  std::uint32_t v = 0;
  ASSERT_TRUE(a.try_pop(v));
  EXPECT_EQ(v, 7u);
}

// ---- Process death -----------------------------------------------------------

TEST(RingTest, ProducerDeadAfterCellCasDoesNotBlockOthers) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  // Put the positions just before a lap boundary: a few laps in, head=tail=60.
  std::uint32_t v = 0;
  for (std::uint32_t i = 0; i < 3 * kCap + 60; ++i) {
    ASSERT_TRUE(ring.try_push(i));
    ASSERT_TRUE(ring.try_pop(v));
  }
  const std::uint64_t pos = ring.tail_approx();
  ASSERT_EQ(pos, 3 * kCap + 60);
  // The dead producer completed its cell CAS for `pos` but never advanced tail.
  die_after_push_cas(h, pos, kCap, 0xABCD);
  ASSERT_EQ(ring.tail_approx(), pos) << "tail must lag for this test to mean anything";
  // Others push past the lagging hint and repair it.
  ASSERT_TRUE(ring.try_push(1));
  EXPECT_EQ(ring.tail_approx(), pos + 2);
  // The ring holds the dead producer's value plus ours: capacity counts both.
  for (std::uint32_t i = 2; i < kCap; ++i) ASSERT_TRUE(ring.try_push(i)) << "push " << i;
  EXPECT_FALSE(ring.try_push(999)) << "the dead producer's cell must count as full";
  std::vector<std::uint32_t> expected = {0xABCD};
  for (std::uint32_t i = 1; i < kCap; ++i) expected.push_back(i);
  EXPECT_EQ(drain(ring), expected);
}

TEST(RingTest, ProducerDeadAfterCellCasOnEmptyRingIsPoppedFirst) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  die_after_push_cas(h, 0, kCap, 77);
  ASSERT_EQ(ring.tail_approx(), 0u);
  // A consumer does not need tail: the cell word alone says it is full.
  EXPECT_TRUE(ring.nonempty_approx());
  std::uint32_t v = 0;
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 77u);
  EXPECT_FALSE(ring.try_pop(v));
  // Now head (1) is past the lagging tail (0); pushes still go to position 1.
  ASSERT_TRUE(ring.try_push(78));
  EXPECT_EQ(ring.tail_approx(), 2u);
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 78u);
}

TEST(RingTest, ConsumerDeadAfterCellCasDoesNotBlockOthers) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  for (std::uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(ring.try_push(i));
  // The dead consumer took position 0 but never advanced head.
  EXPECT_EQ(die_after_pop_cas(h, 0, kCap), 0u);
  ASSERT_EQ(ring.head_approx(), 0u);
  std::uint32_t v = 0;
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 1u) << "the consumed value must never be popped again";
  EXPECT_EQ(ring.head_approx(), 2u) << "the next pop repairs head";
  // The consumed cell is free again: 8 values remain, so 56 more fit.
  for (std::uint32_t i = 0; i < kCap - 8; ++i) ASSERT_TRUE(ring.try_push(100 + i)) << "push " << i;
  EXPECT_FALSE(ring.try_push(999));
  std::vector<std::uint32_t> expected;
  for (std::uint32_t i = 2; i < 10; ++i) expected.push_back(i);
  for (std::uint32_t i = 0; i < kCap - 8; ++i) expected.push_back(100 + i);
  EXPECT_EQ(drain(ring), expected);
}

TEST(RingTest, ConsumerDeadAfterCellCasThenRingRefillsThroughItsCell) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  ASSERT_TRUE(ring.try_push(5));
  EXPECT_EQ(die_after_pop_cas(h, 0, kCap), 5u);
  // No live consumer ran since: head still 0. Producers fill the whole ring,
  // reusing the dead consumer's cell for position kCap.
  for (std::uint32_t i = 0; i < kCap; ++i) ASSERT_TRUE(ring.try_push(i)) << "push " << i;
  EXPECT_FALSE(ring.try_push(999));
  ASSERT_EQ(ring.head_approx(), 0u);
  EXPECT_EQ(ring.size_approx(), kCap);
  std::vector<std::uint32_t> expected;
  for (std::uint32_t i = 0; i < kCap; ++i) expected.push_back(i);
  EXPECT_EQ(drain(ring), expected);
}

// nonempty_approx must not stop at a cell that is two or more turns ahead of
// "empty for head". When head lags a full lap behind a refilled cell (a
// consumer died, or was preempted, after its cell CAS and before raise_to; or
// a batch pop is in flight), that cell is d == 3 ahead: full for the next
// lap. Commit 10a2d7e's ipc/src/ring.cc (`if (d != 2) return false;`)
// reported "empty" then while the ring was full, so a worker's park re-check
// (engine/src/worker.cc has_work_approx) went to sleep with work queued.
TEST(RingTest, NonemptyApproxSeesValuesWhileHeadLagsALap) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  ASSERT_TRUE(ring.try_push(5));
  EXPECT_EQ(die_after_pop_cas(h, 0, kCap), 5u);
  for (std::uint32_t i = 0; i < kCap; ++i) ASSERT_TRUE(ring.try_push(i));
  ASSERT_EQ(ring.head_approx(), 0u);
  ASSERT_EQ(ring.size_approx(), kCap);
  EXPECT_TRUE(ring.nonempty_approx()) << "the ring holds " << kCap << " values";
  std::uint32_t v = 0;
  ASSERT_TRUE(ring.try_pop(v)) << "try_pop agrees the ring is not empty";
  EXPECT_EQ(v, 0u);
}

// The same state without any death: a consumer's batch pop took positions
// [0, 8) and has not reached its raise_to yet; producers refill past cell 0.
TEST(RingTest, NonemptyApproxSeesValuesWhileABatchPopIsInFlight) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  for (std::uint32_t i = 0; i < kCap; ++i) ASSERT_TRUE(ring.try_push(i));
  for (std::uint64_t p = 0; p < 8; ++p) die_after_pop_cas(h, p, kCap);
  ASSERT_TRUE(ring.try_push(100));  // position 64, cell 0
  ASSERT_EQ(ring.head_approx(), 0u);
  EXPECT_TRUE(ring.nonempty_approx()) << "the ring holds 57 values";
}

// Head two laps behind: the refilled cell is d == 5 ahead.
TEST(RingTest, NonemptyApproxSeesValuesWhileHeadLagsTwoLaps) {
  constexpr std::uint64_t kCap = 4;
  HeapRing h(kCap);
  Ring ring = h.ring();
  for (std::uint64_t p = 0; p < 2 * kCap; ++p) {
    ASSERT_TRUE(ring.try_push(static_cast<std::uint32_t>(p)));
    die_after_pop_cas(h, p, kCap);
  }
  ASSERT_TRUE(ring.try_push(42));  // position 8, cell 0
  ASSERT_EQ(ring.head_approx(), 0u);
  EXPECT_TRUE(ring.nonempty_approx());
  std::uint32_t v = 0;
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 42u);
  EXPECT_FALSE(ring.nonempty_approx());
}

// The other side: a lagging head over cells that are all consumed is empty.
TEST(RingTest, NonemptyApproxIsFalseWhenHeadLagsOverAnEmptyRing) {
  constexpr std::uint64_t kCap = 4;
  HeapRing h(kCap);
  Ring ring = h.ring();
  for (std::uint64_t p = 0; p < 2 * kCap; ++p) {
    ASSERT_TRUE(ring.try_push(static_cast<std::uint32_t>(p)));
    die_after_pop_cas(h, p, kCap);
  }
  ASSERT_EQ(ring.head_approx(), 0u);
  EXPECT_FALSE(ring.nonempty_approx());
  std::uint32_t v = 0;
  EXPECT_FALSE(ring.try_pop(v));
}

// ---- Races -------------------------------------------------------------------

struct MpmcConfig {
  int producers = 4;
  int consumers = 4;
  std::uint32_t per_producer = 0;
  std::size_t max_batch = 8;
};

// Waits after a failed try on a full or empty ring: yield a few times, then
// sleep briefly. Yield alone collapses on a loaded machine: each yield hands
// the core to another process for a whole time slice, while a short sleep
// wakes with the scheduler's credit for having slept.
void retry_pause(int& failures) {
  if (++failures < 16) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

// P producers push (producer << 24 | seq), C consumers pop with a random mix
// of single pops and batches. Oracles: every value popped exactly once, each
// consumer sees each producer's sequence strictly increasing, sums conserved.
void run_mpmc(Ring ring, const MpmcConfig& cfg, std::uint64_t seed) {
  ASSERT_LT(cfg.producers, 256);
  ASSERT_LT(cfg.per_producer, 1u << 24);
  const std::uint64_t total = std::uint64_t{cfg.per_producer} * static_cast<std::uint64_t>(cfg.producers);
  StartBarrier barrier(cfg.producers + cfg.consumers);
  std::vector<std::atomic<std::uint8_t>> seen(total);
  std::atomic<std::uint64_t> popped{0};
  std::atomic<std::uint64_t> pushed_sum{0};
  std::atomic<std::uint64_t> popped_sum{0};
  std::atomic<std::uint64_t> bad_values{0};
  std::atomic<std::uint64_t> order_violations{0};
  std::atomic<std::uint64_t> duplicates{0};
  std::atomic<std::uint64_t> full_refusals{0};
  std::atomic<int> producers_done{0};
  std::atomic<bool> timed_out{false};
  // A ring that wrongly stays full would leave producers spinning forever:
  // stop well before the ctest timeout and fail with the counts instead.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);

  std::vector<std::thread> threads;
  for (int p = 0; p < cfg.producers; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937_64 rng(seed * 1000 + static_cast<std::uint64_t>(p));
      std::vector<std::uint32_t> buf(cfg.max_batch);
      std::uint64_t sum = 0;
      std::uint32_t seq = 0;
      int failures = 0;
      barrier.arrive_and_wait();
      while (seq < cfg.per_producer) {
        if (std::chrono::steady_clock::now() > deadline) {
          timed_out.store(true);
          break;
        }
        const std::size_t want =
            std::min<std::size_t>(uniform(rng, 1, cfg.max_batch), cfg.per_producer - seq);
        for (std::size_t i = 0; i < want; ++i) {
          buf[i] = (static_cast<std::uint32_t>(p) << 24) | (seq + static_cast<std::uint32_t>(i));
        }
        const std::size_t got = want == 1 ? (ring.try_push(buf[0]) ? 1 : 0) : ring.try_push_batch(buf.data(), want);
        for (std::size_t i = 0; i < got; ++i) sum += buf[i];
        seq += static_cast<std::uint32_t>(got);
        if (got < want) {
          full_refusals.fetch_add(1, std::memory_order_relaxed);
          retry_pause(failures);
        } else {
          failures = 0;
        }
      }
      pushed_sum.fetch_add(sum);
      producers_done.fetch_add(1);
    });
  }
  for (int c = 0; c < cfg.consumers; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(seed * 1000 + 500 + static_cast<std::uint64_t>(c));
      std::vector<std::uint32_t> buf(cfg.max_batch);
      std::vector<std::int64_t> last(static_cast<std::size_t>(cfg.producers), -1);
      std::uint64_t sum = 0;
      int failures = 0;
      barrier.arrive_and_wait();
      // Runs until every producer has finished and the ring is then found
      // empty: a lost value shows up as missing, not as a hang.
      for (;;) {
        const bool producers_finished = producers_done.load() == cfg.producers;
        const std::size_t want = uniform(rng, 0, 1) == 0 ? 1 : uniform(rng, 1, cfg.max_batch);
        const std::size_t got = want == 1 ? (ring.try_pop(buf[0]) ? 1 : 0) : ring.try_pop_batch(buf.data(), want);
        if (got == 0) {
          if (producers_finished) break;
          if (std::chrono::steady_clock::now() > deadline) {
            timed_out.store(true);
            break;
          }
          retry_pause(failures);
          continue;
        }
        failures = 0;
        for (std::size_t i = 0; i < got; ++i) {
          const std::uint32_t v = buf[i];
          const std::uint32_t producer = v >> 24;
          const std::uint32_t seq = v & 0xFFFFFFu;
          sum += v;
          if (producer >= static_cast<std::uint32_t>(cfg.producers) || seq >= cfg.per_producer) {
            bad_values.fetch_add(1);
            continue;
          }
          if (static_cast<std::int64_t>(seq) <= last[producer]) order_violations.fetch_add(1);
          last[producer] = seq;
          if (seen[std::uint64_t{producer} * cfg.per_producer + seq].fetch_add(1) != 0) duplicates.fetch_add(1);
        }
        popped.fetch_add(got);
      }
      popped_sum.fetch_add(sum);
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_FALSE(timed_out.load()) << "popped " << popped.load() << " of " << total;
  EXPECT_EQ(bad_values.load(), 0u);
  EXPECT_EQ(duplicates.load(), 0u);
  EXPECT_EQ(order_violations.load(), 0u);
  EXPECT_EQ(popped.load(), total);
  std::uint64_t missing = 0;
  for (auto& s : seen) missing += s.load() == 0 ? 1 : 0;
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(pushed_sum.load(), popped_sum.load());
  std::uint32_t v = 0;
  EXPECT_FALSE(ring.try_pop(v)) << "left over: " << v;
  EXPECT_FALSE(ring.nonempty_approx());
  EXPECT_EQ(ring.size_approx(), 0u);
  std::fprintf(stderr, "[ info     ] %llu values, %llu pushes refused for a full ring\n",
               static_cast<unsigned long long>(total), static_cast<unsigned long long>(full_refusals.load()));
}

TEST(RingStressTest, MpmcEveryValueOnceInProducerOrder) {
  HeapRing h(64);
  MpmcConfig cfg;
  cfg.per_producer = kUnderTsan ? 60'000 : 500'000;
  run_mpmc(h.ring(), cfg, test_seed());
}

TEST(RingStressTest, MpmcOnMinimumCapacity) {
  HeapRing h(Ring::kMinCapacity);
  MpmcConfig cfg;
  cfg.producers = 3;
  cfg.consumers = 3;
  cfg.max_batch = 3;
  cfg.per_producer = kUnderTsan ? 30'000 : 100'000;
  run_mpmc(h.ring(), cfg, test_seed());
}

TEST(RingStressTest, MpmcOverASegmentMapping) {
  constexpr std::uint64_t kCap = 64;
  SegmentGuard guard(unique_segment("ring"));
  CreateOptions opts;
  opts.layout_version = 1;
  opts.sections = {{1, 1, ring_bytes(kCap)}};
  auto seg = Segment::create(guard.name(), opts, [](Segment& s) {
    Ring::format(reinterpret_cast<RingControl*>(s.section_bytes(1).data()), kCap);
    return Status::ok();
  });
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  MpmcConfig cfg;
  cfg.producers = 2;
  cfg.consumers = 2;
  cfg.per_producer = kUnderTsan ? 60'000 : 400'000;
  run_mpmc(Ring(reinterpret_cast<RingControl*>(seg->section_bytes(1).data()), kCap), cfg, test_seed());
}

// Producers that die after their cell CAS, mixed into live traffic: the
// survivors keep going and every dead producer's value is still delivered.
TEST(RingStressTest, SimulatedDeadProducersDoNotStallLiveTraffic) {
  constexpr std::uint64_t kCap = 64;
  HeapRing h(kCap);
  Ring ring = h.ring();
  const std::uint32_t rounds = kUnderTsan ? 20'000 : 200'000;
  StartBarrier barrier(2);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> got_sum{0};
  std::atomic<std::uint64_t> got_count{0};
  std::thread consumer([&] {
    barrier.arrive_and_wait();
    std::uint64_t sum = 0;
    std::uint64_t n = 0;
    std::uint32_t v = 0;
    for (;;) {
      if (ring.try_pop(v)) {
        sum += v;
        ++n;
      } else if (done.load()) {
        if (!ring.try_pop(v)) break;
        sum += v;
        ++n;
      } else {
        std::this_thread::yield();
      }
    }
    got_sum.store(sum);
    got_count.store(n);
  });
  barrier.arrive_and_wait();
  std::uint64_t sent_sum = 0;
  std::uint64_t sent = 0;
  std::uint64_t dead = 0;
  for (std::uint32_t r = 1; r <= rounds; ++r) {
    // A "dead" producer: the raw cell CAS at the tail hint position, if that
    // cell is empty for its lap, and no raise of tail. Otherwise a live push.
    const std::uint64_t pos = ring.tail_approx();
    RingCell& cell = h.cells()[pos % kCap];
    std::uint64_t w = cell.word.load();
    const bool empty_for_pos = (w >> 32) == (pos / kCap) * 2;
    if (r % 3 == 0 && empty_for_pos && cell.word.compare_exchange_strong(w, full_word(pos, kCap, r))) {
      sent_sum += r;
      ++sent;
      ++dead;
      continue;
    }
    while (!ring.try_push(r)) std::this_thread::yield();
    sent_sum += r;
    ++sent;
  }
  done.store(true);
  consumer.join();
  // Round 3 always finds the cell at tail empty (at most two values are in
  // the ring then), so at least one producer "died".
  EXPECT_GT(dead, 0u);
  EXPECT_EQ(got_count.load(), sent);
  EXPECT_EQ(got_sum.load(), sent_sum);
}

}  // namespace
}  // namespace taskring::ipc
