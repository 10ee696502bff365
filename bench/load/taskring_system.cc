// The system under test: a taskring segment with one queue "bench". Each
// producer is a process with a Client (submit or submit_batch, then wait and
// try_get on its tasks in submission order); each worker is a process with a
// Worker running the harness's Executor as the handler "bench". For the
// durability scenarios the segment has a journal, a sidecar process mirrors
// it to a log directory made for the run, and producers may submit durably.
//
// Thread safety: each port is used by the one thread of its process; the
// SIGUSR1 handler only calls Worker::stop, which is async-signal-safe.
#include <signal.h>
#include <unistd.h>

#include <stdlib.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "load.h"
#include "sidecar.h"
#include "sidecar_process.h"
#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/worker.h"

namespace taskring::bench {

namespace {

constexpr std::string_view kQueue = "bench";
constexpr std::string_view kTask = "bench";

std::uint64_t pow2_at_least(std::uint64_t n) { return std::bit_ceil(std::max<std::uint64_t>(n, 1)); }

// The worker of this process, for the SIGUSR1 handler. Set before the handler
// is installed; the handler only reads it. Relaxed is enough: the signal is
// delivered to this thread after the store in program order.
std::atomic<Worker*> g_worker{nullptr};

extern "C" void on_stop_signal(int) {
  if (Worker* w = g_worker.load(std::memory_order_relaxed)) w->stop();
}

class TaskringProducer final : public ProducerPort {
 public:
  TaskringProducer(Client client, bool durable, std::int64_t durable_timeout_ns) : client_(std::move(client)) {
    options_.queue = kQueue;
    if (durable) {
      // A durable acknowledgement that takes longer than --drain-timeout
      // ends the producer with the engine's message (which names the
      // sidecar as behind or missing) instead of waiting for the watchdog.
      options_.durable = true;
      options_.timeout_ns = durable_timeout_ns;
    }
  }

  Status submit(std::span<const std::string_view> payloads) override {
    if (payloads.size() == 1) {
      auto id = client_.submit(kTask, payloads[0], options_);
      if (!id.is_ok()) return id.status();
      pending_.push_back(*id);
      return Status::ok();
    }
    specs_.clear();
    for (std::string_view p : payloads) specs_.push_back(TaskSpec{kTask, p});
    ids_.resize(specs_.size());
    std::size_t done = 0;
    while (done < specs_.size()) {
      // Under FullPolicy::kWait a batch stops early only when a structure
      // stayed full; submit the rest.
      auto n = client_.submit_batch(std::span(specs_).subspan(done), std::span(ids_).subspan(done), options_);
      if (!n.is_ok()) return n.status();
      done += *n;
    }
    pending_.insert(pending_.end(), ids_.begin(), ids_.end());
    return Status::ok();
  }

  Result<std::size_t> collect(std::span<Receipt> out, std::int64_t timeout_ns) override {
    if (out.empty()) return std::size_t{0};
    if (pending_.empty()) {
      // Nothing to wait for (the rest were lost before reaching us): wait
      // out the timeout as the contract says, instead of spinning.
      sleep_ns(timeout_ns);
      return std::size_t{0};
    }
    // Wait for the oldest task; the ones after it are usually done by then.
    auto first = client_.wait(pending_.front(), timeout_ns);
    if (!first.is_ok()) {
      if (first.status().code() == StatusCode::kDeadlineExceeded) return std::size_t{0};
      return first.status();
    }
    std::size_t n = 0;
    TASKRING_RETURN_IF_ERROR(take(*first, out[n++]));
    while (n < out.size() && !pending_.empty()) {
      auto next = client_.try_get(pending_.front());
      if (!next.is_ok()) return next.status();
      if (!next->has_value()) break;
      TASKRING_RETURN_IF_ERROR(take(**next, out[n++]));
    }
    return n;
  }

 private:
  Status take(const TaskOutcome& outcome, Receipt& out) {
    pending_.pop_front();
    if (!outcome.ok()) {
      return internal_error("task " + to_string(outcome.id) + " ended " + std::string(state_name(outcome.state)) +
                            ": " + outcome.value);
    }
    if (outcome.value.size() != sizeof(Receipt)) {
      return data_loss("task " + to_string(outcome.id) + " returned " + std::to_string(outcome.value.size()) +
                       " bytes; a receipt has " + std::to_string(sizeof(Receipt)));
    }
    std::memcpy(&out, outcome.value.data(), sizeof out);
    return Status::ok();
  }

