// `taskring-bench durability`: the throughput, ack and recovery scenarios,
// the fdatasync probe and the synthetic log.
#include "durability.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "load.h"
#include "options.h"
#include "report.h"
#include "table.h"
#include "taskring/admin.h"
#include "taskring/journal_reader.h"
#include "taskring/ipc/futex.h"
#include "sidecar.h"

namespace taskring::bench {

namespace {

namespace fs = std::filesystem;

std::int64_t now_ns() { return ipc::monotonic_ns(); }

std::string errno_text() { return std::strerror(errno); }

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string ns_text(std::int64_t ns) { return cli::format_duration_ns(ns); }

std::string rate_text(double tps) {
  if (tps >= 1e6) return fixed(tps / 1e6, 2) + " M/s";
  if (tps >= 1e3) return fixed(tps / 1e3, 1) + " k/s";
  return fixed(tps, 0) + " /s";
}

// ---- the state words of the synthetic log (docs/formats/segment.md, "State
// word"): [generation:32 | tag:8 | attempts:8 | owner:8 | flags:4 | state:4].
constexpr int kAttemptShift = 16;
constexpr int kOwnerShift = 8;
constexpr int kTagShift = 24;
constexpr std::uint64_t kQueuedBit = 1u << 4;

constexpr std::uint64_t word(std::uint32_t generation, std::uint32_t tag, std::uint32_t attempts, std::uint32_t owner,
                             std::uint64_t flags, TaskState state) {
  return (std::uint64_t{generation} << 32) | (std::uint64_t{tag & 0xFF} << kTagShift) |
         (std::uint64_t{attempts & 0xFF} << kAttemptShift) | (std::uint64_t{owner & 0xFF} << kOwnerShift) | flags |
         static_cast<std::uint64_t>(state);
}
constexpr std::uint32_t next_generation(std::uint32_t g) { return g + 1 == 0 ? 1 : g + 1; }
constexpr std::uint64_t task_id(std::uint32_t slot, std::uint32_t generation) {
  return (std::uint64_t{generation} << 32) | slot;
}

// Lags of the synthetic closed loop, in submissions (see SyntheticLogSpec).
constexpr std::uint64_t kStartLag = 32;
constexpr std::uint64_t kFinishLag = 33;
constexpr std::uint64_t kFreeLag = 256;
constexpr std::uint64_t kLagRing = 512;  // > kFreeLag, a power of two
constexpr std::size_t kWriteBatch = 8192;  // records per write(2), as the sidecar's default batch
constexpr std::uint32_t kFakeProducerPid = 4242;
constexpr std::uint32_t kFakeWorkerPid = 4243;

}  // namespace

// ---------------------------------------------------------------------------
// fdatasync probe, synthetic log, timed recovery

std::string filesystem_name(const std::string& dir) {
  struct statfs st {};
  if (statfs(dir.c_str(), &st) != 0) return "unknown";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlay";
    case 0x6969: return "nfs";
    case 0x2FC12FC1: return "zfs";
    case 0xF2F52010: return "f2fs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(st.f_type));
      return buf;
    }
  }
}

