// The load harness's vocabulary: what a run is asked to do (LoadConfig), what
// travels in every task (TaskHeader out, Receipt back), the interface each
// compared system implements (System, ProducerPort, WorkerPort), the handler
// every system runs (Executor), what a run reports (RunResult), and how the
// taskring system journals and runs a sidecar for the durability scenarios
// (TaskringDurability).
//
// Every system runs the same workload through the same producer loop and
// the same Executor; only the transport differs. See docs/performance.md.
//
// Thread safety: LoadConfig and RunResult are values. A ProducerPort or a
// WorkerPort is used by one thread. Executor::run may be called from one
// thread at a time per Executor (each worker has its own).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "histogram.h"
#include "taskring/base/status.h"
#include "taskring/options.h"

namespace taskring::bench {

struct RunResult;

// What each task's handler does.
struct HandlerSpec {
  enum class Kind : std::uint8_t { kNoop, kSpin };
  Kind kind = Kind::kNoop;
  std::int64_t spin_ns = 0;  // kSpin: busy-wait this long
  // "noop" or "spin:US" as given.
  std::string to_string() const;
};
// Accepts "noop" and "spin:US" (US a whole number of microseconds, 1..1000000).
// The error message starts with the quoted text (the caller adds the flag).
Result<HandlerSpec> parse_handler(std::string_view text);

// A rate in tasks per second: a decimal number above 0 and at most 1e9,
// optionally followed by k (thousands) or M (millions): "50000", "50k", "1.5M".
// The error message starts with the quoted text (the caller adds the flag).
Result<double> parse_rate(std::string_view text);

// One run of the harness. Exactly one of `tasks` and `duration_ns` is set;
// `rate` == 0 is a closed loop, > 0 an open loop.
struct LoadConfig {
  std::uint32_t producers = 1;
  std::uint32_t workers = 1;
  std::uint64_t tasks = 0;         // total over all producers; 0: run for duration_ns
  std::int64_t duration_ns = 0;    // 0: run `tasks` tasks
  std::uint32_t batch = 1;         // tasks per submit call; 1 = the one-task API
  std::uint32_t inflight = 0;      // per producer: tasks submitted and not yet seen finished
  double rate = 0;                 // open loop: tasks per second over all producers
  std::uint32_t payload = 32;      // bytes per task, at least sizeof(TaskHeader)
  HandlerSpec handler;
  bool pin = false;                // pin producer i to cpu i % n, worker j to (P + j) % n
  std::int64_t drain_timeout_ns = 10'000'000'000;  // no progress this long ends the run
  // taskring only: worker idle polls before parking (WorkerOptions::spin_rounds)
  // and tasks taken from a ring at once (WorkerOptions::claim_batch).
  std::uint32_t spin_rounds = 256;
  std::uint32_t claim_batch = 16;
  // Fault injection, to test the harness's own accounting: producer 0 counts
  // its first `inject_loss` tasks as submitted without handing them to the
  // system, and hands its next `inject_duplicate` tasks over twice.
  std::uint64_t inject_loss = 0;
  std::uint64_t inject_duplicate = 0;

  // The effective in-flight limit: `inflight` if set, else max(64, batch) in
  // a closed loop and 4096 in an open loop.
  std::uint32_t inflight_limit() const noexcept;
  // Tasks producer `index` submits in a `tasks` run (the total split evenly,
  // the first ones taking the remainder).
  std::uint64_t tasks_for_producer(std::uint32_t index) const noexcept;
  // Checks every field and their combinations; the error names the flag,
  // the value and what is accepted.
  Status validate() const;
};

// The first bytes of every task's payload, written by the producer. The rest
// of the payload is filler up to LoadConfig::payload bytes.
struct TaskHeader {
  std::uint64_t key;          // make_key(producer, sequence)
  std::int64_t intended_ns;   // CLOCK_MONOTONIC: when the task was due to be submitted
};
static_assert(sizeof(TaskHeader) == 16);

// What a worker sends back for each task it ran.
struct Receipt {
  std::uint64_t key;
  std::int64_t intended_ns;   // copied from the header
  std::int64_t start_ns;      // handler started (CLOCK_MONOTONIC)
  std::int64_t end_ns;        // handler finished
};
static_assert(sizeof(Receipt) == 32);

inline constexpr int kSequenceBits = 40;
// The most tasks one producer may issue in a --duration run: the length of
// its completion-count array in the run's bookkeeping.
inline constexpr std::uint64_t kDurationCapacity = std::uint64_t{1} << 27;
constexpr std::uint64_t make_key(std::uint32_t producer, std::uint64_t sequence) noexcept {
  return (std::uint64_t{producer} << kSequenceBits) | sequence;
}
constexpr std::uint32_t key_producer(std::uint64_t key) noexcept {
  return static_cast<std::uint32_t>(key >> kSequenceBits);
}
constexpr std::uint64_t key_sequence(std::uint64_t key) noexcept {
  return key & ((std::uint64_t{1} << kSequenceBits) - 1);
}

// Counts, per worker, how often it ran each (producer, sequence): the run's
// oracle for duplicated execution. Points into the run's shared mapping.
class ExecutionLog {
 public:
  ExecutionLog() = default;
  ExecutionLog(std::uint8_t* counts, std::uint32_t producers, std::uint64_t capacity) noexcept
      : counts_(counts), producers_(producers), capacity_(capacity) {}
  // Counts one execution of `key` (saturating at 255). False if the key is
  // outside the run (unknown producer or sequence): a corrupt task.
  bool record(std::uint64_t key) noexcept;

