#include "taskring/journal_reader.h"

#include <algorithm>
#include <cstring>

#include "engine_internal.h"
#include "seqlock_internal.h"
#include "taskring/client.h"
#include "taskring/ipc/futex.h"
#include "taskring/ipc/process.h"

namespace taskring {

using detail::Engine;
using detail::JournalEvent;
using detail::TaskSlot;
namespace sw = detail::sw;

namespace {

// The generation before `g` (free words carry the next one; 0 is skipped).
std::uint32_t previous_generation(std::uint32_t g) noexcept { return g == 1 ? 0xFFFFFFFFu : g - 1; }

bool same_task(std::uint64_t a, std::uint64_t b) noexcept {
  return sw::generation(a) == sw::generation(b) && sw::live(a) && sw::live(b);
}

// Copies what a submit fixed about the task in `s` into `spec`, racily;
// true if the slot still held the task of `word` afterwards (a seqlock read:
// payload and spec do not change while the generation stays).
bool copy_spec(const Engine& e, const TaskSlot& s, std::uint64_t word, log::TaskSpec& spec) {
  // Acquire, as [A3]: the submitter's fields happen before its [R3].
  if (!same_task(s.state.load(std::memory_order_acquire), word)) return false;
  const std::size_t name_len = std::min<std::size_t>(detail::racy_read(s.name_len), kMaxTaskNameLength);
  detail::racy_copy(spec.name, s.name, name_len);
  spec.queue = std::string(e.queue_name(s.queue.load(std::memory_order_relaxed)));
  spec.priority = static_cast<std::uint8_t>(detail::racy_read(s.priority) & 3);
  spec.max_attempts = detail::racy_read(s.max_attempts);
  spec.max_crashes = detail::racy_read(s.max_crashes);
  spec.detached = (word & sw::kReleased) != 0;
  // Relaxed: validated by the re-read below.
  spec.time_limit_ms = s.time_limit_ms.load(std::memory_order_relaxed);
  const std::int64_t run_at = s.run_at_ns.load(std::memory_order_relaxed);
  spec.run_at_wall_ns = run_at == 0 ? 0 : ipc::realtime_ns() + (run_at - ipc::monotonic_ns());
  if (!detail::racy_copy_bytes(e, s, false, spec.payload)) spec.payload.clear();
  detail::seqlock_fence();
  return same_task(s.state.load(std::memory_order_relaxed), word);
}

// Copies the result of the finished task of `word` in `s`; true if the slot
// still held that outcome afterwards (same generation, tag and state).
bool copy_result(const Engine& e, const TaskSlot& s, std::uint64_t word, std::string& out) {
  const auto same_outcome = [word](std::uint64_t w) {
    return sw::generation(w) == sw::generation(word) && sw::tag(w) == sw::tag(word) && sw::state(w) == sw::state(word);
  };
  if (!same_outcome(s.state.load(std::memory_order_acquire))) return false;  // acquire, as [A3]
  if (!detail::racy_copy_bytes(e, s, true, out)) return false;
  detail::seqlock_fence();
  return same_outcome(s.state.load(std::memory_order_relaxed));
}

}  // namespace

Result<std::unique_ptr<JournalReader>> JournalReader::attach(std::string_view segment) {
  auto engine = Engine::attach(segment, ipc::Access::kReadWrite);
  if (!engine) return engine.status();
  Engine& e = **engine;
  if (!e.journaling()) {
    return failed_precondition("segment '" + std::string(segment) +
                               "' has no journal: create it with --journal best-effort or durable");
  }
  if (!e.take_journal_reader()) {
    return failed_precondition("segment '" + std::string(segment) + "': this process (pid " +
                               std::to_string(ipc::current_pid()) + ") already reads its journal");
  }
  ipc::JournalControl& c = e.journal().control();
  const std::uint32_t me = ipc::current_pid();
  // Relaxed: the CAS decides; the start time is informative for the next taker.
  std::uint32_t holder = c.reader_pid.load(std::memory_order_relaxed);
  for (;;) {
    if (holder != 0 && holder != me &&
        ipc::process_running(holder, c.reader_start_time.load(std::memory_order_relaxed))) {
      e.give_journal_reader();
      return failed_precondition("segment '" + std::string(segment) + "': another sidecar (pid " +
                                 std::to_string(holder) + ") already reads its journal");
    }
    // acq_rel: the previous reader's position (head) is acquired with it.
    if (c.reader_pid.compare_exchange_weak(holder, me, std::memory_order_acq_rel, std::memory_order_relaxed)) break;
  }
  c.reader_start_time.store(ipc::current_start_time(), std::memory_order_relaxed);
  std::unique_ptr<JournalReader> r(new JournalReader());
  r->engine_ = std::move(engine).value();
  r->name_ = std::string(segment);
  r->epoch_ = r->engine_->segment().header().created_unix_ns;
  r->pos_ = r->engine_->journal().head();
  r->heartbeat();
  return r;
}

JournalReader::~JournalReader() {
  if (!engine_) return;
  ipc::JournalControl& c = engine_->journal().control();
  std::uint32_t me = ipc::current_pid();
  // Release: our last head store happens before the next reader's acquire.
  c.reader_pid.compare_exchange_strong(me, 0, std::memory_order_release, std::memory_order_relaxed);
  engine_->give_journal_reader();
}

std::uint32_t JournalReader::slot_count() const noexcept { return engine_->slot_count(); }
JournalMode JournalReader::mode() const noexcept { return engine_->config().journal; }
const EngineConfig& JournalReader::config() const noexcept { return engine_->config(); }
bool JournalReader::closing() const noexcept { return engine_->closing(); }
std::uint64_t JournalReader::dropped() const noexcept { return engine_->journal().dropped(); }

void JournalReader::heartbeat() noexcept {
  // Relaxed: informative, for status tools.
  engine_->journal().control().reader_heartbeat_ns.store(ipc::monotonic_ns(), std::memory_order_relaxed);
}

bool JournalReader::fill(const void* body, std::int64_t wall_ns, log::Record& r) {
  JournalEvent ev;
  std::memcpy(&ev, body, sizeof ev);
  const Engine& e = *engine_;
  if (ev.slot >= e.slot_count() || ev.type < static_cast<std::uint8_t>(log::RecordType::kSubmitted) ||
      ev.type > static_cast<std::uint8_t>(log::RecordType::kFreed)) {
    return false;
  }
  r = log::Record{};
  r.type = static_cast<log::RecordType>(ev.type);
  // A finished task stored by restore_tasks is published as submitted with
  // its terminal word: the log records it whole, as a snapshot of it.
  if (r.type == log::RecordType::kSubmitted && is_terminal(sw::state(ev.word))) r.type = log::RecordType::kTaskSnapshot;
  r.wall_ns = wall_ns;
  r.epoch = epoch_;
  const std::uint32_t gen =
      r.type == log::RecordType::kFreed ? previous_generation(sw::generation(ev.word)) : sw::generation(ev.word);
  r.task_id = TaskId::make(ev.slot, gen).value;
  r.state_word = ev.word;
  r.pid = ev.pid;
  r.aux = ev.aux;
  const TaskSlot& s = e.slot(ev.slot);
  const bool terminal = r.type != log::RecordType::kFreed && is_terminal(sw::state(ev.word));
  if (r.type == log::RecordType::kSubmitted || r.type == log::RecordType::kTaskSnapshot) {
    log::TaskSpec spec;
    if (copy_spec(e, s, ev.word, spec)) {
      r.spec = std::move(spec);
    } else {
      r.payload_missing = true;  // the slot moved on: the task finished and was freed
    }
  }
  if (terminal) {
    std::string result;
    if (copy_result(e, s, ev.word, result)) {
      r.result = std::move(result);
    } else {
      r.result_missing = true;  // read (or requeued) before we got here
    }
  }
  return true;
}

std::size_t JournalReader::read(std::vector<log::Record>& out, std::size_t max, JournalReadInfo& info) {
  ipc::Journal& j = engine_->journal();
  std::size_t n = 0;
  std::uint8_t body[ipc::kJournalBodyBytes];
  // One clock read per call: the records of one batch share their time.
  const std::int64_t wall = ipc::realtime_ns();
  while (n < max) {
    std::uint32_t writer = 0;
    switch (j.peek(pos_, body, writer)) {
      case ipc::Journal::Peek::kRecord: {
        log::Record r;
        if (fill(body, wall, r)) {
          out.push_back(std::move(r));
          ++n;
        } else {
          ++info.bad_events;
        }
        ++pos_;
        waiting_since_ns_ = 0;
        continue;
      }
      case ipc::Journal::Peek::kConsumed:
        ++pos_;
        waiting_since_ns_ = 0;
        continue;
      case ipc::Journal::Peek::kEmpty:
        return n;
      case ipc::Journal::Peek::kReserved: {
        const std::int64_t now = ipc::monotonic_ns();
        if (waiting_since_ns_ == 0) waiting_since_ns_ = now;
        if (now - waiting_since_ns_ < kHoleGraceNs) return n;
        break;  // skip it below
      }
      case ipc::Journal::Peek::kWriting: {
        const std::int64_t now = ipc::monotonic_ns();
        if (waiting_since_ns_ == 0) waiting_since_ns_ = now;
        if (now - waiting_since_ns_ < kWriterCheckNs || ipc::process_alive(writer)) {
          info.writer_stalled = true;
          return n;
        }
        break;  // its writer died mid-copy: skip it below
      }
    }
    if (j.skip(pos_)) {
      ++info.holes;
      ++pos_;
      waiting_since_ns_ = 0;
    }
    // Else the writer committed meanwhile: peek again.
  }
  return n;
}

void JournalReader::release() noexcept { engine_->journal().release(pos_); }
void JournalReader::publish_durable(std::uint64_t pos) noexcept { engine_->journal().publish_durable(pos); }
void JournalReader::wait(std::int64_t timeout_ns) noexcept { engine_->journal().park_reader(pos_, timeout_ns); }
bool JournalReader::durable_waiters() const noexcept {
  // Relaxed: a hint for batching; a waiter missed now is served by the
  // next write, at most the sidecar's batching delay later.
  return engine_->journal().control().durable_waiters.load(std::memory_order_relaxed) != 0;
}

void JournalReader::snapshot(std::vector<log::Record>& out, bool free_slots) {
  const Engine& e = *engine_;
  const std::int64_t wall = ipc::realtime_ns();
  for (std::uint32_t i = 0; i < e.slot_count(); ++i) {
    const TaskSlot& s = e.slot(i);
    // Acquire, as [A3]; copy_spec and copy_result validate what they copy.
    const std::uint64_t w = s.state.load(std::memory_order_acquire);
    log::Record r;
    r.wall_ns = wall;
    r.epoch = epoch_;
    r.state_word = w;
    if (!sw::live(w)) {
      if (!free_slots || sw::reserved(w)) continue;
      r.type = log::RecordType::kFreed;
      r.aux = static_cast<std::uint32_t>(log::FreeReason::kSlotFree);
      r.task_id = TaskId::make(i, sw::generation(w)).value;
      out.push_back(std::move(r));
      continue;
    }
    // A live task is always mentioned, even if it changed while we copied
    // (its later events follow in the journal): the resync rule frees the
    // entries a snapshot does not mention.
    r.type = log::RecordType::kTaskSnapshot;
    r.task_id = TaskId::make(i, sw::generation(w)).value;
    log::TaskSpec spec;
    if (copy_spec(e, s, w, spec)) {
      r.spec = std::move(spec);
    } else {
      r.payload_missing = true;
    }
    if (is_terminal(sw::state(w))) {
      std::string result;
      if (copy_result(e, s, w, result)) {
        r.result = std::move(result);
      } else {
        r.result_missing = true;
      }
    }
    out.push_back(std::move(r));
  }
}

Result<LogRestoreReport> restore_tasks(std::string_view segment, const std::vector<log::LiveTask>& tasks,
                                       std::vector<log::Record>& records) {
  auto engine = Engine::attach(segment, ipc::Access::kReadWrite);
  if (!engine) return engine.status();
  Engine& e = **engine;
  auto client = Client::attach(segment);
  if (!client) return client.status();
  LogRestoreReport report;
  const std::uint64_t epoch = e.segment().header().created_unix_ns;
  const std::int64_t wall_now = ipc::realtime_ns();
  const std::int64_t mono_now = ipc::monotonic_ns();
  for (const log::LiveTask& t : tasks) {
    const std::string old = std::to_string(t.task_id);
    if (!t.spec) {
      ++report.skipped;
      report.problems.push_back("task " + old + " (epoch " + std::to_string(t.epoch) + ", " +
                                std::string(state_name(t.state)) + "): the log never got its spec and payload");
      continue;
    }
    const log::TaskSpec& spec = *t.spec;
    if (is_terminal(t.state)) {
      const std::uint64_t ttl = e.config().result_ttl_ns;
      const std::int64_t age = wall_now - t.finish_wall_ns;
      if (ttl != 0 && age >= 0 && static_cast<std::uint64_t>(age) >= ttl) {
        ++report.expired;
        continue;
      }
    }
    const auto restore_one = [&]() -> Result<TaskId> {
      if (is_terminal(t.state)) {
        const std::int64_t age = std::max<std::int64_t>(wall_now - t.finish_wall_ns, 0);
        return detail::restore_finished(e, spec, t.state, t.attempts, t.result.value_or(std::string()),
                                        mono_now - age);
      }
      SubmitOptions o = detail::submit_options_for(spec);
      if (spec.run_at_wall_ns > wall_now) o.run_at_ns = mono_now + (spec.run_at_wall_ns - wall_now);
      return client->submit(spec.name, spec.payload, o);
    };
    Result<TaskId> id = restore_one();
    if (id) ++(is_terminal(t.state) ? report.results_restored : report.resubmitted);
    if (!id) {
      if (id.status().code() == StatusCode::kResourceExhausted) return id.status();
      ++report.skipped;
      report.problems.push_back("task " + old + " (epoch " + std::to_string(t.epoch) + ", '" + spec.name +
                                "'): " + id.status().to_string());
      continue;
    }
    report.mapping.emplace_back(t.task_id, id->value);
    log::Record r;
    r.type = log::RecordType::kRecovered;
    r.wall_ns = wall_now;
    r.epoch = epoch;
    r.task_id = id->value;
    r.other_epoch = t.epoch;
    r.other_id = t.task_id;
    records.push_back(std::move(r));
  }
  return report;
}

}  // namespace taskring
