// FreeStack (ipc/include/taskring/ipc/free_stack.h): LIFO behaviour, format,
// corruption detection, the ABA tag, and a pop/push race with an ownership
// oracle. Threads share one buffer in one process so TSan sees them.
#include "taskring/ipc/free_stack.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <set>
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

#if defined(__SANITIZE_THREAD__)
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif

// An element as the engine lays them out: the link word inside a larger
// record, so the stride matters.
struct Element {
  std::atomic<std::uint32_t> link;
  std::uint32_t payload;  // written by the element's owner only
  std::uint8_t pad[56];
};
static_assert(sizeof(Element) == 64);

constexpr std::uint64_t pack(std::uint32_t tag, std::uint32_t index) { return (std::uint64_t{tag} << 32) | index; }
constexpr std::uint32_t tag_of(std::uint64_t w) { return static_cast<std::uint32_t>(w >> 32); }
constexpr std::uint32_t index_of(std::uint64_t w) { return static_cast<std::uint32_t>(w); }

// A head and `count` elements in one zeroed aligned buffer.
class Stack {
 public:
  explicit Stack(std::uint32_t count)
      : buf_(sizeof(FreeStackHead) + std::size_t{count} * sizeof(Element)),
        stack_(head(), reinterpret_cast<std::byte*>(elements()), sizeof(Element), count) {
    FreeStack::format_empty(head());
  }
  FreeStackHead* head() const { return buf_.as<FreeStackHead>(); }
  Element* elements() const { return reinterpret_cast<Element*>(buf_.data() + sizeof(FreeStackHead)); }
  FreeStack& stack() { return stack_; }
  std::uint64_t word() const { return head()->word.load(); }

 private:
  AlignedBuffer buf_;
  FreeStack stack_;
};

std::vector<std::uint32_t> pop_all(FreeStack& s) {
  std::vector<std::uint32_t> out;
  std::uint32_t i = 0;
  FreeStack::PopResult r;
  while ((r = s.pop(i)) == FreeStack::PopResult::kOk) out.push_back(i);
  EXPECT_EQ(r, FreeStack::PopResult::kEmpty);
  return out;
}

TEST(FreeStackTest, PopOnEmptyStackReturnsEmpty) {
  Stack st(8);
  std::uint32_t out = 12345;
  EXPECT_EQ(st.stack().pop(out), FreeStack::PopResult::kEmpty);
  EXPECT_EQ(out, 12345u) << "a failed pop must not write its output";
  EXPECT_EQ(st.stack().size_quiescent(), 0u);
  // format with n == 0 is empty too.
  st.stack().format(3, 0);
  EXPECT_EQ(st.stack().pop(out), FreeStack::PopResult::kEmpty);
}

TEST(FreeStackTest, FormatHandsOutTheRangeInOrder) {
  Stack st(16);
  st.stack().format(4, 8);
  EXPECT_EQ(st.stack().size_quiescent(), 8u);
  EXPECT_EQ(pop_all(st.stack()), (std::vector<std::uint32_t>{4, 5, 6, 7, 8, 9, 10, 11}));
}

TEST(FreeStackTest, PushAllThenPopAllIsLifo) {
  constexpr std::uint32_t kCount = 32;
  Stack st(kCount);
  for (std::uint32_t i = 0; i < kCount; ++i) {
    st.stack().push(i);
    EXPECT_EQ(st.stack().size_quiescent(), i + 1);
  }
  std::vector<std::uint32_t> expected;
  for (std::uint32_t i = kCount; i-- > 0;) expected.push_back(i);
  EXPECT_EQ(pop_all(st.stack()), expected);
  EXPECT_EQ(st.stack().size_quiescent(), 0u);
}

TEST(FreeStackTest, PopAllThenPushAllRestoresEveryIndex) {
  constexpr std::uint32_t kCount = 32;
  Stack st(kCount);
  st.stack().format(0, kCount);
  std::vector<std::uint32_t> popped = pop_all(st.stack());
  ASSERT_EQ(popped.size(), kCount);
  for (std::uint32_t i : popped) st.stack().push(i);
  EXPECT_EQ(st.stack().size_quiescent(), kCount);
  std::vector<std::uint32_t> again = pop_all(st.stack());
  EXPECT_EQ(std::set<std::uint32_t>(again.begin(), again.end()).size(), kCount);
}

