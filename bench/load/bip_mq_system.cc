// The Boost.Interprocess baseline: boost::interprocess::message_queue, the
// queue between processes that a C++ programmer finds in Boost. A bounded
// priority queue of fixed-size slots in a named shared-memory object, guarded
// by one process-shared mutex and two condition variables.
//
// Queues, all named "trbench-mq-<parent pid>-<run>" plus a suffix, so that
// runs of one process and of several processes never share one:
//   "-sub"       the submission queue, shared by every producer and worker.
//                One message is one task's payload (config.payload bytes);
//                capacity producers * inflight_limit(), at least 64. A
//                zero-length message is the stop sentinel.
//   "-done-<p>"  producer p's completion queue: one message is one Receipt
//                as raw bytes (32 bytes); capacity inflight_limit(), at
//                least 64. The design's "one queue for completions" becomes
//                one per producer: a message queue has no addressing, so a
//                shared one would hand producer A's receipts to producer B.
//
// message_queue has no batch API, so submit() sends one message per payload:
// that is the honest baseline. Every call locks the queue's mutex.
//
// Completion queues never stay full in a healthy run: a producer has at most
// inflight_limit() + batch tasks outstanding (duplicates injected on purpose
// included) and collects until none is, so a worker blocked in send waits
// only for its producer's next collect.
//
// Thread safety: the System is used by the coordinating process only
// (prepare, stop_workers and cleanup; open_* in a child after fork reads
// what prepare stored). Each port is used by the one thread of its process.
// The queues themselves are safe across processes.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>

#include "load.h"

namespace taskring::bench {

namespace {

namespace bip = boost::interprocess;

// Receipts travel as raw bytes.
static_assert(std::is_trivially_copyable_v<Receipt>);
constexpr std::size_t kReceiptBytes = sizeof(Receipt);
constexpr std::uint32_t kMinCapacity = 64;

// Distinguishes the runs of one process. Relaxed: only uniqueness matters,
// and fetch_add is atomic at any order.
std::atomic<std::uint32_t> g_run_counter{0};

// "<what> '<name>': <exception text>" as an error Status.
Status queue_error(const std::string& what, const std::string& name, const std::exception& e) {
  return internal_error(what + " '" + name + "': " + e.what());
}

class BipProducer final : public ProducerPort {
 public:
  BipProducer(std::unique_ptr<bip::message_queue> sub, std::string sub_name,
              std::unique_ptr<bip::message_queue> done, std::string done_name)
      : sub_(std::move(sub)), sub_name_(std::move(sub_name)),
        done_(std::move(done)), done_name_(std::move(done_name)) {}

  Status submit(std::span<const std::string_view> payloads) override {
    const std::size_t max_bytes = sub_->get_max_msg_size();
    try {
      for (const std::string_view payload : payloads) {
        if (payload.empty() || payload.size() > max_bytes) {
          return invalid_argument("payload of " + std::to_string(payload.size()) +
                                  " bytes: must be 1.." + std::to_string(max_bytes) +
                                  " (an empty message is the stop sentinel)");
        }
        // One send per task: message_queue has no batch API. Blocks while full.
        sub_->send(payload.data(), payload.size(), 0);
      }
    } catch (const std::exception& e) {
      return queue_error("send to", sub_name_, e);
    }
    return Status::ok();
  }

  Result<std::size_t> collect(std::span<Receipt> out, std::int64_t timeout_ns) override {
    if (out.empty()) return std::size_t{0};
    std::size_t n = 0;
    try {
      bip::message_queue::size_type got = 0;
      unsigned int priority = 0;
      bool first = false;
      if (timeout_ns > 0) {
        // message_queue's deadlines are absolute UTC ptimes (CLOCK_REALTIME).
        const auto deadline = boost::posix_time::microsec_clock::universal_time() +
                              boost::posix_time::microseconds(timeout_ns / 1000 + (timeout_ns % 1000 != 0));
        first = done_->timed_receive(&out[0], kReceiptBytes, got, priority, deadline);
      } else {
        first = done_->try_receive(&out[0], kReceiptBytes, got, priority);
      }
      if (!first) return std::size_t{0};
      TASKRING_RETURN_IF_ERROR(check_size(got));
      n = 1;
      while (n < out.size() && done_->try_receive(&out[n], kReceiptBytes, got, priority)) {
        TASKRING_RETURN_IF_ERROR(check_size(got));
        ++n;
      }
    } catch (const std::exception& e) {
      return queue_error("receive from", done_name_, e);
    }
    return n;
  }