Result<FsyncProbe> probe_fdatasync(const std::string& dir, std::uint32_t count, std::uint32_t bytes) {
  if (count == 0 || bytes == 0) return invalid_argument("fdatasync probe: count and size must be above 0");
  FsyncProbe probe;
  probe.dir = dir;
  probe.filesystem = filesystem_name(dir);
  probe.bytes = bytes;
  std::string path = dir + "/trbench-fsync-probe-XXXXXX";
  const int fd = mkstemp(path.data());
  if (fd < 0) return internal_error("fdatasync probe: cannot create a file in '" + dir + "': " + errno_text());
  const std::string block(bytes, 'p');
  Status st;
  for (std::uint32_t i = 0; i < count && st.is_ok(); ++i) {
    const std::int64_t t0 = now_ns();
    std::size_t done = 0;
    while (done < block.size()) {
      const ssize_t n = write(fd, block.data() + done, block.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        st = internal_error("fdatasync probe: write to '" + path + "' failed: " + errno_text());
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    if (st.is_ok() && fdatasync(fd) != 0) {
      st = internal_error("fdatasync probe: fdatasync of '" + path + "' failed: " + errno_text());
    }
    probe.latency.record(now_ns() - t0);
  }
  close(fd);
  unlink(path.c_str());
  if (!st.is_ok()) return st;
  return probe;
}

Status SyntheticLogSpec::validate() const {
  constexpr std::uint64_t kMinSlots = 1024;
  if (slots < kMinSlots || slots > log::kMaxLogSlots) {
    return invalid_argument("--slots " + std::to_string(slots) + ": must be between 1024 and " +
                            std::to_string(log::kMaxLogSlots));
  }
  if (std::uint64_t{live} + kLagRing > slots) {
    return invalid_argument("--live " + std::to_string(live) + ": must leave room for the " +
                            std::to_string(kLagRing) + " tasks in flight among the --slots " + std::to_string(slots));
  }
  const std::uint64_t header = std::uint64_t{slots} + 3;
  if (records < header + 4 * std::uint64_t{live} + 1000) {
    return invalid_argument("--records " + std::to_string(records) + ": must be at least " +
                            std::to_string(header + 4 * std::uint64_t{live} + 1000) + " (the start's " +
                            std::to_string(header) + " records, 4 per --live task, and 1000 more)");
  }
  if (payload < 1 || payload > (1u << 20)) {
    return invalid_argument("--payload " + std::to_string(payload) + ": must be between 1 and 1M");
  }
  return Status::ok();
}

namespace {

// The generator behind write_synthetic_log: one slot table as the engine
// keeps it, and the records a sidecar would log for it.
class SyntheticWriter {
 public:
  SyntheticWriter(const SyntheticLogSpec& spec, log::LogWriter& writer)
      : spec_(spec), writer_(writer), slots_(spec.slots), ring_(kLagRing) {
    // The tasks left live on purpose: one every `stride_` submissions.
    const std::uint64_t tasks = spec.records / 4;
    stride_ = spec.live == 0 ? 0 : std::max<std::uint64_t>(1, tasks / spec.live);
    payload_.assign(spec.payload, 'x');
    result_.assign(32, 'r');
    epoch_ = static_cast<std::uint64_t>(cli::realtime_now_ns());
    // One second of wall time over the whole log, ending now.
    wall_ = static_cast<std::int64_t>(epoch_) - 1'000'000'000;
    wall_step_ = std::max<std::int64_t>(1, 1'000'000'000 / static_cast<std::int64_t>(spec.records));
    // The engine's free stack: slot 0 on top.
    for (std::uint32_t s = spec.slots; s-- > 0;) free_.push_back(s);
  }

  Status run(SyntheticLog& out) {
    // A sidecar's start: attached, then a snapshot of the (empty) table.
    log::Record r = base(log::RecordType::kSegmentAttached);
    r.aux = spec_.slots;
    r.text = "trbench-recovery";
    TASKRING_RETURN_IF_ERROR(emit(r));
    r = base(log::RecordType::kResyncBegin);
    r.aux = static_cast<std::uint32_t>(log::ResyncReason::kStart);
    r.text = "sidecar started";
    TASKRING_RETURN_IF_ERROR(emit(r));
    for (std::uint32_t s = 0; s < spec_.slots; ++s) {
      log::Record f = base(log::RecordType::kFreed);
      f.task_id = task_id(s, 1);
      f.state_word = word(1, 0, 0, 0, 0, TaskState::kFree);
      f.aux = static_cast<std::uint32_t>(log::FreeReason::kSlotFree);
      TASKRING_RETURN_IF_ERROR(emit(f));
    }
    r = base(log::RecordType::kResyncEnd);
    TASKRING_RETURN_IF_ERROR(emit(r));

    // The steady state, until exactly spec_.records records.
    for (std::uint64_t i = 0; !full(); ++i) {
      TASKRING_RETURN_IF_ERROR(submit(i));
      if (!full() && i >= kStartLag) TASKRING_RETURN_IF_ERROR(start(i - kStartLag));
      if (!full() && i >= kFinishLag) TASKRING_RETURN_IF_ERROR(finish(i - kFinishLag));
      if (!full() && i >= kFreeLag) TASKRING_RETURN_IF_ERROR(free(i - kFreeLag));
    }
    TASKRING_RETURN_IF_ERROR(writer_.write());
    TASKRING_RETURN_IF_ERROR(writer_.sync());
    out.records = written_;
    out.tasks = tasks_;
    for (const Slot& s : slots_) {
      if (s.state == TaskState::kPending) ++out.live_pending;
      if (s.state == TaskState::kRunning) ++out.live_running;
      if (s.state == TaskState::kSucceeded) ++out.live_succeeded;
    }
    return Status::ok();
  }

 private:
  struct Slot {
    std::uint32_t generation = 1;
    std::uint32_t tag = 0;
    TaskState state = TaskState::kFree;
  };
  enum class Keep : std::uint8_t { kNone, kPending, kRunning, kSucceeded };

  bool full() const { return written_ >= spec_.records; }
  // Where task i stops on purpose, if it is one of the live ones.
  Keep keep(std::uint64_t i) const {
    if (stride_ == 0 || i % stride_ != stride_ / 2 || i / stride_ >= spec_.live) return Keep::kNone;
    switch ((i / stride_) % 3) {
      case 0: return Keep::kPending;
      case 1: return Keep::kRunning;
      default: return Keep::kSucceeded;
    }
  }

  log::Record base(log::RecordType type) {
    log::Record r;
    r.type = type;
    r.epoch = epoch_;
    return r;
  }
  log::Record task(log::RecordType type, std::uint32_t slot, std::uint64_t state_word, std::uint32_t pid) {
    log::Record r = base(type);
    r.task_id = task_id(slot, slots_[slot].generation);
    r.state_word = state_word;
    r.pid = pid;
    return r;
  }
  Status emit(log::Record& r) {
    r.wall_ns = wall_;
    wall_ += wall_step_;
    writer_.append(r);
    ++written_;
    if (++unwritten_ == kWriteBatch) {
      unwritten_ = 0;
      return writer_.write();
    }
    return Status::ok();
  }

  Status submit(std::uint64_t i) {
    if (free_.empty()) return internal_error("synthetic log: no free slot (--slots too small)");
    const std::uint32_t slot = free_.back();
    free_.pop_back();
    ring_[i % kLagRing] = slot;
    Slot& s = slots_[slot];
    s.tag = (s.tag + 1) & 0xFF;  // a publish advances the tag
    s.state = TaskState::kPending;
    log::Record r = task(log::RecordType::kSubmitted, slot,
                         word(s.generation, s.tag, 0, 0, kQueuedBit, TaskState::kPending), kFakeProducerPid);
    // The task's number in the payload's first bytes, as a real one differs.
    std::memcpy(payload_.data(), &i, std::min<std::size_t>(sizeof i, payload_.size()));
    r.spec = log::TaskSpec{.queue = "default", .name = "bench", .priority = 2, .payload = payload_};
    ++tasks_;
    return emit(r);
  }
  Status start(std::uint64_t i) {
    if (keep(i) == Keep::kPending) return Status::ok();
    const std::uint32_t slot = ring_[i % kLagRing];
    Slot& s = slots_[slot];
    s.state = TaskState::kRunning;
    log::Record r = task(log::RecordType::kStarted, slot, word(s.generation, s.tag, 1, 1, 0, TaskState::kRunning),
                         kFakeWorkerPid);
    r.aux = 0;  // worker registry index
    return emit(r);
  }
  Status finish(std::uint64_t i) {
    const Keep k = keep(i);
    if (k == Keep::kPending || k == Keep::kRunning) return Status::ok();
    const std::uint32_t slot = ring_[i % kLagRing];
    Slot& s = slots_[slot];
    s.state = TaskState::kSucceeded;
    log::Record r = task(log::RecordType::kSucceeded, slot, word(s.generation, s.tag, 1, 0, 0, TaskState::kSucceeded),
                         kFakeWorkerPid);
    r.result = result_;
    return emit(r);
  }
  Status free(std::uint64_t i) {
    if (keep(i) != Keep::kNone) return Status::ok();
    const std::uint32_t slot = ring_[i % kLagRing];
    Slot& s = slots_[slot];
    const std::uint32_t next = next_generation(s.generation);
    // The freed word is the next generation's free word, keeping the tag.
    log::Record r = task(log::RecordType::kFreed, slot, word(next, s.tag, 0, 0, 0, TaskState::kFree), kFakeProducerPid);
    r.aux = static_cast<std::uint32_t>(log::FreeReason::kConsumed);
    s.generation = next;
    s.state = TaskState::kFree;
    free_.push_back(slot);
    return emit(r);
  }

  const SyntheticLogSpec& spec_;
  log::LogWriter& writer_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::vector<std::uint32_t> ring_;  // slot of task i at i % kLagRing
  std::uint64_t stride_ = 0;
  std::uint64_t epoch_ = 0;
  std::int64_t wall_ = 0;
  std::int64_t wall_step_ = 1;
  std::uint64_t written_ = 0;
  std::uint64_t unwritten_ = 0;
  std::uint64_t tasks_ = 0;
  std::string payload_;
  std::string result_;
};

std::vector<std::string> log_files(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("taskring-") && name.ends_with(".log")) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

Result<SyntheticLog> write_synthetic_log(const std::string& dir, const SyntheticLogSpec& spec) {
  TASKRING_RETURN_IF_ERROR(spec.validate());
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return failed_precondition("synthetic log: '" + dir + "' is not empty");
  }
  const std::int64_t t0 = now_ns();
  auto writer = log::LogWriter::open(dir, log::LogOptions{});
  if (!writer) return writer.status();
  SyntheticLog out;
  {
    SyntheticWriter gen(spec, *writer);
    TASKRING_RETURN_IF_ERROR(gen.run(out));
  }
  out.write_s = static_cast<double>(now_ns() - t0) / 1e9;
  out.bytes = writer->bytes_on_disk();
  out.files = log_files(dir).size();
  return out;
}

Result<double> evict_log_from_cache(const std::string& dir) {
  std::uint64_t pages = 0, resident = 0;
  const long page = sysconf(_SC_PAGESIZE);
  for (const std::string& path : log_files(dir)) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return internal_error("cannot open '" + path + "': " + errno_text());
    struct stat st {};
    if (fstat(fd, &st) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
      const std::string why = errno_text();
      close(fd);
      return internal_error("cannot drop '" + path + "' from the page cache: " + why);
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size > 0) {
      void* m = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) {
        const std::size_t n = (size + static_cast<std::size_t>(page) - 1) / static_cast<std::size_t>(page);
        std::vector<unsigned char> vec(n);
        if (mincore(m, size, vec.data()) == 0) {
          pages += n;
          for (unsigned char v : vec) resident += v & 1;
        }
        munmap(m, size);
      }
    }
    close(fd);
  }
  return pages == 0 ? 0.0 : static_cast<double>(resident) / static_cast<double>(pages);
}

Result<RecoveryPass> time_recovery(const std::string& dir, bool fold) {
  RecoveryPass pass;
  log::LogState state;
  const std::int64_t t0 = now_ns();
  auto read = fold ? log::read_log(dir,
                                   [&state](const log::Record& r) {
                                     // The reader's record is a const reference: copy-folding
                                     // is what the sidecar's start does too.
                                     state.apply(r);
                                     return true;
                                   })
                   : log::read_log(dir, [](const log::Record&) { return true; });
  if (!read) return read.status();
  if (fold) pass.live = state.live_tasks();
  pass.seconds = static_cast<double>(now_ns() - t0) / 1e9;
  pass.read = std::move(read).value();
  if (fold) pass.counts = state.counts();
  return pass;
}

// ---------------------------------------------------------------------------
// The commands

namespace {

constexpr double kThroughputTarget = 0.9;        // sidecar (never) / no journal, at least
constexpr double kTasksPerSyncTarget = 1000;     // at least
constexpr double kAckOverSyncTarget = 2.0;       // durable-ack p99 / fdatasync p99, at most
constexpr double kRecoveryTargetS = 2.0;         // 10M records, at most

// Flags shared by `throughput` and `ack`.
struct LoadCommand {
  LoadConfig config;
  TaskringDurability durability;
  std::string json_path;
  std::uint32_t probes = 200;  // ack only
};

struct RecoveryCommand {
  SyntheticLogSpec spec;
  std::string log_parent = "/var/tmp";
  bool restore = false;
  bool keep = false;
  std::string json_path;
};


// Prints each failed run's error and accounting problem; returns the exit status.
int check_runs(std::initializer_list<const RunResult*> runs, std::initializer_list<const char*> labels) {
  int exit_status = cli::kExitOk;
  auto label = labels.begin();
  for (const RunResult* r : runs) {
    const std::string who = *label++;
    if (!r->status.is_ok()) {
      cli::print_error(who, r->status.to_string());
      exit_status = cli::kExitFailure;
    }
    const std::string p = problems(*r);
    if (!p.empty()) {
      cli::print_error(who, "accounting found " + p);
      exit_status = cli::kExitFailure;
    }
  }
  return exit_status;
}

nlohmann::json load_result_json(const RunResult& r, const std::string& label) {
  nlohmann::json j = result_json(r);
  j["label"] = label;
  return j;
}

nlohmann::json durability_config_json(const LoadCommand& c) {
  nlohmann::json j = config_json(c.config);
  j["journal"] = std::string(journal_mode_name(c.durability.journal));
  j["journal_capacity"] = c.durability.journal_capacity;
  j["fsync"] = c.durability.fsync;
  j["durable"] = c.durability.durable;
  j["log_parent"] = c.durability.log_parent;
  j["log_filesystem"] = filesystem_name(c.durability.log_parent);
  return j;
}

int write_json(const std::string& path, const nlohmann::json& doc) {
  if (path.empty()) return cli::kExitOk;
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  if (!out) {
    cli::print_error("--json", "cannot write '" + path + "'");
    return cli::kExitFailure;
  }
  return cli::kExitOk;
}

Status check_log_parent(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return invalid_argument("--log-dir '" + dir + "': not a directory (the run makes its log directory inside it)");
  }
  if (access(dir.c_str(), W_OK) != 0) return invalid_argument("--log-dir '" + dir + "': not writable");
  return Status::ok();
}

Status validate_load(const LoadCommand& c) {
  TASKRING_RETURN_IF_ERROR(c.config.validate());
  const std::uint32_t cap = c.durability.journal_capacity;
  if (!std::has_single_bit(cap) || cap < 64 || cap > (1u << 24)) {
    return invalid_argument("--journal-capacity " + std::to_string(cap) + ": must be a power of two between 64 and " +
                            std::to_string(1u << 24));
  }
  return check_log_parent(c.durability.log_parent);
}

void warn_if_tmpfs(const std::string& dir) {
  if (filesystem_name(dir) == "tmpfs") {
    std::fprintf(stderr, "warning: --log-dir %s is on tmpfs: fdatasync costs nothing there, so durable figures "
                         "say nothing about a disk\n", dir.c_str());
  }
}

// ---- throughput

int run_throughput(LoadCommand& c) {
  Status valid = validate_load(c);
  if (!valid.is_ok()) return cli::report(valid, {}, "run 'taskring-bench durability throughput --help' for the flags");
  warn_if_tmpfs(c.durability.log_parent);
  const LoadConfig& cfg = c.config;
  std::fprintf(stderr, "running taskring without a journal: %u producer(s), %u worker(s)...\n", cfg.producers,
               cfg.workers);
  RunResult off = run_load(*make_taskring_system(), cfg);
  std::fprintf(stderr, "running taskring with a %s journal and a sidecar (fsync %s)...\n",
               std::string(journal_mode_name(c.durability.journal)).c_str(), c.durability.fsync.c_str());
  RunResult on = run_load(*make_taskring_system(c.durability), cfg);
  const double ratio = off.throughput_tps > 0 ? on.throughput_tps / off.throughput_tps : 0;

  cli::Table t({"run", "throughput", "vs off", "submitted", "completed", "lost", "dup", "cpu/task", "sidecar cpu/task",
                "rt p50", "rt p99", "events", "writes", "fdatasyncs"},
               "lrrrrrrrrrrrrr");
  for (const RunResult* r : {&off, &on}) {
    const LatencySummary rt = summarize(r->round_trip);
    const bool sc = r->sidecar.has_value();
    const double sc_cpu =
        sc && r->completed > 0 ? static_cast<double>(r->sidecar->cpu_ns) / static_cast<double>(r->completed) : 0;
    const std::string name = sc ? "sidecar (" + r->sidecar->fsync + ")" : "journal off";
    const bool rated = off.throughput_tps > 0 && r->throughput_tps > 0;
    t.add({name + (r->status.is_ok() ? "" : " (failed)"), rate_text(r->throughput_tps),
           rated ? fixed(r->throughput_tps / off.throughput_tps, 2) + "x" : "-",
           std::to_string(r->submitted), std::to_string(r->completed), std::to_string(r->lost),
           std::to_string(r->duplicates), ns_text(static_cast<std::int64_t>(r->cpu_ns_per_task)),
           sc ? ns_text(static_cast<std::int64_t>(sc_cpu)) : "-", ns_text(rt.p50), ns_text(rt.p99),
           sc ? std::to_string(r->sidecar->events) : "-", sc ? std::to_string(r->sidecar->writes) : "-",
           sc ? std::to_string(r->sidecar->syncs) : "-"});
  }
  std::cout << t.render();
  const bool met = ratio >= kThroughputTarget;
  std::cout << "sidecar / journal off: " << fixed(ratio, 2) << "x (target at least " << fixed(kThroughputTarget, 2)
            << "x): " << (met ? "met" : "not met") << "\n";

  int exit_status = check_runs({&off, &on}, {"journal off", "sidecar"});
  nlohmann::json doc = {{"meta", run_meta()},
                        {"scenario", "throughput"},
                        {"config", durability_config_json(c)},
                        {"results", {load_result_json(off, "journal off"), load_result_json(on, "sidecar")}},
                        {"ratio", ratio},
                        {"target", {{"ratio_at_least", kThroughputTarget}, {"met", met}}}};
  const int json_status = write_json(c.json_path, doc);
  return exit_status != cli::kExitOk ? exit_status : json_status;
}

// ---- ack

int run_ack(LoadCommand& c) {
  Status valid = validate_load(c);
  if (!valid.is_ok()) return cli::report(valid, {}, "run 'taskring-bench durability ack --help' for the flags");
  warn_if_tmpfs(c.durability.log_parent);
  // Half the probes before the run and half after it, so that a disk whose
  // latency drifts (other tenants) weighs on both sides alike.
  const std::uint32_t before_count = std::max<std::uint32_t>(1, c.probes / 2);
  std::fprintf(stderr, "probing fdatasync in %s: %u x (write %u bytes + fdatasync)...\n",
               c.durability.log_parent.c_str(), before_count, 4096u);
  auto probe = probe_fdatasync(c.durability.log_parent, before_count, 4096);
  if (!probe) return cli::report(probe.status(), "fdatasync probe");
  std::fprintf(stderr, "running taskring with durable submits, a %s journal and a sidecar (fsync %s): %u producer(s), "
                       "%u worker(s), batch %u...\n",
               std::string(journal_mode_name(c.durability.journal)).c_str(), c.durability.fsync.c_str(),
               c.config.producers, c.config.workers, c.config.batch);
  RunResult r = run_load(*make_taskring_system(c.durability), c.config);
  const Histogram before = probe->latency;
  Histogram after;
  if (c.probes > before_count) {
    std::fprintf(stderr, "probing fdatasync again: %u x...\n", c.probes - before_count);
    auto again = probe_fdatasync(c.durability.log_parent, c.probes - before_count, 4096);
    if (!again) return cli::report(again.status(), "fdatasync probe");
    after = again->latency;
    probe->latency.merge(after);
  }
  const LatencySummary sync = summarize(probe->latency);
  const LatencySummary ack = summarize(r.submit_call);
  const SidecarFigures sc = r.sidecar.value_or(SidecarFigures{});
  const double per_sync = sc.syncs == 0 ? 0 : static_cast<double>(sc.submits_synced) / static_cast<double>(sc.syncs);
  const double ack_over_sync = sync.p99 > 0 ? static_cast<double>(ack.p99) / static_cast<double>(sync.p99) : 0;

  std::cout << "fdatasync probe: " << probe->latency.count() << " x (write 4 KiB + fdatasync) in " << probe->dir
            << " (" << probe->filesystem << "), half before the run and half after: p50 " << ns_text(sync.p50)
            << ", p99 " << ns_text(sync.p99) << " (before " << ns_text(summarize(before).p99) << ", after "
            << ns_text(summarize(after).p99) << "), max " << ns_text(sync.max) << "\n";
  cli::Table t({"run", "throughput", "completed", "lost", "dup", "cpu/task", "ack p50", "ack p99", "ack p99.9",
                "ack max", "fdatasyncs", "tasks/fdatasync", "sync mean", "sync max"},
               "lrrrrrrrrrrrrr");
  t.add({std::string("durable (fsync ") + c.durability.fsync + ")" + (r.status.is_ok() ? "" : " (failed)"),
         rate_text(r.throughput_tps), std::to_string(r.completed), std::to_string(r.lost), std::to_string(r.duplicates),
         ns_text(static_cast<std::int64_t>(r.cpu_ns_per_task)), ns_text(ack.p50), ns_text(ack.p99), ns_text(ack.p999),
         ns_text(ack.max), std::to_string(sc.syncs), fixed(per_sync, 0),
         ns_text(sc.syncs == 0 ? 0 : static_cast<std::int64_t>(sc.sync_ns_total / sc.syncs)),
         ns_text(static_cast<std::int64_t>(sc.sync_ns_max))});
  std::cout << t.render();
  const bool per_sync_met = per_sync >= kTasksPerSyncTarget;
  const bool ack_met = ack_over_sync > 0 && ack_over_sync <= kAckOverSyncTarget;
  std::cout << "tasks per fdatasync: " << fixed(per_sync, 0) << " (target at least " << fixed(kTasksPerSyncTarget, 0)
            << "): " << (per_sync_met ? "met" : "not met") << "\n";
  std::cout << "durable-ack p99 / fdatasync p99: " << fixed(ack_over_sync, 2) << "x (target at most "
            << fixed(kAckOverSyncTarget, 1) << "x): " << (ack_met ? "met" : "not met") << "\n";

  int exit_status = check_runs({&r}, {"durable"});
  nlohmann::json probe_json = {{"dir", probe->dir},
                               {"filesystem", probe->filesystem},
                               {"bytes", probe->bytes},
                               {"count", probe->latency.count()},
                               {"latency_ns", latency_json(probe->latency)},
                               {"before_run_ns", latency_json(before)},
                               {"after_run_ns", latency_json(after)}};
  nlohmann::json doc = {
      {"meta", run_meta()},
      {"scenario", "ack"},
      {"config", durability_config_json(c)},
      {"fdatasync_probe", probe_json},
      {"results", {load_result_json(r, "durable")}},
      {"durable_ack_ns", latency_json(r.submit_call)},
      {"tasks_per_fdatasync", per_sync},
      {"ack_p99_over_fdatasync_p99", ack_over_sync},
      {"target",
       {{"tasks_per_fdatasync_at_least", kTasksPerSyncTarget},
        {"ack_p99_over_fdatasync_p99_at_most", kAckOverSyncTarget},
        {"tasks_per_fdatasync_met", per_sync_met},
        {"ack_met", ack_met}}}};
  const int json_status = write_json(c.json_path, doc);
  return exit_status != cli::kExitOk ? exit_status : json_status;
}

// ---- recovery

// Puts `live` back into a fresh segment and times it; checks the report.
struct RestoreFigures {
  double seconds = 0;
  LogRestoreReport report;
};
Result<RestoreFigures> time_restore(const std::vector<log::LiveTask>& live, std::uint32_t payload) {
  const std::string name = "trbench-restore-" + std::to_string(getpid());
  EngineConfig e;
  e.queues = {"default"};
  e.slots = static_cast<std::uint32_t>(std::bit_ceil(std::max<std::uint64_t>(1024, 2 * live.size() + 256)));
  e.ring_capacity = static_cast<std::uint32_t>(std::bit_ceil(std::max<std::uint64_t>(1024, live.size())));
  e.max_payload = static_cast<std::uint32_t>(std::bit_ceil(std::max<std::uint32_t>(payload, 64)));
  const std::uint64_t block = std::bit_ceil(std::max<std::uint64_t>(payload + 64, 128));
  e.payload_area = std::max<std::uint64_t>(8 << 20, (e.slots * (block + 128) + 4095) / 4096 * 4096);
  TASKRING_RETURN_IF_ERROR(create_segment(name, e, /*replace=*/true));
  RestoreFigures f;
  std::vector<log::Record> records;
  const std::int64_t t0 = now_ns();
  auto r = restore_tasks(name, live, records);
  f.seconds = static_cast<double>(now_ns() - t0) / 1e9;
  (void)destroy_segment(name);
  if (!r) return r.status();
  f.report = std::move(r).value();
  return f;
}

int run_recovery(RecoveryCommand& c) {
  Status valid = c.spec.validate();
  if (valid.is_ok()) valid = check_log_parent(c.log_parent);
  if (!valid.is_ok()) return cli::report(valid, {}, "run 'taskring-bench durability recovery --help' for the flags");
  std::string dir = c.log_parent + "/trbench-recovery-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    return cli::report(internal_error("cannot make a directory in '" + c.log_parent + "': " + errno_text()),
                       "--log-dir");
  }
  struct Remove {
    const std::string& dir;
    bool keep;
    ~Remove() {
      std::error_code ec;
      if (!keep) fs::remove_all(dir, ec);
    }
  } remove{dir, c.keep};

  std::fprintf(stderr, "writing a synthetic log of %llu records to %s...\n",
               static_cast<unsigned long long>(c.spec.records), dir.c_str());
  auto written = write_synthetic_log(dir, c.spec);
  if (!written) return cli::report(written.status(), "synthetic log");
  auto resident = evict_log_from_cache(dir);
  if (!resident) return cli::report(resident.status(), "page cache");
  std::fprintf(stderr, "timing recovery: read_log + LogState fold, from disk (%.0f%% still cached), then warm...\n",
               *resident * 100);
  auto cold = time_recovery(dir, true);
  if (!cold) return cli::report(cold.status(), "recovery");
  auto read_only = time_recovery(dir, false);
  if (!read_only) return cli::report(read_only.status(), "recovery");
  auto warm = time_recovery(dir, true);
  if (!warm) return cli::report(warm.status(), "recovery");

  std::optional<RestoreFigures> restored;
  if (c.restore) {
    auto r = time_restore(cold->live, c.spec.payload);
    if (!r) return cli::report(r.status(), "restore");
    restored = std::move(r).value();
  }

  // The accounting: the fold must find exactly what the generator left live.
  const log::StateCounts& k = cold->counts;
  std::vector<std::string> wrong;
  auto expect = [&](std::uint64_t got, std::uint64_t want, const char* what) {
    if (got != want) {
      wrong.push_back(std::string(what) + " " + std::to_string(got) + ", expected " + std::to_string(want));
    }
  };
  expect(cold->read.records, written->records, "records read");
  expect(k.live_pending, written->live_pending, "live pending");
  expect(k.live_running, written->live_running, "live running");
  expect(k.live_succeeded, written->live_succeeded, "live succeeded");
  expect(k.live_failed + k.live_cancelled, 0, "live failed or cancelled");
  expect(k.invalid, 0, "invalid records");
  expect(warm->live.size(), cold->live.size(), "live tasks on the warm pass");
  if (restored) {
    expect(restored->report.resubmitted, written->live_pending + written->live_running, "resubmitted");
    expect(restored->report.results_restored, written->live_succeeded, "results restored");
    expect(restored->report.skipped + restored->report.expired, 0, "skipped or expired");
  }

  const double cold_total = cold->seconds + (restored ? restored->seconds : 0);
  const bool met = cold_total <= kRecoveryTargetS;
  cli::Table t({"records", "tasks", "live", "log", "files", "write", "cold: read+fold", "warm: read", "warm: read+fold",
                "restore", "records/s (cold)"},
               "rrrrrrrrrrr");
  t.add({std::to_string(written->records), std::to_string(written->tasks), std::to_string(cold->live.size()),
         cli::format_bytes(written->bytes), std::to_string(written->files),
         ns_text(static_cast<std::int64_t>(written->write_s * 1e9)),
         ns_text(static_cast<std::int64_t>(cold->seconds * 1e9)),
         ns_text(static_cast<std::int64_t>(read_only->seconds * 1e9)),
         ns_text(static_cast<std::int64_t>(warm->seconds * 1e9)),
         restored ? ns_text(static_cast<std::int64_t>(restored->seconds * 1e9)) : "-",
         fixed(cold->seconds > 0 ? static_cast<double>(cold->read.records) / cold->seconds / 1e6 : 0, 2) + " M"});
  std::cout << t.render();
  std::cout << "recovery (cold read_log + fold" << (restored ? " + restore" : "") << "): "
            << ns_text(static_cast<std::int64_t>(cold_total * 1e9)) << " (target under "
            << fixed(kRecoveryTargetS, 0) << " s for 10M records): " << (met ? "met" : "not met") << "\n";

  if (c.keep) std::cout << "log kept in " << dir << "\n";
  int exit_status = cli::kExitOk;
  if (!wrong.empty()) {
    std::string text;
    for (const std::string& w : wrong) text += (text.empty() ? "" : "; ") + w;
    cli::print_error("recovery", "the fold did not find what was written: " + text);
    exit_status = cli::kExitFailure;
  }
  nlohmann::json restore_json = nullptr;
  if (restored) {
    restore_json = {{"seconds", restored->seconds},
                    {"resubmitted", restored->report.resubmitted},
                    {"results_restored", restored->report.results_restored},
                    {"expired", restored->report.expired},
                    {"skipped", restored->report.skipped}};
  }
  nlohmann::json doc = {
      {"meta", run_meta()},
      {"scenario", "recovery"},
      {"config",
       {{"records", c.spec.records},
        {"live", c.spec.live},
        {"payload", c.spec.payload},
        {"slots", c.spec.slots},
        {"restore", c.restore},
        {"log_parent", c.log_parent},
        {"log_filesystem", filesystem_name(c.log_parent)}}},
      {"log",
       {{"records", written->records},
        {"tasks", written->tasks},
        {"bytes", written->bytes},
        {"files", written->files},
        {"write_s", written->write_s},
        {"expected_live", {{"pending", written->live_pending}, {"running", written->live_running},
                           {"succeeded", written->live_succeeded}}}}},
      {"cached_fraction_before_cold", *resident},
      {"cold_s", cold->seconds},
      {"warm_read_s", read_only->seconds},
      {"warm_s", warm->seconds},
      {"restore", restore_json},
      {"recovery_s", cold_total},
      {"found",
       {{"records", cold->read.records},
        {"live", cold->live.size()},
        {"pending", k.live_pending},
        {"running", k.live_running},
        {"succeeded", k.live_succeeded},
        {"stale_ignored", k.stale_ignored},
        {"invalid", k.invalid}}},
      {"ok", wrong.empty()},
      {"target", {{"recovery_s_at_most", kRecoveryTargetS}, {"met", met}}}};
  const int json_status = write_json(c.json_path, doc);
  return exit_status != cli::kExitOk ? exit_status : json_status;
}