TEST(FreeStackTest, LinksLiveAtTheStride) {
  Stack st(4);
  st.stack().push(2);
  st.stack().push(3);
  // Element 3 links to element 2; element 2 to nothing.
  EXPECT_EQ(st.elements()[3].link.load(), 2u);
  EXPECT_EQ(st.elements()[2].link.load(), kNilIndex);
  EXPECT_EQ(index_of(st.word()), 3u);
  // Nothing else was touched.
  EXPECT_EQ(st.elements()[0].link.load(), 0u);
  EXPECT_EQ(st.elements()[1].link.load(), 0u);
}

TEST(FreeStackTest, PopReportsCorruptHeadIndexAndPopsNothing) {
  Stack st(8);
  for (std::uint32_t bad : {8u, 9u, 0x7FFFFFFFu, kNilIndex - 1}) {
    const std::uint64_t w = pack(5, bad);
    st.head()->word.store(w);
    std::uint32_t out = 777;
    EXPECT_EQ(st.stack().pop(out), FreeStack::PopResult::kCorrupt) << "head index " << bad;
    EXPECT_EQ(out, 777u);
    EXPECT_EQ(st.word(), w) << "a corrupt head must be left as it is";
  }
}

TEST(FreeStackTest, CorruptLinkIsReportedOnTheNextPop) {
  Stack st(8);
  st.stack().format(0, 4);
  st.elements()[0].link.store(100);  // element 0's successor is out of range
  std::uint32_t out = 0;
  ASSERT_EQ(st.stack().pop(out), FreeStack::PopResult::kOk);
  EXPECT_EQ(out, 0u);
  EXPECT_EQ(st.stack().pop(out), FreeStack::PopResult::kCorrupt);
  EXPECT_EQ(st.stack().size_quiescent(), 9u) << "count + 1 flags a bad link";
}

TEST(FreeStackTest, SizeQuiescentReportsACycle) {
  Stack st(8);
  st.stack().format(0, 4);
  st.elements()[3].link.store(1);  // 0 -> 1 -> 2 -> 3 -> 1 -> ...
  EXPECT_EQ(st.stack().size_quiescent(), 9u);
}

TEST(FreeStackTest, EveryPushAndPopBumpsTheTag) {
  Stack st(8);
  st.stack().format(0, 8);
  std::uint32_t tag = tag_of(st.word());
  std::uint32_t out = 0;
  for (int round = 0; round < 10; ++round) {
    ASSERT_EQ(st.stack().pop(out), FreeStack::PopResult::kOk);
    EXPECT_EQ(tag_of(st.word()), tag + 1);
    st.stack().push(out);
    EXPECT_EQ(tag_of(st.word()), tag + 2);
    tag += 2;
  }
  // The tag wraps without harm.
  st.head()->word.store(pack(0xFFFFFFFFu, index_of(st.word())));
  ASSERT_EQ(st.stack().pop(out), FreeStack::PopResult::kOk);
  EXPECT_EQ(tag_of(st.word()), 0u);
}

