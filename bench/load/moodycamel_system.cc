// The moodycamel baseline: moodycamel::BlockingConcurrentQueue (Debian's
// libconcurrentqueue-dev), a lock-free MPMC queue of per-producer sub-queues
// with a semaphore for blocking waits. Producers and workers are threads of
// one process.
//
// Queues:
//   submissions  one queue of std::string payloads, shared by every producer
//                and worker. A producer copies each payload into an owned
//                string, as a user would, with a ProducerToken: enqueue for
//                one task, enqueue_bulk for a batch. Unbounded: the producer
//                loop never has more than inflight_limit() tasks outstanding,
//                so the queue holds at most producers * (inflight_limit() +
//                batch). An empty string is the stop sentinel.
//   completions  one queue of Receipts per producer; each worker holds one
//                ProducerToken per completion queue.
// Workers take up to kWorkerBulk messages at once with wait_dequeue_bulk.
//
// Stopping (Invariants):
//   1. stop_workers enqueues one sentinel per worker, after every producer
//      has finished, so no task is submitted after a sentinel.
//   2. A worker that dequeues k >= 1 sentinels in one bulk runs the real
//      tasks of that bulk, enqueues k - 1 sentinels again, then returns: each
//      returning worker removes exactly one sentinel.
//   3. Hence sentinels (queued, or held by a worker about to put them back)
//      >= workers still running, and a running worker blocked in
//      wait_dequeue_bulk is woken by one of them. No worker waits forever.
//   A worker that fails early leaves its sentinel queued, which only adds to
//   3. The k - 1 re-enqueues can fail only if an allocation fails; the
//   worker then returns an error naming what it could not pass on.
//
// Thread safety: prepare, stop_workers and cleanup are called by the
// coordinating thread; open_producer and open_worker may run concurrently on
// the producer and worker threads (they only read the shared queues' address
// and make tokens, which moodycamel allows from any thread). Each port is used
// by one thread. Ports share ownership of the queues, so they outlive cleanup
// when a port does: a token must be destroyed before its queue.
#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

// GCC's -Wnull-dereference fires inside the queue's producer-list walk once
// it is inlined here: a false positive (the walk restarts from the list's
// tail, checked non-null, whenever it reaches null). Silenced for the
// library's code only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <concurrentqueue/blockingconcurrentqueue.h>
#pragma GCC diagnostic pop

#include "in_process.h"
#include "load.h"

namespace taskring::bench {

namespace {

using SubmitQueue = moodycamel::BlockingConcurrentQueue<std::string>;
using DoneQueue = moodycamel::BlockingConcurrentQueue<Receipt>;

constexpr std::size_t kWorkerBulk = 16;

struct Queues {
  std::unique_ptr<SubmitQueue> submit;
  std::vector<std::unique_ptr<DoneQueue>> done;  // one per producer
};

// Microseconds for a positive timeout, rounded up so that 1 ns still waits.
std::int64_t round_up_us(std::int64_t ns) noexcept { return ns / 1000 + (ns % 1000 != 0 ? 1 : 0); }

class MoodyProducer final : public ProducerPort {
 public:
  MoodyProducer(std::shared_ptr<Queues> queues, std::uint32_t index)
      : queues_(std::move(queues)),
        submit_(*queues_->submit),
        done_(*queues_->done[index]),
        token_(submit_),
        consumer_(done_) {}

  Status submit(std::span<const std::string_view> payloads) override {
    for (const std::string_view payload : payloads) {
      if (payload.empty()) return invalid_argument("empty payload: an empty message is the stop sentinel");
    }
    bool queued = false;
    try {
      if (payloads.size() == 1) {
        queued = submit_.enqueue(token_, std::string(payloads[0]));
      } else {
        // The batch API: each std::string is built from its string_view in
        // place in the queue's slot.
        queued = submit_.enqueue_bulk(token_, payloads.begin(), payloads.size());
      }
    } catch (const std::exception& e) {
      return resource_exhausted(std::string("submission queue: ") + e.what());
    }
    if (!queued) {
      return resource_exhausted("submission queue: could not allocate a block for " +
                                std::to_string(payloads.size()) + " tasks");
    }
    return Status::ok();
  }

  // A timeout_ns of 0 (or below) does not wait.
  Result<std::size_t> collect(std::span<Receipt> out, std::int64_t timeout_ns) override {
    if (out.empty()) return std::size_t{0};
    // Neither call allocates or throws: Receipt is trivially copyable.
    if (timeout_ns > 0) {
      return done_.wait_dequeue_bulk_timed(consumer_, out.data(), out.size(), round_up_us(timeout_ns));
    }
    return done_.try_dequeue_bulk(consumer_, out.data(), out.size());
  }

 private:
  // Declared first so it is destroyed last: the tokens below point into the queues.
  std::shared_ptr<Queues> queues_;
  SubmitQueue& submit_;
  DoneQueue& done_;
  moodycamel::ProducerToken token_;
  moodycamel::ConsumerToken consumer_;
};

class MoodyWorker final : public WorkerPort {
 public:
  explicit MoodyWorker(std::shared_ptr<Queues> queues)
      : queues_(std::move(queues)), submit_(*queues_->submit), consumer_(submit_) {
    done_tokens_.reserve(queues_->done.size());
    for (const auto& q : queues_->done) done_tokens_.emplace_back(*q);
  }

