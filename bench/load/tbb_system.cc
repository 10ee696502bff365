// The oneTBB baseline: tbb::concurrent_bounded_queue, TBB's blocking MPMC
// queue, between producer and worker threads of one process.
//
// Queues:
//   submissions  one queue of std::string payloads shared by every producer
//                and worker, capacity producers * inflight_limit() (at least
//                64). Producers push each payload (a copy, as a user would);
//                push blocks while the queue is full. Workers pop, blocking,
//                one message at a time. An empty string is the stop
//                sentinel, one per worker: pop takes one item, so each worker
//                takes exactly one and the others find theirs.
//   completions  one queue of Receipts per producer, left unbounded: the
//                producer loop already bounds what is outstanding, and a
//                bounded one could leave a worker blocked forever on the
//                receipt of a producer that has given up (a stalled run).
//
// concurrent_bounded_queue has no timed pop, so collect() polls: try_pop
// with a CPU pause a few hundred times, then yields, then 50 us sleeps until
// its deadline.
//
// Why not tbb::task_arena::enqueue: the harness needs workers with an
// identity (each runs its own Executor, pinned to its own CPU, and stops on
// stop_workers), and measures the cost of handing a task to another thread.
// An arena runs tasks on TBB's own pool with none of that, so the queue and
// explicit threads fit the interface and compare like with like.
//
// Thread safety: prepare, stop_workers and cleanup are called by the
// coordinating thread; open_producer and open_worker may run concurrently on
// the producer and worker threads (they only read the queues' address). Each
// port is used by one thread and shares ownership of the queues.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <tbb/concurrent_queue.h>

#include "in_process.h"
#include "load.h"

namespace taskring::bench {

namespace {

using SubmitQueue = tbb::concurrent_bounded_queue<std::string>;
using DoneQueue = tbb::concurrent_bounded_queue<Receipt>;

constexpr std::uint32_t kMinCapacity = 64;
// collect()'s wait for the first receipt: pauses, then yields, then sleeps.
constexpr int kSpinRounds = 256;
constexpr int kYieldRounds = 64;
constexpr std::int64_t kSleepNs = 50'000;

struct Queues {
  SubmitQueue submit;
  std::vector<std::unique_ptr<DoneQueue>> done;  // one per producer
  // Worker ports opened and not yet destroyed: stop_workers need not wait
  // for room for a sentinel nobody will pop. Every access is relaxed: a
  // count that publishes no data; the increments happen before the
  // coordinator's acquire of the runner's ready count, and a decrement seen
  // late costs stop_workers one more sleep.
  std::atomic<std::uint32_t> open_workers{0};
};

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Tells the CPU this is a spin-wait (frees the core's resources for its
// sibling hyperthread and avoids the memory-order flush on exit).
inline void cpu_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class TbbProducer final : public ProducerPort {
 public:
  TbbProducer(std::shared_ptr<Queues> queues, std::uint32_t index)
      : queues_(std::move(queues)), done_(*queues_->done[index]) {}

  Status submit(std::span<const std::string_view> payloads) override {
    try {
      for (const std::string_view payload : payloads) {
        if (payload.empty()) return invalid_argument("empty payload: an empty message is the stop sentinel");
        queues_->submit.emplace(payload);  // blocks while full
      }
    } catch (const std::exception& e) {
      return resource_exhausted(std::string("submission queue: ") + e.what());
    }
    return Status::ok();
  }

  // A timeout_ns of 0 (or below) does not wait.
  Result<std::size_t> collect(std::span<Receipt> out, std::int64_t timeout_ns) override {
    if (out.empty()) return std::size_t{0};
    std::size_t n = drain(out);
    if (n > 0 || timeout_ns <= 0) return n;
    // No timed pop in concurrent_bounded_queue: poll for the first receipt.
    const std::int64_t start = now_ns();
    const std::int64_t deadline = start > INT64_MAX - timeout_ns ? INT64_MAX : start + timeout_ns;
    for (int i = 0; i < kSpinRounds; ++i) {
      cpu_pause();
      if ((n = drain(out)) > 0) return n;
      if (i % 16 == 15 && now_ns() >= deadline) return std::size_t{0};
    }
    for (int i = 0; i < kYieldRounds; ++i) {
      std::this_thread::yield();
      if ((n = drain(out)) > 0) return n;
      if (now_ns() >= deadline) return std::size_t{0};
    }
    for (std::int64_t now = now_ns(); now < deadline; now = now_ns()) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min(kSleepNs, deadline - now)));
      if ((n = drain(out)) > 0) return n;
    }
    return std::size_t{0};
  }