// ABA: a popper reads head = A (next B), is preempted; meanwhile A and B are
// popped and A is pushed back. The head index is A again, but the CAS the
// stale popper would now attempt (install B, which someone else owns) must
// fail because the tag moved on.
TEST(FreeStackTest, StaleCasFailsAfterPopPopPush) {
  Stack st(8);
  st.stack().format(0, 4);  // 0 -> 1 -> 2 -> 3
  const std::uint64_t stale = st.word();
  const std::uint32_t a = index_of(stale);
  const std::uint32_t stale_next = st.elements()[a].link.load();
  ASSERT_EQ(a, 0u);
  ASSERT_EQ(stale_next, 1u);

  std::uint32_t x = 0;
  std::uint32_t b = 0;
  ASSERT_EQ(st.stack().pop(x), FreeStack::PopResult::kOk);
  ASSERT_EQ(x, a);
  ASSERT_EQ(st.stack().pop(b), FreeStack::PopResult::kOk);
  ASSERT_EQ(b, stale_next);
  st.stack().push(a);  // A is back on top, now linked to 2; B is held.

  const std::uint64_t now = st.word();
  ASSERT_EQ(index_of(now), index_of(stale)) << "the ABA situation: same head index";
  ASSERT_NE(now, stale) << "only the tag tells the two heads apart";
  std::uint64_t expected = stale;
  EXPECT_FALSE(st.head()->word.compare_exchange_strong(expected, pack(tag_of(stale) + 1, stale_next)))
      << "the stale CAS succeeded: B, which is owned, would be on the stack again";
  EXPECT_EQ(st.word(), now);
  // The stack is intact: A, then 2, 3; never the held B.
  EXPECT_EQ(pop_all(st.stack()), (std::vector<std::uint32_t>{0, 2, 3}));
}

// Threads pop 1-3 indices, own them for a moment and push them back. Oracle:
// no index is ever owned by two threads (an owner word per index, and a
// payload that only the owner writes, which TSan would also flag), and at the
// end every index is on the stack exactly once.
TEST(FreeStackStressTest, PopPushNeverSharesAnIndex) {
  constexpr std::uint32_t kCount = 8;
  constexpr int kThreads = 4;
  const int iterations = kUnderTsan ? 60'000 : 500'000;
  Stack st(kCount);
  st.stack().format(0, kCount);
  std::vector<std::atomic<int>> owner(kCount);
  std::atomic<std::uint64_t> shared{0};
  std::atomic<std::uint64_t> corrupt{0};
  std::atomic<std::uint64_t> torn_payload{0};
  std::atomic<std::uint64_t> empties{0};
  StartBarrier barrier(kThreads);
  const std::uint64_t seed = test_seed();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 100 + static_cast<std::uint64_t>(t));
      const int me = t + 1;
      std::uint32_t held[3];
      barrier.arrive_and_wait();
      for (int it = 0; it < iterations; ++it) {
        const auto want = static_cast<int>(uniform(rng, 1, 3));
        int n = 0;
        while (n < want) {
          std::uint32_t idx = 0;
          const FreeStack::PopResult r = st.stack().pop(idx);
          if (r == FreeStack::PopResult::kEmpty) {
            empties.fetch_add(1, std::memory_order_relaxed);
            break;
          }
          if (r == FreeStack::PopResult::kCorrupt) {
            corrupt.fetch_add(1);
            break;
          }
          if (owner[idx].exchange(me) != 0) shared.fetch_add(1);
          st.elements()[idx].payload = static_cast<std::uint32_t>(me * 1'000'000 + it);
          held[n++] = idx;
        }
        if (uniform(rng, 0, 7) == 0) std::this_thread::yield();
        for (int i = n; i-- > 0;) {
          const std::uint32_t idx = held[i];
          if (st.elements()[idx].payload != static_cast<std::uint32_t>(me * 1'000'000 + it)) torn_payload.fetch_add(1);
          if (owner[idx].exchange(0) != me) shared.fetch_add(1);
          st.stack().push(idx);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(shared.load(), 0u);
  EXPECT_EQ(torn_payload.load(), 0u);
  EXPECT_EQ(corrupt.load(), 0u);
  EXPECT_EQ(st.stack().size_quiescent(), kCount);
  std::vector<std::uint32_t> all = pop_all(st.stack());
  std::set<std::uint32_t> distinct(all.begin(), all.end());
  EXPECT_EQ(all.size(), kCount);
  EXPECT_EQ(distinct.size(), kCount);
  EXPECT_EQ(*distinct.rbegin(), kCount - 1);
  std::fprintf(stderr, "[ info     ] %llu pops found the stack empty\n",
               static_cast<unsigned long long>(empties.load()));
}

}  // namespace
}  // namespace taskring::ipc
