// Journal (ipc/include/taskring/ipc/journal.h): reservations and their
// limits, the cell states a reader can meet (including the words a dead
// writer or a dead reader leaves, crafted with Journal::pack), skipping,
// the durable and space waits, and a multi-writer race with an oracle. The
// race runs its threads over one buffer in one process so ThreadSanitizer
// sees every access.
#include "taskring/ipc/journal.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ipc_test_util.h"
#include "taskring/ipc/futex.h"
#include "test_support.h"

namespace taskring::ipc {
namespace {

using taskring::ipc::test::AlignedBuffer;
using taskring::ipc::test::uniform;
using taskring::testing::StartBarrier;
using taskring::testing::test_seed;

#if defined(__SANITIZE_THREAD__)
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif

// A bound for waits that only a broken journal reaches.
constexpr std::chrono::seconds kHangTimeout{30};
constexpr std::int64_t kLongWaitNs = 60'000'000'000;  // longer than kHangTimeout: only a wake ends it in time

using Body = std::array<std::uint8_t, kJournalBodyBytes>;

// A formatted journal in a zeroed aligned heap buffer.
class HeapJournal {
 public:
  explicit HeapJournal(std::uint64_t capacity) : buf_(journal_bytes(capacity)), capacity_(capacity) {
    Journal::format(control(), capacity);
  }
  JournalControl* control() const { return buf_.as<JournalControl>(); }
  JournalCell* cells() const { return reinterpret_cast<JournalCell*>(control() + 1); }
  JournalCell& cell(std::uint64_t pos) const { return cells()[pos % capacity_]; }
  Journal journal() const { return Journal(control(), capacity_); }

 private:
  AlignedBuffer buf_;
  std::uint64_t capacity_;
};

Body pattern(std::uint64_t seed) {
  Body b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(seed * 131 + i * 7 + 1);
  return b;
}

// Reserves one position and writes `body` there; returns the position.
std::uint64_t append(Journal& j, const Body& body) {
  std::uint64_t pos = 0;
  EXPECT_TRUE(j.try_reserve(1, pos));
  EXPECT_TRUE(j.write(pos, body.data(), body.size()));
  return pos;
}

template <typename Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout = kHangTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// ---- Reservations ------------------------------------------------------------

TEST(JournalTest, TryReserveFailsWhenCapacityIsUsedUp) {
  HeapJournal h(64);
  Journal j = h.journal();
  for (std::uint64_t i = 0; i < 64; ++i) {
    std::uint64_t pos = ~0ull;
    ASSERT_TRUE(j.try_reserve(1, pos)) << "reservation " << i;
    EXPECT_EQ(pos, i);
  }
  std::uint64_t pos = 12345;
  EXPECT_FALSE(j.try_reserve(1, pos));
  EXPECT_EQ(pos, 12345u) << "a failed reservation must not write its output";
  EXPECT_EQ(j.tail_approx(), 64u);
}

TEST(JournalTest, TryReserveSucceedsAgainAfterRelease) {
  HeapJournal h(64);
  Journal j = h.journal();
  for (std::uint64_t i = 0; i < 64; ++i) append(j, pattern(i));
  std::uint64_t pos = 0;
  ASSERT_FALSE(j.try_reserve(1, pos));
  // The reader consumes two records and frees their cells: exactly two fit.
  j.release(2);
  EXPECT_EQ(j.head(), 2u);
  ASSERT_TRUE(j.try_reserve(1, pos));
  EXPECT_EQ(pos, 64u);
  ASSERT_TRUE(j.try_reserve(1, pos));
  EXPECT_EQ(pos, 65u);
  EXPECT_FALSE(j.try_reserve(1, pos));
  // The new positions live in the freed cells, one lap on, and can be written.
  Body b = pattern(64);
  EXPECT_TRUE(j.write(64, b.data(), b.size()));
  EXPECT_EQ(Journal::lap_of(h.cell(64).word.load()), 1u);
  EXPECT_EQ(Journal::state_of(h.cell(64).word.load()), Journal::kCommitted);
  EXPECT_EQ(j.lost(), 0u);
}

TEST(JournalTest, BatchReservationsAreContiguous) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::uint64_t a = 0, b = 0, c = 0;
  ASSERT_TRUE(j.try_reserve(3, a));
  ASSERT_TRUE(j.try_reserve(5, b));
  ASSERT_TRUE(j.try_reserve(1, c));
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(b, 3u);
  EXPECT_EQ(c, 8u);
  EXPECT_EQ(j.tail_approx(), 9u);
  // A batch of the whole capacity fits only in an empty journal.
  HeapJournal h2(64);
  Journal j2 = h2.journal();
  ASSERT_TRUE(j2.try_reserve(64, a));
  EXPECT_EQ(a, 0u);
  EXPECT_FALSE(j2.try_reserve(1, a));
}

TEST(JournalTest, BatchLargerThanFreeCellsReservesNothing) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(60, pos));
  std::uint64_t out = 777;
  EXPECT_FALSE(j.try_reserve(5, out));
  EXPECT_EQ(out, 777u);
  EXPECT_EQ(j.tail_approx(), 60u) << "a refused batch must not move tail";
  // The four free cells are still all there.
  ASSERT_TRUE(j.try_reserve(4, out));
  EXPECT_EQ(out, 60u);
  EXPECT_FALSE(j.try_reserve(1, out));
}