// The flags of `throughput` and `ack`.
void add_load_flags(CLI::App* sub, LoadCommand& c) {
  LoadConfig& cfg = c.config;
  cli::add_unsigned_option(sub, "-p,--producers", cfg.producers, 1, 64, "producer processes");
  cli::add_unsigned_option(sub, "-w,--workers", cfg.workers, 1, 64, "worker processes");
  cli::add_unsigned_option(sub, "-n,--tasks", cfg.tasks, 1, std::uint64_t{1} << 36, "tasks per run");
  cli::add_unsigned_option(sub, "--inflight", cfg.inflight, 1, 1 << 16,
                           "tasks in flight per producer (default: max(64, batch))");
  add_workload_options(sub, cfg);
  add_value_option(sub, "--drain-timeout", "--drain-timeout", cfg.drain_timeout_ns, parse_positive_seconds,
                   "end a run when no task finished for this long (also the longest wait for a durable "
                   "acknowledgement)", "SECONDS", "10");
  cli::add_parsed_option(
      sub, "--journal", "--journal",
      [&c](std::string_view text) -> Status {
        auto m = parse_journal_mode(text);
        if (!m) return m.status();
        if (*m == JournalMode::kOff) {
          return invalid_argument("'off': must be durable or best-effort (the run with a sidecar needs a journal)");
        }
        c.durability.journal = *m;
        return Status::ok();
      },
      "the segment's journal with the sidecar: durable (a full journal makes state changes wait) or best-effort "
      "(it drops and the sidecar resyncs)",
      "MODE", "durable");
  cli::add_unsigned_option(sub, "--journal-capacity", c.durability.journal_capacity, 64, 1u << 24,
                           "journal cells (a power of two)");
  cli::add_parsed_option(
      sub, "--log-dir", "--log-dir",
      [&c](std::string_view text) -> Status {
        if (text.empty()) return invalid_argument("'': must be a directory");
        c.durability.log_parent = std::string(text);
        return Status::ok();
      },
      "the directory (on the disk to measure) in which each run makes its log directory, removed after it", "DIR",
      "/var/tmp");
  sub->add_option("--json", c.json_path, "also write the results as JSON to this file");
}