  Client client_;
  SubmitOptions options_;
  std::deque<TaskId> pending_;
  std::vector<TaskSpec> specs_;
  std::vector<TaskId> ids_;
};

class TaskringWorker final : public WorkerPort {
 public:
  explicit TaskringWorker(std::unique_ptr<Worker> worker) : worker_(std::move(worker)) {}
  ~TaskringWorker() override { g_worker.store(nullptr, std::memory_order_relaxed); }

  Status run(Executor& executor) override {
    TASKRING_RETURN_IF_ERROR(worker_->register_handler(kTask, [&executor](TaskContext& ctx) {
      Receipt r;
      if (!executor.run(ctx.payload(), r)) {
        ctx.fail("malformed task: no harness header or a key outside the run");
        return;
      }
      ctx.set_result(std::string_view(reinterpret_cast<const char*>(&r), sizeof r));
    }));
    return worker_->run();
  }

 private:
  std::unique_ptr<Worker> worker_;
};

// Stopping the sidecar: it polls its flag every 100 ms, then writes and syncs
// what it has left.
constexpr std::int64_t kSidecarStopTimeoutNs = 30'000'000'000;

class TaskringSystem final : public System {
 public:
  explicit TaskringSystem(TaskringDurability durability) : durability_(std::move(durability)) {}
  std::string_view name() const override { return "taskring"; }
  bool single_process() const override { return false; }

  Status prepare(const LoadConfig& c) override {
    static std::atomic<unsigned> counter{0};  // relaxed: only makes names unique
    segment_ = "trbench-" + std::to_string(getpid()) + "-" +
               std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    config_ = c;
    const std::uint64_t in_flight = std::uint64_t{c.producers} * c.inflight_limit();
    EngineConfig e;
    e.queues = {std::string(kQueue)};
    // Room for every task in flight (with its unread result) twice over.
    e.slots = static_cast<std::uint32_t>(pow2_at_least(std::max<std::uint64_t>(1024, 2 * in_flight + 256)));
    e.ring_capacity = static_cast<std::uint32_t>(pow2_at_least(std::max<std::uint64_t>(1024, in_flight)));
    e.max_payload = static_cast<std::uint32_t>(pow2_at_least(std::max<std::uint32_t>(c.payload, 64)));
    // Each task holds a payload block and a result block at most.
    const std::uint64_t block = pow2_at_least(std::max<std::uint64_t>(c.payload + 64, 128));
    e.payload_area = std::max<std::uint64_t>(8 << 20, (e.slots * (block + 128) + 4095) / 4096 * 4096);
    e.max_workers = std::max<std::uint32_t>(64, c.workers + 8);
    e.deque_capacity = static_cast<std::uint32_t>(pow2_at_least(std::max<std::uint32_t>(256, 4 * c.claim_batch)));
    const TaskringDurability& d = durability_;
    if (d.journal != JournalMode::kOff && d.fsync.empty()) {
      return invalid_argument("journal " + std::string(journal_mode_name(d.journal)) +
                              " without a sidecar: its journal would fill up; give the sidecar an fsync policy");
    }
    if (d.durable && d.journal == JournalMode::kOff) {
      return invalid_argument("durable submits need a journal (best-effort or durable) and a sidecar");
    }
    e.journal = d.journal;
    e.journal_capacity = d.journal_capacity;
    TASKRING_RETURN_IF_ERROR(create_segment(segment_, e, /*replace=*/true));
    if (d.fsync.empty()) return Status::ok();
    Status st = start_sidecar();
    if (!st.is_ok()) {
      // The harness calls cleanup() only after a successful prepare.
      sidecar_.reset();
      (void)destroy_segment(segment_);
      segment_.clear();
      remove_log_dir();
    }
    return st;
  }

  Result<std::unique_ptr<ProducerPort>> open_producer(std::uint32_t) override {
    auto client = Client::attach(segment_);
    if (!client.is_ok()) return client.status();
    return std::unique_ptr<ProducerPort>(
        std::make_unique<TaskringProducer>(std::move(client).value(), durability_.durable, config_.drain_timeout_ns));
  }