// ---- Peek --------------------------------------------------------------------

TEST(JournalTest, PeekOfAnUnreservedPositionIsEmpty) {
  HeapJournal h(64);
  Journal j = h.journal();
  Body out{};
  std::uint32_t pid = 99;
  EXPECT_EQ(j.peek(0, out.data(), pid), Journal::Peek::kEmpty);
  EXPECT_EQ(pid, 0u);
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(1, pos));
  EXPECT_EQ(j.peek(1, out.data(), pid), Journal::Peek::kEmpty) << "position 1 is not reserved yet";
}

TEST(JournalTest, PeekOfAReservedUnwrittenPositionIsReserved) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(2, pos));
  Body out{};
  std::uint32_t pid = 99;
  EXPECT_EQ(j.peek(0, out.data(), pid), Journal::Peek::kReserved);
  EXPECT_EQ(pid, 0u);
  EXPECT_EQ(j.peek(1, out.data(), pid), Journal::Peek::kReserved);
}

TEST(JournalTest, WriteThenPeekReturnsTheExactBytes) {
  HeapJournal h(64);
  Journal j = h.journal();
  const Body in = pattern(5);
  const std::uint64_t pos = append(j, in);
  Body out{};
  std::uint32_t pid = 99;
  ASSERT_EQ(j.peek(pos, out.data(), pid), Journal::Peek::kRecord);
  EXPECT_EQ(out, in);
  EXPECT_EQ(pid, 0u);
  EXPECT_EQ(Journal::state_of(h.cell(pos).word.load()), Journal::kCommitted);
}

TEST(JournalTest, ShortBodyIsZeroPadded) {
  HeapJournal h(64);
  Journal j = h.journal();
  // First lap: fill cell 0 with a full pattern, consume it, then write a
  // short body into the same cell one lap on: no byte of the old one stays.
  for (std::uint64_t i = 0; i < 64; ++i) append(j, pattern(i));
  j.release(1);
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(1, pos));
  ASSERT_EQ(pos, 64u);
  const char shortbody[] = "abc";
  ASSERT_TRUE(j.write(pos, shortbody, 3));
  Body out{};
  out.fill(0xEE);
  std::uint32_t pid = 0;
  ASSERT_EQ(j.peek(pos, out.data(), pid), Journal::Peek::kRecord);
  Body expected{};
  std::memcpy(expected.data(), shortbody, 3);
  EXPECT_EQ(out, expected);
}

TEST(JournalTest, PeekOfACellBeingWrittenShowsTheWriterPid) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(1, pos));
  // What write() leaves between its two CASes: the writer's pid in the word.
  h.cell(pos).word.store(Journal::pack(0, Journal::kWriting, 4321));
  Body out{};
  out.fill(0xEE);
  std::uint32_t pid = 0;
  EXPECT_EQ(j.peek(pos, out.data(), pid), Journal::Peek::kWriting);
  EXPECT_EQ(pid, 4321u);
  Body untouched{};
  untouched.fill(0xEE);
  EXPECT_EQ(out, untouched) << "a body is copied out only once committed";
}

