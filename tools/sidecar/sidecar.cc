#include "sidecar.h"

#include <algorithm>
#include <charconv>
#include <chrono>

#include "taskring/ipc/futex.h"

namespace taskring::sidecar {
namespace {

using ipc::monotonic_ns;
using ipc::realtime_ns;

log::Record marker(log::RecordType type, std::uint64_t epoch, std::uint32_t aux) {
  log::Record r;
  r.type = type;
  r.wall_ns = realtime_ns();
  r.epoch = epoch;
  r.aux = aux;
  return r;
}

// A snapshot record for a live task of an earlier segment that could not be
// put back, so that compaction keeps it.
log::Record carried(const log::LiveTask& t) {
  log::Record r;
  r.type = log::RecordType::kTaskSnapshot;
  r.wall_ns = t.finish_wall_ns != 0 ? t.finish_wall_ns : realtime_ns();
  r.epoch = t.epoch;
  r.task_id = t.task_id;
  r.state_word = t.state_word;
  r.spec = t.spec;
  r.payload_missing = !t.spec.has_value();
  if (is_terminal(t.state)) {
    r.result = t.result;
    r.result_missing = !t.result.has_value();
  }
  return r;
}

}  // namespace

Result<FsyncPolicy> parse_fsync_policy(std::string_view text) {
  FsyncPolicy p;
  if (text == "always") return p;
  if (text == "never") {
    p.kind = FsyncPolicy::Kind::kNever;
    return p;
  }
  constexpr std::string_view kInterval = "interval:";
  if (text.substr(0, kInterval.size()) == kInterval) {
    const std::string_view ms = text.substr(kInterval.size());
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(ms.data(), ms.data() + ms.size(), v);
    if (!ms.empty() && ec == std::errc() && end == ms.data() + ms.size() && v >= 1 && v <= 3'600'000) {
      p.kind = FsyncPolicy::Kind::kInterval;
      p.interval_ns = static_cast<std::int64_t>(v) * 1'000'000;
      return p;
    }
  }
  return invalid_argument("fsync policy '" + std::string(text) +
                          "': must be always, never or interval:MS with MS a whole number of milliseconds from 1 "
                          "to 3600000");
}

std::string fsync_policy_text(const FsyncPolicy& p) {
  switch (p.kind) {
    case FsyncPolicy::Kind::kAlways: return "always";
    case FsyncPolicy::Kind::kNever: return "never";
    case FsyncPolicy::Kind::kInterval: return "interval:" + std::to_string(p.interval_ns / 1'000'000);
  }
  return "?";
}

Result<std::unique_ptr<Sidecar>> Sidecar::start(const SidecarOptions& options, StartReport* report) {
  StartReport local;
  StartReport& rep = report != nullptr ? *report : local;
  if (options.batch == 0) return invalid_argument("batch 0: must be at least 1");
  auto reader = JournalReader::attach(options.segment);
  if (!reader) return reader.status();
  log::LogOptions lo;
  lo.file_bytes = options.file_bytes;
  auto writer = log::LogWriter::open(options.log_dir, lo, &rep.repair);
  if (!writer) return writer.status();

  std::unique_ptr<Sidecar> sc(new Sidecar());
  sc->options_ = options;
  sc->reader_ = std::move(reader).value();
  sc->writer_ = std::make_unique<log::LogWriter>(std::move(writer).value());
  rep.epoch = sc->reader_->epoch();

  // Fold what the log holds: which earlier segments left live tasks.
  log::LogState state;
  auto read = log::read_log(options.log_dir, [&state](const log::Record& r) {
    state.apply(r);
    return true;
  });
  if (!read) return read.status();
  rep.read = std::move(read).value();
  std::vector<log::LiveTask> earlier;
  for (log::LiveTask& t : state.live_tasks()) {
    if (t.epoch == rep.epoch) {
      rep.log_knew_segment = true;
    } else {
      earlier.push_back(std::move(t));
    }
  }
  if (state.last_epoch() == rep.epoch) rep.log_knew_segment = true;
  rep.tasks_to_restore = options.restore ? earlier.size() : 0;

  // This segment's incarnation, then what it holds now: whatever happened
  // while no sidecar read the journal is in this snapshot.
  std::vector<log::Record> head;
  head.push_back(marker(log::RecordType::kSegmentAttached, rep.epoch, sc->reader_->slot_count()));
  head.back().text = options.segment;
  sc->dropped_seen_ = sc->reader_->dropped();
  sc->written_pos_ = sc->synced_pos_ = sc->reader_->position();
  sc->append(head);
  TASKRING_RETURN_IF_ERROR(sc->resync(log::ResyncReason::kStart, 0));

  if (!options.restore) {
    sc->unrestored_ = std::move(earlier);
  } else if (!earlier.empty()) {
    sc->restore_done_.store(false, std::memory_order_relaxed);  // relaxed: read by this thread until the start below
    Sidecar* self = sc.get();
    sc->restore_thread_ = std::thread([self, tasks = std::move(earlier)] {
      std::vector<log::Record> recs;
      auto r = restore_tasks(self->options_.segment, tasks, recs);
      std::lock_guard<std::mutex> lock(self->restore_mu_);
      for (log::Record& x : recs) self->restored_records_.push_back(std::move(x));
      if (r) {
        self->restore_report_ = std::move(r).value();
      } else {
        self->restore_report_.problems.push_back("restore stopped: " + r.status().to_string());
      }
      // Every task that was not put back stays in the log (compaction keeps it).
      std::vector<std::uint64_t> done;
      for (const auto& m : self->restore_report_.mapping) done.push_back(m.first);
      std::sort(done.begin(), done.end());
      for (const log::LiveTask& t : tasks) {
        if (!std::binary_search(done.begin(), done.end(), t.task_id)) self->unrestored_.push_back(t);
      }
      // Release: the records and the report above happen before a reader
      // that sees the flag (restore_done, acquire).
      self->restore_done_.store(true, std::memory_order_release);
    });
  }
  return sc;
}

Sidecar::~Sidecar() {
  // The restore thread may be waiting for journal room that only our steps
  // free (finish() does this too, and reports errors).
  while (!restore_done()) {
    if (!step(10'000'000)) break;
  }
  if (restore_thread_.joinable()) restore_thread_.join();
}

bool Sidecar::restore_done() const noexcept { return restore_done_.load(std::memory_order_acquire); }

LogRestoreReport Sidecar::restore_report() const {
  std::lock_guard<std::mutex> lock(restore_mu_);
  return restore_report_;
}

namespace {
// A record whose payload and result together exceed what one record may
// hold (both near max_payload) keeps the payload and says its result is
// missing: a recovery needs the payload to run the task again.
void fit_record(log::Record& r) {
  constexpr std::size_t kHeader = 20;  // formats/log.md: the record header
  if (log::encoded_size(r) - kHeader <= log::kMaxRecordBody) return;
  if (r.result) {
    r.result.reset();
    r.result_missing = true;
  }
  if (log::encoded_size(r) - kHeader > log::kMaxRecordBody && r.spec) {
    r.spec.reset();
    r.payload_missing = true;
  }
}
}  // namespace

void Sidecar::append(std::vector<log::Record>& records) {
  for (log::Record& r : records) {
    fit_record(r);
    if (r.type == log::RecordType::kSubmitted) ++unsynced_submits_;
    writer_->append(r);
  }
  stats_.records += records.size();
  unwritten_records_ += records.size();
  if (!records.empty()) unwritten_ = true;
  records.clear();
}

Status Sidecar::write_and_sync(bool force_sync) {
  const std::uint64_t pos = reader_->position();
  if (unwritten_ || pos != written_pos_) {
    TASKRING_RETURN_IF_ERROR(writer_->write());
    ++stats_.writes;
    // In the page cache now: a sidecar crash loses nothing of it, so the
    // journal cells can be reused.
    reader_->release();
    written_pos_ = pos;
    unwritten_ = false;
    unwritten_records_ = 0;
    first_unwritten_ns_ = 0;
    unsynced_ = true;
  }
  if (!unsynced_) return Status::ok();
  if (options_.fsync.kind == FsyncPolicy::Kind::kNever) {
    // The page cache is the durability this policy promises: acknowledge
    // now. Only compaction (force_sync) syncs, before it removes files.
    reader_->publish_durable(written_pos_);
    stats_.durable_position = written_pos_;
    if (!force_sync) return Status::ok();
  }
  const bool due = options_.fsync.kind == FsyncPolicy::Kind::kAlways ||
                   (options_.fsync.kind == FsyncPolicy::Kind::kInterval &&
                    monotonic_ns() - last_sync_ns_ >= options_.fsync.interval_ns);
  if (!force_sync && !due) return Status::ok();
  const std::int64_t t0 = monotonic_ns();
  TASKRING_RETURN_IF_ERROR(writer_->sync());
  const std::int64_t t1 = monotonic_ns();
  const auto took = static_cast<std::uint64_t>(t1 - t0);
  ++stats_.syncs;
  stats_.sync_ns_total += took;
  stats_.sync_ns_max = std::max(stats_.sync_ns_max, took);
  stats_.submits_synced += unsynced_submits_;
  unsynced_submits_ = 0;
  unsynced_ = false;
  last_sync_ns_ = t1;
  synced_pos_ = written_pos_;
  reader_->publish_durable(synced_pos_);
  stats_.durable_position = synced_pos_;
  return Status::ok();
}

Status Sidecar::resync(log::ResyncReason why, std::uint64_t dropped) {
  // Whatever was read before the snapshot goes first, so the snapshot is
  // newer than every record before it.
  append(batch_);
  std::vector<log::Record> recs;
  log::Record begin = marker(log::RecordType::kResyncBegin, reader_->epoch(), static_cast<std::uint32_t>(why));
  begin.state_word = dropped;
  begin.text = why == log::ResyncReason::kStart      ? "sidecar started"
               : why == log::ResyncReason::kDropped  ? "the journal dropped " + std::to_string(dropped) + " events"
               : why == log::ResyncReason::kHole     ? "a journal writer died before writing its event"
                                                     : "compaction";
  recs.push_back(std::move(begin));
  const std::size_t before = recs.size();
  // Free slots only where the fold starts afresh (a compacted file): there
  // they tell which generations are gone; elsewhere the log already does.
  reader_->snapshot(recs, why == log::ResyncReason::kCompaction);
  const auto tasks = static_cast<std::uint32_t>(recs.size() - before);
  if (why == log::ResyncReason::kCompaction) {
    std::lock_guard<std::mutex> lock(restore_mu_);
    for (const log::LiveTask& t : unrestored_) recs.push_back(carried(t));
  }
  recs.push_back(marker(log::RecordType::kResyncEnd, reader_->epoch(), tasks));
  append(recs);
  ++stats_.resyncs;
  return write_and_sync(true);
}

Status Sidecar::compact() {
  TASKRING_RETURN_IF_ERROR(write_and_sync(true));
  TASKRING_RETURN_IF_ERROR(writer_->start_new_file());
  const std::uint64_t first = writer_->next_seq();
  std::vector<log::Record> head;
  head.push_back(marker(log::RecordType::kSegmentAttached, reader_->epoch(), reader_->slot_count()));
  head.back().text = options_.segment;
  append(head);
  // Synced before anything is removed: the new file alone describes every
  // live task from here on.
  TASKRING_RETURN_IF_ERROR(resync(log::ResyncReason::kCompaction, 0));
  auto removed = writer_->remove_files_before(first);
  if (!removed) return removed.status();
  stats_.files_removed += *removed;
  ++stats_.compactions;
  return Status::ok();
}

bool Sidecar::hold_back(std::size_t read) {
  if (!unwritten_) return false;
  const std::int64_t now = monotonic_ns();
  if (first_unwritten_ns_ == 0) first_unwritten_ns_ = now;
  // Write when the journal had more than one batch, when enough is waiting,
  // when the oldest record has waited kWriteDelayNs, or when a producer
  // waits for a durable acknowledgement: small writes cost a system call
  // (and, with --fsync always, a sync) each.
  // Held-back events keep their journal cells: never more than a quarter
  // of the journal, so writers do not wait for room because of it.
  return read < options_.batch && unwritten_records_ < options_.batch &&
         unwritten_records_ * 4 < reader_->config().journal_capacity && now - first_unwritten_ns_ < kWriteDelayNs &&
         !reader_->durable_waiters();
}

Result<std::size_t> Sidecar::step(std::int64_t wait_ns) {
  JournalReadInfo info;
  std::size_t n = reader_->read(batch_, options_.batch, info);
  if (n == 0 && info.writer_stalled) {
    // A writer is between its two cell CASes (or stopped there): let it run.
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  } else if (n == 0 && wait_ns > 0) {
    // With an interval policy, wake in time for the next due sync; with a
    // held-back write, in time to write it.
    std::int64_t park = wait_ns;
    const std::int64_t now = monotonic_ns();
    if (unsynced_ && options_.fsync.kind == FsyncPolicy::Kind::kInterval) {
      park = std::min(park, std::max<std::int64_t>(last_sync_ns_ + options_.fsync.interval_ns - now, 0));
    }
    if (unwritten_) park = std::min(park, std::max<std::int64_t>(first_unwritten_ns_ + kWriteDelayNs - now, 0));
    if (park > 0) reader_->wait(park);
    n = reader_->read(batch_, options_.batch, info);
  }
  reader_->heartbeat();
  stats_.events += n;
  stats_.holes += info.holes;
  stats_.bad_events += info.bad_events;
  {
    // Uncontended but for the restore thread's hand-over: a few ns.
    std::lock_guard<std::mutex> lock(restore_mu_);
    append(restored_records_);
  }
  append(batch_);
  const std::uint64_t dropped = reader_->dropped();
  if (info.holes != 0 || dropped != dropped_seen_) {
    // A gap: the snapshot, taken after we saw it, covers what it lost.
    const std::uint64_t lost = dropped - dropped_seen_;
    stats_.dropped = dropped;
    dropped_seen_ = dropped;
    TASKRING_RETURN_IF_ERROR(resync(info.holes != 0 ? log::ResyncReason::kHole : log::ResyncReason::kDropped, lost));
  } else if (!hold_back(n)) {
    TASKRING_RETURN_IF_ERROR(write_and_sync(false));
  }
  if (options_.compact_bytes != 0 && writer_->bytes_on_disk() >= options_.compact_bytes) {
    TASKRING_RETURN_IF_ERROR(compact());
  }
  return n;
}

Status Sidecar::flush() {
  JournalReadInfo info;
  for (std::size_t n; (n = reader_->read(batch_, options_.batch, info)) != 0;) {
    stats_.events += n;
    append(batch_);
  }
  {
    std::lock_guard<std::mutex> lock(restore_mu_);
    append(restored_records_);
  }
  return write_and_sync(true);
}

Status Sidecar::run(const std::atomic<bool>& stop) {
  // Relaxed: a flag polled at least every 100 ms; it publishes nothing.
  while (!stop.load(std::memory_order_relaxed) && !reader_->closing()) {
    auto n = step(100'000'000);
    if (!n) return n.status();
  }
  return finish();
}

Status Sidecar::finish() {
  // The restore thread may be waiting for journal room that only we free.
  while (!restore_done()) {
    auto n = step(10'000'000);
    if (!n) return n.status();
  }
  if (restore_thread_.joinable()) restore_thread_.join();
  return flush();
}

Result<LogRestoreReport> recover_from_log(const SidecarOptions& options, StartReport* report) {
  auto sc = Sidecar::start(options, report);
  if (!sc) return sc.status();
  Sidecar& s = **sc;
  TASKRING_RETURN_IF_ERROR(s.finish());
  return s.restore_report();
}

}  // namespace taskring::sidecar