 private:
  // try_pop into `out` until it is full or nothing is ready. Receipt is
  // trivially copyable, so this neither allocates nor throws.
  std::size_t drain(std::span<Receipt> out) noexcept {
    std::size_t n = 0;
    while (n < out.size() && done_.try_pop(out[n])) ++n;
    return n;
  }

  std::shared_ptr<Queues> queues_;
  DoneQueue& done_;
};

class TbbWorker final : public WorkerPort {
 public:
  explicit TbbWorker(std::shared_ptr<Queues> queues) : queues_(std::move(queues)) {
    queues_->open_workers.fetch_add(1, std::memory_order_relaxed);  // relaxed: see Queues
  }
  ~TbbWorker() override {
    queues_->open_workers.fetch_sub(1, std::memory_order_relaxed);  // relaxed: see Queues
  }
  TbbWorker(const TbbWorker&) = delete;
  TbbWorker& operator=(const TbbWorker&) = delete;

  Status run(Executor& executor) override {
    std::uint64_t misrouted = 0;
    std::uint64_t first_misrouted_key = 0;
    const std::size_t producers = queues_->done.size();
    try {
      std::string payload;
      for (;;) {
        queues_->submit.pop(payload);  // blocks while empty
        if (payload.empty()) break;    // our stop sentinel; the others are for the other workers
        Receipt receipt{};
        if (!executor.run(payload, receipt)) continue;  // malformed: dropped
        const std::uint32_t p = key_producer(receipt.key);
        if (p >= producers) {
          // The executor has checked the key against the run, so this is a
          // harness bug; reported when the worker stops, not silently.
          if (misrouted++ == 0) first_misrouted_key = receipt.key;
          continue;
        }
        queues_->done[p]->push(receipt);  // unbounded: never blocks
      }
    } catch (const std::exception& e) {
      return internal_error(std::string("worker: ") + e.what());
    }
    if (misrouted != 0) {
      return internal_error(std::to_string(misrouted) + " receipts dropped: key " +
                            std::to_string(first_misrouted_key) + " names producer " +
                            std::to_string(key_producer(first_misrouted_key)) + " of " +
                            std::to_string(producers));
    }
    return Status::ok();
  }

 private:
  std::shared_ptr<Queues> queues_;
};

class TbbSystem final : public System {
 public:
  std::string_view name() const override { return "tbb"; }
  bool single_process() const override { return true; }

  Status prepare(const LoadConfig& config) override {
    TASKRING_RETURN_IF_ERROR(config.validate());
    config_ = config;
    const std::uint64_t capacity =
        std::max<std::uint64_t>(std::uint64_t{config.producers} * config.inflight_limit(), kMinCapacity);
    try {
      auto queues = std::make_shared<Queues>();
      queues->submit.set_capacity(static_cast<SubmitQueue::size_type>(capacity));
      queues->done.reserve(config.producers);
      for (std::uint32_t p = 0; p < config.producers; ++p) queues->done.push_back(std::make_unique<DoneQueue>());
      queues_ = std::move(queues);
    } catch (const std::exception& e) {
      return resource_exhausted(std::string("cannot create the tbb queues: ") + e.what());
    }
    return Status::ok();
  }

  Result<std::unique_ptr<ProducerPort>> open_producer(std::uint32_t index) override {
    return open_in_process_port<ProducerPort, TbbProducer>(queues_ != nullptr, "producer", index,
                                                          queues_ ? queues_->done.size() : 0, queues_, index);
  }

  Result<std::unique_ptr<WorkerPort>> open_worker(std::uint32_t index) override {
    return open_in_process_port<WorkerPort, TbbWorker>(queues_ != nullptr, "worker", index, config_.workers, queues_);
  }

  // One sentinel per worker thread; `worker_pids` is empty. The queue can be
  // full here only while workers are draining it (a worker blocks in pop
  // only on an empty queue), so wait for room as long as a worker port is
  // open; once none is, no sentinel is needed.
  void stop_workers(std::span<const pid_t>) override {
    if (!queues_) return;
    try {
      for (std::uint32_t w = 0; w < config_.workers; ++w) {
        while (!queues_->submit.try_push(std::string())) {
          if (queues_->open_workers.load(std::memory_order_relaxed) == 0) return;  // relaxed: see Queues
          std::this_thread::sleep_for(std::chrono::nanoseconds(kSleepNs));
        }
      }
    } catch (const std::exception&) {
      // An empty string's copy does not allocate; nothing else can throw.
    }
  }

  void cleanup() override { queues_.reset(); }

 private:
  LoadConfig config_;
  std::shared_ptr<Queues> queues_;
};

}  // namespace

std::unique_ptr<System> make_tbb_system() { return std::make_unique<TbbSystem>(); }

}  // namespace taskring::bench