TEST(JournalTest, PackRoundTripsItsFields) {
  const std::uint64_t w = Journal::pack((std::uint64_t{1} << 40) - 1, Journal::kSkipped, (1u << 22) - 1);
  EXPECT_EQ(Journal::lap_of(w), (std::uint64_t{1} << 40) - 1);
  EXPECT_EQ(Journal::state_of(w), Journal::kSkipped);
  EXPECT_EQ(Journal::pid_of(w), (1u << 22) - 1);
  const std::uint64_t v = Journal::pack(7, Journal::kWriting, 12);
  EXPECT_EQ(Journal::lap_of(v), 7u);
  EXPECT_EQ(Journal::state_of(v), Journal::kWriting);
  EXPECT_EQ(Journal::pid_of(v), 12u);
}

// ---- Skip ----------------------------------------------------------------------

TEST(JournalTest, SkipOfAReservedCellMakesTheLaterWriteFail) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(1, pos));
  ASSERT_TRUE(j.skip(pos));
  Body out{};
  std::uint32_t pid = 0;
  EXPECT_EQ(j.peek(pos, out.data(), pid), Journal::Peek::kConsumed);
  EXPECT_EQ(j.lost(), 0u);
  const Body in = pattern(3);
  EXPECT_FALSE(j.write(pos, in.data(), in.size()));
  EXPECT_EQ(j.lost(), 1u);
  // The late writer did not turn the skipped cell into a record.
  EXPECT_EQ(j.peek(pos, out.data(), pid), Journal::Peek::kConsumed);
  EXPECT_EQ(Journal::state_of(h.cell(pos).word.load()), Journal::kSkipped);
}

TEST(JournalTest, SkipOfACommittedCellFails) {
  HeapJournal h(64);
  Journal j = h.journal();
  const Body in = pattern(8);
  const std::uint64_t pos = append(j, in);
  EXPECT_FALSE(j.skip(pos));
  Body out{};
  std::uint32_t pid = 0;
  ASSERT_EQ(j.peek(pos, out.data(), pid), Journal::Peek::kRecord);
  EXPECT_EQ(out, in);
  EXPECT_EQ(j.lost(), 0u);
}

TEST(JournalTest, SkipOfACellADeadWriterWasWritingSucceeds) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(2, pos));
  h.cell(0).word.store(Journal::pack(0, Journal::kWriting, 4321));
  EXPECT_TRUE(j.skip(0));
  Body out{};
  std::uint32_t pid = 0;
  EXPECT_EQ(j.peek(0, out.data(), pid), Journal::Peek::kConsumed);
  // The next position is untouched by the skip.
  EXPECT_EQ(j.peek(1, out.data(), pid), Journal::Peek::kReserved);
  // A skipped cell can be freed like a consumed one, and a writer one lap
  // on gets it.
  const Body in = pattern(1);
  ASSERT_TRUE(j.write(1, in.data(), in.size()));
  j.release(2);
  for (std::uint64_t i = 2; i < 66; ++i) append(j, pattern(i));
  ASSERT_EQ(j.peek(64, out.data(), pid), Journal::Peek::kRecord);
  EXPECT_EQ(out, pattern(64));
}

TEST(JournalTest, SkipOfAPositionOfAnotherLapFails) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(1, pos));
  // Position 64 shares cell 0, but its lap has not begun: not skippable.
  EXPECT_FALSE(j.skip(64));
  EXPECT_EQ(Journal::state_of(h.cell(0).word.load()), Journal::kEmpty);
  EXPECT_EQ(Journal::lap_of(h.cell(0).word.load()), 0u);
}

// ---- A reader that died between freeing cells and raising head --------------------

TEST(JournalTest, CellsFreedByADeadReaderAreReportedConsumed) {
  HeapJournal h(64);
  Journal j = h.journal();
  for (std::uint64_t i = 0; i < 3; ++i) append(j, pattern(i));
  // What release(2) stores before it raises head: the next lap's empty word.
  // The reader died there; head stays 0.
  h.cell(0).word.store(Journal::pack(1, Journal::kEmpty, 0));
  h.cell(1).word.store(Journal::pack(1, Journal::kEmpty, 0));
  ASSERT_EQ(j.head(), 0u);
  Body out{};
  std::uint32_t pid = 0;
  EXPECT_EQ(j.peek(0, out.data(), pid), Journal::Peek::kConsumed);
  EXPECT_EQ(j.peek(1, out.data(), pid), Journal::Peek::kConsumed);
  ASSERT_EQ(j.peek(2, out.data(), pid), Journal::Peek::kRecord);
  EXPECT_EQ(out, pattern(2));
  // The next reader steps over them and frees up to 3: writers may now use
  // cells 0..2 one lap on, and the cells freed twice are in the right lap.
  j.release(3);
  EXPECT_EQ(j.head(), 3u);
  for (std::uint64_t i = 3; i < 67; ++i) append(j, pattern(i));
  for (std::uint64_t p = 64; p < 67; ++p) {
    ASSERT_EQ(j.peek(p, out.data(), pid), Journal::Peek::kRecord) << "position " << p;
    EXPECT_EQ(out, pattern(p));
  }
  std::uint64_t pos = 0;
  EXPECT_FALSE(j.try_reserve(1, pos));
}