  Status run(Executor& executor) override {
    std::uint64_t misrouted = 0;
    std::uint64_t first_misrouted_key = 0;
    try {
      for (;;) {
        const std::size_t n = submit_.wait_dequeue_bulk(consumer_, batch_.begin(), batch_.size());
        std::size_t sentinels = 0;
        for (std::size_t i = 0; i < n; ++i) {
          const std::string& payload = batch_[i];
          if (payload.empty()) {
            ++sentinels;  // run the rest of the bulk first (invariant 2)
            continue;
          }
          Receipt receipt{};
          if (!executor.run(payload, receipt)) continue;  // malformed: dropped
          const std::uint32_t p = key_producer(receipt.key);
          if (p >= done_tokens_.size()) {
            // The executor has checked the key against the run, so this is a
            // harness bug; reported when the worker stops, not silently.
            if (misrouted++ == 0) first_misrouted_key = receipt.key;
            continue;
          }
          if (!queues_->done[p]->enqueue(done_tokens_[p], receipt)) {
            return resource_exhausted("completion queue of producer " + std::to_string(p) +
                                      ": could not allocate a block");
          }
        }
        if (sentinels > 0) {
          TASKRING_RETURN_IF_ERROR(pass_on(sentinels - 1));
          break;
        }
      }
    } catch (const std::exception& e) {
      return internal_error(std::string("worker: ") + e.what());
    }
    if (misrouted != 0) {
      return internal_error(std::to_string(misrouted) + " receipts dropped: key " +
                            std::to_string(first_misrouted_key) + " names producer " +
                            std::to_string(key_producer(first_misrouted_key)) + " of " +
                            std::to_string(done_tokens_.size()));
    }
    return Status::ok();
  }

 private:
  // Puts back the sentinels this worker took beyond its own (invariant 2).
  // Moving an empty string neither allocates nor throws; only the queue's
  // block allocation can fail.
  Status pass_on(std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      if (!submit_.enqueue(std::string())) {
        return resource_exhausted("could not pass on " + std::to_string(count - i) +
                                  " stop sentinels: other workers may not stop");
      }
    }
    return Status::ok();
  }

  // Declared first so it is destroyed last: the tokens below point into the queues.
  std::shared_ptr<Queues> queues_;
  SubmitQueue& submit_;
  moodycamel::ConsumerToken consumer_;
  std::vector<moodycamel::ProducerToken> done_tokens_;  // [p] for queues_->done[p]
  std::array<std::string, kWorkerBulk> batch_;
};

class MoodycamelSystem final : public System {
 public:
  std::string_view name() const override { return "moodycamel"; }
  bool single_process() const override { return true; }

  Status prepare(const LoadConfig& config) override {
    TASKRING_RETURN_IF_ERROR(config.validate());
    config_ = config;
    const std::size_t limit = config.inflight_limit();
    try {
      auto queues = std::make_shared<Queues>();
      // Blocks preallocated for every task and receipt that can be in flight
      // (a batch may overshoot the limit by one batch); a run that needs more
      // (a producer's blocks half used) allocates them during warm-up.
      const std::size_t in_flight = limit + config.batch;
      queues->submit = std::make_unique<SubmitQueue>(config.producers * in_flight);
      queues->done.reserve(config.producers);
      for (std::uint32_t p = 0; p < config.producers; ++p) {
        queues->done.push_back(std::make_unique<DoneQueue>(in_flight));
      }
      queues_ = std::move(queues);
    } catch (const std::exception& e) {
      return resource_exhausted(std::string("cannot create the moodycamel queues: ") + e.what());
    }
    return Status::ok();
  }

  Result<std::unique_ptr<ProducerPort>> open_producer(std::uint32_t index) override {
    return open_in_process_port<ProducerPort, MoodyProducer>(queues_ != nullptr, "producer", index,
                                                          queues_ ? queues_->done.size() : 0, queues_, index);
  }

  Result<std::unique_ptr<WorkerPort>> open_worker(std::uint32_t index) override {
    return open_in_process_port<WorkerPort, MoodyWorker>(queues_ != nullptr, "worker", index, config_.workers, queues_);
  }

  // One sentinel per worker thread (invariant 1); `worker_pids` is empty.
  void stop_workers(std::span<const pid_t>) override {
    if (!queues_) return;
    for (std::uint32_t w = 0; w < config_.workers; ++w) {
      // Cannot throw (an empty string's move); fails only if no block can be
      // allocated, and then the workers left waiting are the run's symptom.
      if (!queues_->submit->enqueue(std::string())) return;
    }
  }

  void cleanup() override { queues_.reset(); }

 private:
  LoadConfig config_;
  std::shared_ptr<Queues> queues_;
};

}  // namespace

std::unique_ptr<System> make_moodycamel_system() { return std::make_unique<MoodycamelSystem>(); }

}  // namespace taskring::bench