 private:
  Status check_size(bip::message_queue::size_type got) const {
    if (got == kReceiptBytes) return Status::ok();
    return data_loss("completion queue '" + done_name_ + "' delivered a " + std::to_string(got) +
                     "-byte message: a receipt is " + std::to_string(kReceiptBytes) + " bytes");
  }

  std::unique_ptr<bip::message_queue> sub_;
  std::string sub_name_;
  std::unique_ptr<bip::message_queue> done_;
  std::string done_name_;
};

class BipWorker final : public WorkerPort {
 public:
  BipWorker(std::unique_ptr<bip::message_queue> sub, std::string sub_name,
            std::vector<std::unique_ptr<bip::message_queue>> done, std::vector<std::string> done_names)
      : sub_(std::move(sub)), sub_name_(std::move(sub_name)),
        done_(std::move(done)), done_names_(std::move(done_names)),
        buffer_(sub_->get_max_msg_size()) {}

  Status run(Executor& executor) override {
    std::uint64_t misrouted = 0;
    std::uint64_t first_misrouted_key = 0;
    const std::string* where = &sub_name_;  // the queue of the operation under way
    try {
      for (;;) {
        bip::message_queue::size_type got = 0;
        unsigned int priority = 0;
        where = &sub_name_;
        sub_->receive(buffer_.data(), buffer_.size(), got, priority);  // blocks while empty
        if (got == 0) break;  // the stop sentinel: one per worker, and we take one
        Receipt receipt{};
        if (!executor.run(std::string_view(buffer_.data(), got), receipt)) continue;  // malformed
        const std::uint32_t index = key_producer(receipt.key);
        if (index >= done_.size()) {
          // The executor has checked the key against the run, so this is a
          // harness bug; reported when the worker stops, not silently.
          if (misrouted++ == 0) first_misrouted_key = receipt.key;
          continue;
        }
        where = &done_names_[index];
        done_[index]->send(&receipt, kReceiptBytes, 0);  // blocks while full
      }
    } catch (const std::exception& e) {
      return queue_error("worker failed on", *where, e);
    }
    if (misrouted != 0) {
      return internal_error(std::to_string(misrouted) + " receipts dropped: key " +
                            std::to_string(first_misrouted_key) + " names producer " +
                            std::to_string(key_producer(first_misrouted_key)) + " of " +
                            std::to_string(done_.size()));
    }
    return Status::ok();
  }

 private:
  std::unique_ptr<bip::message_queue> sub_;
  std::string sub_name_;
  std::vector<std::unique_ptr<bip::message_queue>> done_;
  std::vector<std::string> done_names_;
  std::vector<char> buffer_;
};

class BipMqSystem final : public System {
 public:
  ~BipMqSystem() override { cleanup(); }

  std::string_view name() const override { return "bip_mq"; }
  bool single_process() const override { return false; }

  Status prepare(const LoadConfig& config) override {
    TASKRING_RETURN_IF_ERROR(config.validate());
    cleanup();  // a System is prepared once; this only guards a second call
    config_ = config;
    owner_pid_ = getpid();
    const std::string base = "trbench-mq-" + std::to_string(owner_pid_) + "-" +
                             std::to_string(g_run_counter.fetch_add(1, std::memory_order_relaxed));
    sub_name_ = base + "-sub";
    done_names_.clear();
    for (std::uint32_t p = 0; p < config.producers; ++p) done_names_.push_back(base + "-done-" + std::to_string(p));

    const std::uint32_t limit = config.inflight_limit();
    const std::uint64_t sub_capacity = std::max<std::uint64_t>(std::uint64_t{config.producers} * limit, kMinCapacity);
    const std::uint32_t done_capacity = std::max(limit, kMinCapacity);
    std::string current = sub_name_;
    try {
      // Names from a crashed process that had our pid would make create_only fail.
      bip::message_queue::remove(sub_name_.c_str());
      for (const std::string& n : done_names_) bip::message_queue::remove(n.c_str());
      sub_ = std::make_unique<bip::message_queue>(bip::create_only, sub_name_.c_str(), sub_capacity,
                                                  std::size_t{config.payload});
      for (const std::string& n : done_names_) {
        current = n;
        // Created and closed: the queue lives on by name until cleanup removes it.
        bip::message_queue done(bip::create_only, n.c_str(), done_capacity, kReceiptBytes);
      }
    } catch (const std::exception& e) {
      const Status st = queue_error("cannot create message queue", current, e);
      cleanup();
      return st;
    }
    return Status::ok();
  }