// ---- Laps ------------------------------------------------------------------------

TEST(JournalTest, WrapsManyLapsSingleThread) {
  constexpr std::uint64_t kCap = 64;
  HeapJournal h(kCap);
  Journal j = h.journal();
  std::mt19937_64 rng(test_seed());
  std::uint64_t next_in = 0, next_out = 0;
  Body out{};
  std::uint32_t pid = 0;
  while (next_in < 500 * kCap) {
    const std::uint64_t n_in = uniform(rng, 0, kCap);
    for (std::uint64_t i = 0; i < n_in; ++i) {
      const bool full = next_in - next_out == kCap;
      std::uint64_t pos = 0;
      ASSERT_EQ(j.try_reserve(1, pos), !full) << "at position " << next_in;
      if (full) break;
      ASSERT_EQ(pos, next_in);
      const Body b = pattern(pos);
      ASSERT_TRUE(j.write(pos, b.data(), b.size()));
      ++next_in;
    }
    ASSERT_EQ(j.peek(next_in, out.data(), pid), Journal::Peek::kEmpty) << "at position " << next_in;
    const std::uint64_t n_out = uniform(rng, 0, next_in - next_out);
    for (std::uint64_t i = 0; i < n_out; ++i) {
      ASSERT_EQ(j.peek(next_out, out.data(), pid), Journal::Peek::kRecord) << "at position " << next_out;
      ASSERT_EQ(out, pattern(next_out));
      ++next_out;
    }
    j.release(next_out);
    ASSERT_EQ(j.head(), next_out);
  }
  EXPECT_EQ(j.lost(), 0u);
  EXPECT_EQ(j.dropped(), 0u);
}

// ---- Durable ------------------------------------------------------------------------

TEST(JournalTest, IsDurableFollowsPublishDurable) {
  HeapJournal h(64);
  Journal j = h.journal();
  EXPECT_FALSE(j.is_durable(0));
  EXPECT_EQ(j.durable(), 0u);
  j.publish_durable(5);
  EXPECT_EQ(j.durable(), 5u);
  EXPECT_TRUE(j.is_durable(0));
  EXPECT_TRUE(j.is_durable(4));
  EXPECT_FALSE(j.is_durable(5)) << "durable(5) covers the positions below 5 only";
  EXPECT_FALSE(j.is_durable(100));
}

TEST(JournalTest, WaitDurableTimesOutWhenNothingIsPublished) {
  HeapJournal h(64);
  Journal j = h.journal();
  j.wait_durable(0, 20'000'000);  // returns after the timeout, not never
  EXPECT_FALSE(j.is_durable(0));
  EXPECT_EQ(h.control()->durable_waiters.load(), 0u) << "a waiter that left must not stay counted";
}

TEST(JournalTest, WaitDurableReturnsAtOnceWhenAlreadyDurable) {
  HeapJournal h(64);
  Journal j = h.journal();
  j.publish_durable(10);
  std::atomic<bool> done{false};
  std::thread t([&] {
    j.wait_durable(3, kLongWaitNs);
    done.store(true);
  });
  const bool returned = wait_until([&] { return done.load(); });
  if (!returned) {
    // Unblock it so the test can end: bump the sequence and wake.
    h.control()->durable_seq.fetch_add(1);
    futex_wake(h.control()->durable_seq, INT32_MAX);
  }
  t.join();
  EXPECT_TRUE(returned) << "wait_durable parked although the position was durable";
}