 private:
  std::uint8_t* counts_ = nullptr;
  std::uint32_t producers_ = 0;
  std::uint64_t capacity_ = 0;
};

// The handler every system runs: reads the header, stamps the start, runs
// the configured work, stamps the end, records the execution.
class Executor {
 public:
  Executor(const HandlerSpec& handler, ExecutionLog log) noexcept : handler_(handler), log_(log) {}
  // Runs the task whose payload is `payload` and fills `out`. Returns false
  // (and runs nothing) if the payload is shorter than a TaskHeader or its key
  // is outside the run; the caller counts it as malformed.
  bool run(std::string_view payload, Receipt& out) noexcept;
  std::uint64_t executed() const noexcept { return executed_; }
  std::uint64_t malformed() const noexcept { return malformed_; }

 private:
  HandlerSpec handler_;
  ExecutionLog log_;
  std::uint64_t executed_ = 0;
  std::uint64_t malformed_ = 0;
};

// A system's producer side, opened in the producer's process or thread.
class ProducerPort {
 public:
  virtual ~ProducerPort() = default;
  // Hands the tasks whose payloads are `payloads` to the system: one call is
  // one batch where the system has a batch API, else one send per task.
  // Waits while the system is full. An error ends the producer.
  virtual Status submit(std::span<const std::string_view> payloads) = 0;
  // Copies receipts of finished tasks into the front of `out` and returns how
  // many. When none is ready, waits up to `timeout_ns` (0: does not wait) for
  // the first. Returns 0 on timeout.
  virtual Result<std::size_t> collect(std::span<Receipt> out, std::int64_t timeout_ns) = 0;
};

// A system's worker side, opened in the worker's process or thread.
class WorkerPort {
 public:
  virtual ~WorkerPort() = default;
  // Runs tasks through `executor` and sends each receipt back to the task's
  // producer (key_producer) until System::stop_workers is called. A task
  // whose payload the executor rejects is dropped (it counts as malformed).
  virtual Status run(Executor& executor) = 0;
};

// One compared system: taskring, or a baseline. One object per run.
class System {
 public:
  virtual ~System() = default;
  // "taskring", "bip_mq", "moodycamel" or "tbb".
  virtual std::string_view name() const = 0;
  // True when producers and workers are threads of one process (moodycamel,
  // tbb); false when each is a process of its own (taskring, bip_mq).
  virtual bool single_process() const = 0;
  // Creates the shared structures sized for `config`. Called once, in the
  // process that then starts the producers and workers, before any of them.
  virtual Status prepare(const LoadConfig& config) = 0;
  // Called in the producer's (worker's) own process or thread.
  virtual Result<std::unique_ptr<ProducerPort>> open_producer(std::uint32_t index) = 0;
  virtual Result<std::unique_ptr<WorkerPort>> open_worker(std::uint32_t index) = 0;
  // Makes every WorkerPort::run return. Called once, in the process that
  // called prepare, after every producer has finished. `worker_pids` are the
  // worker processes (empty for single-process systems).
  virtual void stop_workers(std::span<const pid_t> worker_pids) = 0;
  // Removes what prepare created. Called after every worker has returned.
  virtual void cleanup() = 0;
  // Adds to `result` what only the system knows, once cleanup() has run:
  // the taskring system's sidecar figures and CPU time, and the sidecar's
  // failure if it failed. Most systems add nothing.
  virtual void finish_report(RunResult& /*result*/) {}
};

// Sleeps `ns` nanoseconds (nothing if <= 0), resuming after signals. For
// ports whose wait has nothing to wait on. May block.
void sleep_ns(std::int64_t ns) noexcept;

// How the taskring system runs for the durability scenarios (bench
// `durability`, docs/benchmarking.md): the segment's journal, a sidecar
// process beside the run, and durable acknowledgements. The default is the
// plain system: no journal, no sidecar.
struct TaskringDurability {
  JournalMode journal = JournalMode::kOff;  // EngineConfig::journal
  std::uint32_t journal_capacity = 65536;   // EngineConfig::journal_capacity
  // The sidecar's --fsync policy ("always", "never", "interval:MS"), or ""
  // for no sidecar. A journal needs a sidecar (else it fills up and, in
  // durable mode, every state change waits).
  std::string fsync;
  // Producers submit with SubmitOptions::durable (needs a sidecar), waiting
  // at most --drain-timeout for each acknowledgement.
  bool durable = false;
  // The sidecar's log goes to a fresh directory made in here for the run
  // and removed after it. Its file system is the disk the run measures.
  std::string log_parent = "/var/tmp";
};

// What the taskring system's sidecar did during one run (RunResult::sidecar):
// its SidecarStats, as the sidecar process left them when it stopped.
struct SidecarFigures {
  std::string fsync;                 // the policy
  std::string journal;               // the segment's journal mode: durable, best-effort
  std::string log_dir;               // where the run's log was (removed after the run)
  std::uint64_t events = 0;          // journal events mirrored
  std::uint64_t records = 0;         // log records written
  std::uint64_t writes = 0;          // write(2) batches
  std::uint64_t syncs = 0;           // fdatasyncs, the start's and the final one included
  std::uint64_t sync_ns_total = 0;
  std::uint64_t sync_ns_max = 0;
  std::uint64_t submits_synced = 0;  // kSubmitted records those syncs covered
  std::uint64_t resyncs = 0;         // the start's, and one per gap (best-effort drops, holes)
  std::uint64_t dropped = 0;         // events the journal dropped (best-effort)
  std::uint64_t holes = 0;
  std::uint64_t compactions = 0;
  std::int64_t cpu_ns = 0;           // user + system CPU of the sidecar process
};

// Factories, one file each (taskring_system.cc, bip_mq_system.cc, ...).
std::unique_ptr<System> make_taskring_system();
// The taskring system with a journal, a sidecar and durable submits as
// `durability` says. prepare() refuses a journal without a sidecar and
// durable submits without a journal (kInvalidArgument).
std::unique_ptr<System> make_taskring_system(const TaskringDurability& durability);
std::unique_ptr<System> make_bip_mq_system();
std::unique_ptr<System> make_moodycamel_system();
std::unique_ptr<System> make_tbb_system();
// "taskring", "bip_mq", "moodycamel", "tbb"; nullptr for anything else.
std::unique_ptr<System> make_system(std::string_view name);
inline constexpr std::string_view kSystemNames[] = {"taskring", "bip_mq", "moodycamel", "tbb"};

// Latency percentiles of one histogram, in nanoseconds.
struct LatencySummary {
  std::uint64_t count = 0;
  std::int64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
};
LatencySummary summarize(const Histogram& h);

// What one system's run measured.
struct RunResult {
  std::string system;
  Status status;                    // not OK: the run failed and the figures are partial
  double throughput_tps = 0;        // completed / (last receipt seen - the start signal)
  double elapsed_s = 0;
  std::uint64_t submitted = 0;      // tasks the producers counted as submitted
  std::uint64_t completed = 0;      // distinct tasks whose receipt a producer saw
  std::uint64_t lost = 0;           // submitted, never seen completed
  std::uint64_t duplicates = 0;     // tasks run or completed more than once
  std::uint64_t malformed = 0;      // payloads or receipts outside the run
  bool stalled = false;             // a producer with tasks left saw no progress for drain_timeout
  double cpu_ns_per_task = 0;       // user + system CPU of every process of the run / completed
  Histogram submit_to_start;        // intended submission -> handler start
  Histogram start_to_complete;      // handler start -> handler end
  Histogram round_trip;             // intended submission -> receipt seen by the producer
  // How long each submit call (one task, or one batch) took: with durable
  // submits, the durable acknowledgement.
  Histogram submit_call;
  // CPU of processes the system ran besides the producers and workers (the
  // taskring sidecar); included in cpu_ns_per_task.
  std::int64_t helper_cpu_ns = 0;
  std::optional<SidecarFigures> sidecar;  // the taskring system ran a sidecar
};

// Runs `config` over `system`: starts the producers and workers (processes
// or threads), runs the workload, stops everything and checks every task.
// Errors (a process that failed to start or died) are in RunResult::status.
// Forks: call it from a single-threaded process. May block for the whole run.
RunResult run_load(System& system, const LoadConfig& config);

}  // namespace taskring::bench
