// Micro-benchmarks of the ipc building blocks: the MPMC ring (single and
// batch, one and two threads) and the free stack. Each runs on plain heap
// memory laid out as in a segment.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "taskring/ipc/free_stack.h"
#include "taskring/ipc/layout.h"
#include "taskring/ipc/ring.h"

namespace {

using taskring::ipc::FreeStack;
using taskring::ipc::FreeStackHead;
using taskring::ipc::Ring;
using taskring::ipc::RingControl;

// A zeroed, segment-aligned buffer holding one ring.
struct RingBuffer {
  explicit RingBuffer(std::uint64_t capacity) : bytes(taskring::ipc::ring_bytes(capacity)) {
    mem = static_cast<std::byte*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
    std::memset(mem, 0, bytes);
    Ring::format(reinterpret_cast<RingControl*>(mem), capacity);
    ring = Ring(reinterpret_cast<RingControl*>(mem), capacity);
  }
  ~RingBuffer() { std::free(mem); }
  std::size_t bytes;
  std::byte* mem;
  Ring ring;
};

void pin_thread(int index) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  CPU_SET(static_cast<int>(index % (ncpu > 0 ? ncpu : 1)), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// One push and one pop per iteration, single thread: the uncontended cost.
void BM_Ring_PushPop_Single(benchmark::State& state) {
  RingBuffer rb(1024);
  std::uint32_t v = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(rb.ring.try_push(42));
    benchmark::DoNotOptimize(rb.ring.try_pop(v));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Ring_PushPop_Single);

// A batch of range(0) values pushed and popped per iteration.
void BM_Ring_PushPop_Batch(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  RingBuffer rb(1024);
  std::vector<std::uint32_t> in(n, 7), out(n);
  for (auto _ : state) {
    benchmark::DoNotOptimize(rb.ring.try_push_batch(in.data(), n));
    benchmark::DoNotOptimize(rb.ring.try_pop_batch(out.data(), n));
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}
BENCHMARK(BM_Ring_PushPop_Batch)->Arg(8)->Arg(64)->Arg(256);

// 1..2 pinned threads sharing one ring, each pushing and popping: the
// contended cost (cache lines bounce between cores).
RingBuffer* g_shared = nullptr;
void BM_Ring_PushPop_Threads(benchmark::State& state) {
  if (state.thread_index() == 0) g_shared = new RingBuffer(1024);
  pin_thread(state.thread_index());
  std::uint32_t v = 0;
  for (auto _ : state) {
    while (!g_shared->ring.try_push(static_cast<std::uint32_t>(state.thread_index()))) {
    }
    while (!g_shared->ring.try_pop(v)) {
    }
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete g_shared;
    g_shared = nullptr;
  }
}
BENCHMARK(BM_Ring_PushPop_Threads)->ThreadRange(1, 2)->UseRealTime();

// Free-stack pop and push of one index: the slot allocation and release path.
void BM_FreeStack_PopPush(benchmark::State& state) {
  constexpr std::uint32_t kCount = 1024;
  struct Elem {
    std::atomic<std::uint32_t> link;
    std::uint32_t pad[15];
  };
  auto elems = std::make_unique<Elem[]>(kCount);
  FreeStackHead head{};
  FreeStack stack(&head, reinterpret_cast<std::byte*>(&elems[0].link), sizeof(Elem), kCount);
  stack.format(0, kCount);
  std::uint32_t i = 0;
  for (auto _ : state) {
    if (stack.pop(i) != FreeStack::PopResult::kOk) state.SkipWithError("free stack empty");
    stack.push(i);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FreeStack_PopPush);

}  // namespace

BENCHMARK_MAIN();