TEST(JournalTest, WaitDurableWakesWhenPublished) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::atomic<bool> done{false};
  std::atomic<bool> saw_durable{false};
  std::thread t([&] {
    Journal mine = h.journal();  // a waiter in another process has its own view
    mine.wait_durable(3, kLongWaitNs);
    saw_durable.store(mine.is_durable(3));
    done.store(true);
  });
  // Let it park (it may also see the publish first: both must work).
  wait_until([&] { return h.control()->durable_waiters.load() != 0; }, std::chrono::milliseconds(2000));
  EXPECT_FALSE(done.load());
  j.publish_durable(4);
  const bool returned = wait_until([&] { return done.load(); });
  if (!returned) {
    h.control()->durable_seq.fetch_add(1);
    futex_wake(h.control()->durable_seq, INT32_MAX);
  }
  t.join();
  EXPECT_TRUE(returned) << "publish_durable did not wake the waiter";
  EXPECT_TRUE(saw_durable.load());
}

// ---- Space ------------------------------------------------------------------------

TEST(JournalTest, WaitForSpaceReturnsAtOnceWhenThereIsRoom) {
  HeapJournal h(64);
  Journal j = h.journal();
  std::atomic<bool> done{false};
  std::thread t([&] {
    j.wait_for_space(1, kLongWaitNs);
    done.store(true);
  });
  const bool returned = wait_until([&] { return done.load(); });
  if (!returned) {
    h.control()->space_seq.fetch_add(1);
    futex_wake(h.control()->space_seq, INT32_MAX);
  }
  t.join();
  EXPECT_TRUE(returned) << "wait_for_space parked on an empty journal";
}