void add_fsync_flag(CLI::App* sub, LoadCommand& c, const std::string& default_text) {
  c.durability.fsync = default_text;
  cli::add_parsed_option(
      sub, "--fsync", "--fsync",
      [&c](std::string_view text) -> Status {
        auto p = sidecar::parse_fsync_policy(text);
        if (!p) return p.status();
        c.durability.fsync = sidecar::fsync_policy_text(*p);
        return Status::ok();
      },
      "the sidecar's fsync policy: always, never (page cache) or interval:MS", "POLICY", default_text);
}

}  // namespace

void add_durability_command(CLI::App& app, cli::Action& action) {
  CLI::App* dur = app.add_subcommand(
      "durability", "The durability scenarios: throughput with a sidecar, durable acknowledgements, recovery time");
  dur->require_subcommand(1);

  auto tp = std::make_shared<LoadCommand>();
  tp->config.tasks = 200'000;
  tp->durability.journal = JournalMode::kDurable;
  CLI::App* tsub = dur->add_subcommand(
      "throughput", "The same workload over taskring without a journal and with a journal and a sidecar, in one "
                    "invocation; reports the ratio (target at least 0.9x)");
  add_load_flags(tsub, *tp);
  add_fsync_flag(tsub, *tp, "never");
  tsub->callback([tp, &action] { action = [tp] { return run_throughput(*tp); }; });

  auto ack = std::make_shared<LoadCommand>();
  ack->config.tasks = 200'000;
  ack->config.producers = 4;
  ack->config.batch = 512;
  ack->config.inflight = 1024;
  ack->durability.journal = JournalMode::kDurable;
  ack->durability.durable = true;
  CLI::App* asub = dur->add_subcommand(
      "ack", "Durable submits under load (default --fsync always) beside the fdatasync latency measured in the log "
             "directory; reports tasks per fdatasync (target at least 1000) and durable-ack p99 / fdatasync p99 "
             "(target at most 2x)");
  add_load_flags(asub, *ack);
  add_fsync_flag(asub, *ack, "always");
  cli::add_unsigned_option(asub, "--probes", ack->probes, 1, 1'000'000,
                           "write 4 KiB + fdatasync pairs timed in the log directory, half before the run and half "
                           "after it");
  asub->callback([ack, &action] { action = [ack] { return run_ack(*ack); }; });

  auto rec = std::make_shared<RecoveryCommand>();
  CLI::App* rsub = dur->add_subcommand(
      "recovery", "Write a synthetic log with LogWriter, then time read_log and the LogState fold from disk and "
                  "warm (target under 2 s for 10M records)");
  cli::add_unsigned_option(rsub, "--records", rec->spec.records, 1, std::uint64_t{1} << 40,
                           "records in the log, the start's snapshot of every slot included");
  cli::add_unsigned_option(rsub, "--live", rec->spec.live, 0, log::kMaxLogSlots,
                           "tasks left live on purpose (a third each pending, running, succeeded unread)");
  cli::add_unsigned_option(rsub, "--slots", rec->spec.slots, 1024, log::kMaxLogSlots, "the segment's slot count");
  add_value_option(rsub, "--payload", "--payload", rec->spec.payload, parse_payload,
                   "payload bytes per task (16 to 1M; K and M suffixes)", "BYTES", "32");
  rsub->add_flag("--restore", rec->restore, "also put the live tasks back into a fresh segment, timed");
  cli::add_parsed_option(
      rsub, "--log-dir", "--log-dir",
      [rec](std::string_view text) -> Status {
        if (text.empty()) return invalid_argument("'': must be a directory");
        rec->log_parent = std::string(text);
        return Status::ok();
      },
      "the directory (on the disk to measure) in which the log is written, removed after", "DIR", "/var/tmp");
  rsub->add_flag("--keep-log", rec->keep, "keep the log directory (its path is printed)");
  rsub->add_option("--json", rec->json_path, "also write the results as JSON to this file");
  rsub->callback([rec, &action] { action = [rec] { return run_recovery(*rec); }; });
}

}  // namespace taskring::bench