  Result<std::unique_ptr<WorkerPort>> open_worker(std::uint32_t) override {
    WorkerOptions o;
    o.queues = {std::string(kQueue)};
    o.claim_batch = config_.claim_batch;
    o.spin_rounds = config_.spin_rounds;
    auto worker = Worker::attach(segment_, o);
    if (!worker.is_ok()) return worker.status();
    g_worker.store(worker->get(), std::memory_order_relaxed);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, nullptr) != 0) {
      return internal_error(std::string("sigaction(SIGUSR1) failed: ") + std::strerror(errno));
    }
    return std::unique_ptr<WorkerPort>(std::make_unique<TaskringWorker>(std::move(worker).value()));
  }

  // Each worker process stops on SIGUSR1 (its handler was installed before
  // the worker counted itself ready, and a stop before run() is kept).
  void stop_workers(std::span<const pid_t> worker_pids) override {
    for (pid_t pid : worker_pids) kill(pid, SIGUSR1);
  }

  // The sidecar stops first, while the segment still exists, so that it
  // mirrors and syncs everything the run journalled.
  void cleanup() override {
    if (sidecar_ != nullptr) {
      sidecar_status_ = sidecar_->stop(kSidecarStopTimeoutNs);
      figures_.cpu_ns = sidecar_->cpu_ns();
      const sidecar::SidecarStats& s = sidecar_->stats();
      figures_.events = s.events;
      figures_.records = s.records;
      figures_.writes = s.writes;
      figures_.syncs = s.syncs;
      figures_.sync_ns_total = s.sync_ns_total;
      figures_.sync_ns_max = s.sync_ns_max;
      figures_.submits_synced = s.submits_synced;
      figures_.resyncs = s.resyncs;
      figures_.dropped = s.dropped;
      figures_.holes = s.holes;
      figures_.compactions = s.compactions;
      sidecar_.reset();
      ran_sidecar_ = true;
    }
    if (!segment_.empty()) (void)destroy_segment(segment_);
    segment_.clear();
    remove_log_dir();
  }

  void finish_report(RunResult& result) override {
    if (!ran_sidecar_) return;
    result.sidecar = figures_;
    result.helper_cpu_ns += figures_.cpu_ns;
    if (!sidecar_status_.is_ok() && result.status.is_ok()) result.status = sidecar_status_;
  }

  ~TaskringSystem() override { remove_log_dir(); }

 private:
  Status start_sidecar() {
    std::string templ = durability_.log_parent + "/trbench-log-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) {
      return internal_error("cannot make a log directory in '" + durability_.log_parent + "': " + std::strerror(errno));
    }
    log_dir_ = templ;
    auto policy = sidecar::parse_fsync_policy(durability_.fsync);
    if (!policy) return policy.status();
    sidecar::SidecarOptions o;
    o.segment = segment_;
    o.log_dir = log_dir_;
    o.fsync = *policy;
    o.restore = false;  // a fresh log: nothing to put back
    figures_ = SidecarFigures{};
    figures_.fsync = sidecar::fsync_policy_text(*policy);
    figures_.journal = std::string(journal_mode_name(durability_.journal));
    figures_.log_dir = log_dir_;
    auto sp = SidecarProcess::start(o);
    if (!sp) return sp.status();
    sidecar_ = std::move(sp).value();
    return Status::ok();
  }

  void remove_log_dir() {
    if (log_dir_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(log_dir_, ec);  // best effort: a temporary directory
    log_dir_.clear();
  }

  TaskringDurability durability_;
  std::string segment_;
  LoadConfig config_;
  std::string log_dir_;
  std::unique_ptr<SidecarProcess> sidecar_;
  Status sidecar_status_;
  SidecarFigures figures_;
  bool ran_sidecar_ = false;
};

}  // namespace

std::unique_ptr<System> make_taskring_system() { return make_taskring_system(TaskringDurability{}); }

std::unique_ptr<System> make_taskring_system(const TaskringDurability& durability) {
  return std::make_unique<TaskringSystem>(durability);
}

}  // namespace taskring::bench