TEST(JournalTest, WaitForSpaceParksWhileFewerThanNCellsAreFree) {
  HeapJournal h(64);
  Journal j = h.journal();
  for (std::uint64_t i = 0; i < 63; ++i) append(j, pattern(i));  // one cell free
  std::atomic<bool> released{false};
  std::atomic<bool> released_before_return{false};
  std::atomic<bool> done{false};
  std::thread t([&] {
    Journal mine = h.journal();
    mine.wait_for_space(2, kLongWaitNs);  // a batch of two does not fit yet
    released_before_return.store(released.load());
    done.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const bool early = done.load();
  std::uint8_t body[kJournalBodyBytes];
  std::uint32_t pid = 0;
  ASSERT_EQ(j.peek(0, body, pid), Journal::Peek::kRecord);
  released.store(true);
  j.release(1);
  const bool returned = wait_until([&] { return done.load(); });
  if (!returned) {
    h.control()->space_seq.fetch_add(1);
    futex_wake(h.control()->space_seq, INT32_MAX);
  }
  t.join();
  EXPECT_FALSE(early) << "wait_for_space(2) returned with only one cell free";
  EXPECT_TRUE(returned) << "release did not wake the waiter";
  EXPECT_TRUE(released_before_return.load());
}

TEST(JournalTest, WaitForSpaceWakesWhenTheReaderReleases) {
  HeapJournal h(64);
  Journal j = h.journal();
  for (std::uint64_t i = 0; i < 64; ++i) append(j, pattern(i));
  std::atomic<bool> released{false};
  std::atomic<bool> done{false};
  std::atomic<bool> reserved_after{false};
  std::atomic<bool> released_before_return{false};
  std::atomic<bool> had_room{false};
  std::thread t([&] {
    Journal mine = h.journal();
    std::uint64_t pos = 0;
    had_room.store(mine.try_reserve(1, pos));  // the journal is full: false
    mine.wait_for_space(1, kLongWaitNs);
    released_before_return.store(released.load());
    reserved_after.store(mine.try_reserve(1, pos) && pos == 64);
    done.store(true);
  });
  wait_until([&] { return h.control()->space_waiters.load() != 0; }, std::chrono::milliseconds(2000));
  EXPECT_FALSE(done.load());
  released.store(true);
  j.release(1);
  const bool returned = wait_until([&] { return done.load(); });
  if (!returned) {
    h.control()->space_seq.fetch_add(1);
    futex_wake(h.control()->space_seq, INT32_MAX);
  }
  t.join();
  EXPECT_TRUE(returned) << "release() did not wake the writer waiting for room";
  EXPECT_TRUE(released_before_return.load()) << "wait_for_space returned before any room was made";
  EXPECT_TRUE(reserved_after.load());
  EXPECT_FALSE(had_room.load()) << "a full journal accepted a reservation";
}

// ---- Race ----------------------------------------------------------------------------

struct StressBody {
  std::uint32_t writer;
  std::uint32_t batch;  // the size of the reservation it was written in
  std::uint64_t seq;
  std::uint64_t check;  // a function of the two, so a torn body shows
};
static_assert(sizeof(StressBody) <= kJournalBodyBytes);

std::uint64_t check_of(std::uint32_t writer, std::uint64_t seq) { return (seq * 0x9E3779B97F4A7C15ull) ^ writer; }

// Writers reserve batches of 1..4 and write them; one reader consumes in
// position order and frees what it read in small steps, so the 64-cell
// journal wraps many laps. Oracle: every record exactly once, each writer's
// in its order, no torn body, nothing lost or dropped.
TEST(JournalTest, WritersAndOneReaderPassEveryRecordOnceInOrder) {
  constexpr int kWriters = 4;
  const std::uint64_t kPerWriter = kUnderTsan ? 20000 : 50000;
  const std::uint64_t kTotal = kWriters * kPerWriter;
  HeapJournal h(64);
  const std::uint64_t seed = test_seed();
  StartBarrier start(kWriters + 1);
  std::atomic<bool> abort{false};
  std::atomic<std::uint64_t> write_failures{0};

  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      Journal j = h.journal();  // one view per writer, as one per process
      std::mt19937_64 rng(seed + static_cast<std::uint64_t>(w));
      start.arrive_and_wait();
      std::uint64_t seq = 0;
      while (seq < kPerWriter && !abort.load(std::memory_order_relaxed)) {
        const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(uniform(rng, 1, 4), kPerWriter - seq));
        std::uint64_t first = 0;
        if (!j.try_reserve(n, first)) {
          j.wait_for_space(n, 10'000'000);
          continue;
        }
        for (std::uint32_t i = 0; i < n; ++i, ++seq) {
          const StressBody b{static_cast<std::uint32_t>(w), n, seq, check_of(static_cast<std::uint32_t>(w), seq)};
          if (!j.write(first + i, &b, sizeof b)) write_failures.fetch_add(1);
        }
      }
    });
  }

  std::array<std::uint64_t, kWriters> next{};
  std::uint64_t seen = 0;
  std::string failure;
  {
    Journal j = h.journal();
    start.arrive_and_wait();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    std::uint64_t pos = 0;
    std::uint8_t raw[kJournalBodyBytes];
    while (seen < kTotal && failure.empty()) {
      std::uint32_t pid = 0;
      const Journal::Peek p = j.peek(pos, raw, pid);
      if (p == Journal::Peek::kRecord) {
        StressBody b;
        std::memcpy(&b, raw, sizeof b);
        if (b.writer >= kWriters || b.check != check_of(b.writer, b.seq) || b.batch < 1 || b.batch > 4) {
          failure = "torn or foreign body at position " + std::to_string(pos);
        } else if (b.seq != next[b.writer]) {
          failure = "writer " + std::to_string(b.writer) + ": expected seq " + std::to_string(next[b.writer]) +
                    ", read " + std::to_string(b.seq) + " at position " + std::to_string(pos);
        } else {
          ++next[b.writer];
          ++seen;
          ++pos;
          // Free in small steps, so writers keep finding the ring nearly full.
          if (pos % 8 == 0) j.release(pos);
        }
        continue;
      }
      if (p == Journal::Peek::kConsumed) {
        failure = "position " + std::to_string(pos) + " reads consumed: nobody skipped it";
        break;
      }
      if (pos > j.head()) j.release(pos);  // let waiting writers in before we wait
      if (std::chrono::steady_clock::now() > deadline) {
        failure = "no record at position " + std::to_string(pos) + " within 120 s (state " +
                  std::to_string(static_cast<int>(p)) + ")";
        break;
      }
      j.park_reader(pos, 1'000'000);
    }
    j.release(pos);
    if (!failure.empty()) abort.store(true);
  }
  for (auto& t : writers) t.join();
  Journal j = h.journal();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(seen, kTotal);
  for (int w = 0; w < kWriters; ++w) EXPECT_EQ(next[w], kPerWriter) << "writer " << w;
  EXPECT_EQ(write_failures.load(), 0u);
  EXPECT_EQ(j.lost(), 0u);
  EXPECT_EQ(j.dropped(), 0u);
  EXPECT_EQ(j.tail_approx(), kTotal);
  EXPECT_EQ(j.head(), kTotal);
  EXPECT_GT(kTotal / 64, 1000u) << "the test should wrap the journal many laps";
}

}  // namespace
}  // namespace taskring::ipc