  Result<std::unique_ptr<ProducerPort>> open_producer(std::uint32_t index) override {
    if (index >= done_names_.size()) {
      return invalid_argument("producer index " + std::to_string(index) + ": the run has " +
                              std::to_string(done_names_.size()) + " producers");
    }
    std::string current = sub_name_;
    try {
      auto sub = std::make_unique<bip::message_queue>(bip::open_only, sub_name_.c_str());
      current = done_names_[index];
      auto done = std::make_unique<bip::message_queue>(bip::open_only, current.c_str());
      return std::unique_ptr<ProducerPort>(
          std::make_unique<BipProducer>(std::move(sub), sub_name_, std::move(done), current));
    } catch (const std::exception& e) {
      return queue_error("cannot open message queue", current, e);
    }
  }

  Result<std::unique_ptr<WorkerPort>> open_worker(std::uint32_t index) override {
    if (index >= config_.workers) {
      return invalid_argument("worker index " + std::to_string(index) + ": the run has " +
                              std::to_string(config_.workers) + " workers");
    }
    std::string current = sub_name_;
    try {
      auto sub = std::make_unique<bip::message_queue>(bip::open_only, sub_name_.c_str());
      std::vector<std::unique_ptr<bip::message_queue>> done;
      done.reserve(done_names_.size());
      for (const std::string& n : done_names_) {
        current = n;
        done.push_back(std::make_unique<bip::message_queue>(bip::open_only, n.c_str()));
      }
      return std::unique_ptr<WorkerPort>(
          std::make_unique<BipWorker>(std::move(sub), sub_name_, std::move(done), done_names_));
    } catch (const std::exception& e) {
      return queue_error("cannot open message queue", current, e);
    }
  }

  // One zero-length message per worker process: each worker exits at the
  // first sentinel it receives, so every worker takes exactly one. When the
  // queue is full and stays full (every worker died), gives up after
  // drain_timeout; the caller then kills the workers that did not stop.
  void stop_workers(std::span<const pid_t> worker_pids) override {
    if (!sub_) return;
    const char unused = 0;
    const auto deadline = boost::posix_time::microsec_clock::universal_time() +
                          boost::posix_time::microseconds(config_.drain_timeout_ns / 1000);
    try {
      for (std::size_t i = 0; i < worker_pids.size(); ++i) {
        if (!sub_->timed_send(&unused, 0, 0, deadline)) return;
      }
    } catch (const std::exception&) {
      // Nothing to report through: the workers that got no sentinel do not
      // stop, and the caller reports and kills them.
    }
  }

  void cleanup() override {
    sub_.reset();
    // A forked producer or worker holds a copy of this object: only the
    // process that created the queues removes them.
    if (owner_pid_ != getpid()) return;
    if (!sub_name_.empty()) bip::message_queue::remove(sub_name_.c_str());
    for (const std::string& n : done_names_) bip::message_queue::remove(n.c_str());
    sub_name_.clear();
    done_names_.clear();
  }

 private:
  LoadConfig config_;
  pid_t owner_pid_ = 0;
  std::string sub_name_;
  std::vector<std::string> done_names_;
  // The coordinator's handle on the submission queue, for stop_workers.
  std::unique_ptr<bip::message_queue> sub_;
};

}  // namespace

std::unique_ptr<System> make_bip_mq_system() { return std::make_unique<BipMqSystem>(); }

}  // namespace taskring::bench
