// Engine journaling (engine/src/engine.cc journal_events, free_slot,
// wait_durable; JournalReader in engine/include/taskring/journal_reader.h):
// the events each task state change leaves, durable submits, a full journal
// in best-effort and durable mode, the reader role, snapshots, and putting
// tasks from a log back into a segment. A Client, a Worker on its own thread
// and the JournalReader share one mapping in one process, so ThreadSanitizer
// sees every access; nothing forks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine_internal.h"
#include "engine_test_util.h"
#include "layout_internal.h"
#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/ipc/futex.h"
#include "taskring/ipc/process.h"
#include "taskring/journal_reader.h"
#include "taskring/log.h"
#include "taskring/log_state.h"
#include "taskring/status.h"
#include "taskring/worker.h"
#include "test_support.h"

namespace taskring {
namespace {

using log::FreeReason;
using log::Record;
using log::RecordType;
using log::RequeueReason;
using testing::kHangTimeout;
using testing::kHangTimeoutNs;
using testing::small_config;
using testing::TestSegment;
using testing::wait_until;
using testing::WorkerThread;

EngineConfig journal_config(JournalMode mode, std::uint32_t capacity = 1024) {
  EngineConfig c = small_config();
  c.journal = mode;
  c.journal_capacity = capacity;
  return c;
}

TaskState state_of(std::uint64_t word) { return detail::sw::state(word); }

std::unique_ptr<JournalReader> attach_reader(const std::string& segment) {
  auto r = JournalReader::attach(segment);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r ? std::move(r).value() : nullptr;
}

// Reads (and releases) records into `out` until `done(out)` holds or the
// hang timeout passes; false on timeout. Holes or bad events fail the test.
bool read_until(JournalReader& reader, std::vector<Record>& out,
                const std::function<bool(const std::vector<Record>&)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kHangTimeout;
  while (!done(out)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    JournalReadInfo info;
    const std::size_t n = reader.read(out, 1024, info);
    EXPECT_EQ(info.holes, 0u);
    EXPECT_EQ(info.bad_events, 0u);
    reader.release();
    if (n == 0) reader.wait(1'000'000);
  }
  return true;
}

std::vector<Record> of_task(const std::vector<Record>& records, TaskId id) {
  std::vector<Record> out;
  for (const Record& r : records) {
    if (r.task_id == id.value) out.push_back(r);
  }
  return out;
}

bool has(const std::vector<Record>& records, TaskId id, RecordType type) {
  return std::any_of(records.begin(), records.end(),
                     [&](const Record& r) { return r.task_id == id.value && r.type == type; });
}

std::vector<RecordType> types_of(const std::vector<Record>& records) {
  std::vector<RecordType> t;
  for (const Record& r : records) t.push_back(r.type);
  return t;
}

std::string describe(const std::vector<Record>& records) {
  std::string s;
  for (const Record& r : records) {
    s += std::string(log::record_type_name(r.type)) + "(id " + std::to_string(r.task_id) + ", aux " +
         std::to_string(r.aux) + ") ";
  }
  return s;
}

// ---- The events of one task -----------------------------------------------------

TEST(JournalEngineTest, SucceededTaskYieldsSubmittedStartedSucceededFreed) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  SubmitOptions o;
  o.max_attempts = 3;
  auto id = seg.client().submit("echo", "hello journal", o);
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();

  std::vector<Record> records;
  ASSERT_TRUE(read_until(*reader, records, [](const auto& v) { return !v.empty(); }));
  ASSERT_EQ(records.size(), 1u) << describe(records);
  const Record& sub = records[0];
  EXPECT_EQ(sub.type, RecordType::kSubmitted);
  EXPECT_EQ(sub.task_id, id->value);
  EXPECT_EQ(sub.epoch, reader->epoch());
  EXPECT_EQ(sub.pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(state_of(sub.state_word), TaskState::kPending);
  EXPECT_FALSE(sub.payload_missing);
  ASSERT_TRUE(sub.spec.has_value());
  EXPECT_EQ(sub.spec->name, "echo");
  EXPECT_EQ(sub.spec->queue, "default");
  EXPECT_EQ(sub.spec->payload, "hello journal");
  EXPECT_EQ(sub.spec->max_attempts, 3u);
  EXPECT_EQ(sub.spec->priority, static_cast<std::uint8_t>(Priority::kNormal));
  EXPECT_FALSE(sub.spec->detached);

  WorkerThread wt(seg.worker());
  const int worker_index = wt.worker().index();
  ASSERT_TRUE(read_until(*reader, records, [&](const auto& v) { return has(v, *id, RecordType::kSucceeded); }))
      << describe(records);
  auto out = seg.client().wait(*id, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  ASSERT_TRUE(read_until(*reader, records, [&](const auto& v) { return has(v, *id, RecordType::kFreed); }))
      << describe(records);
  ASSERT_TRUE(wt.stop_and_join());

  const std::vector<Record> mine = of_task(records, *id);
  ASSERT_EQ(types_of(mine), (std::vector<RecordType>{RecordType::kSubmitted, RecordType::kStarted,
                                                     RecordType::kSucceeded, RecordType::kFreed}))
      << describe(records);
  EXPECT_EQ(mine.size(), records.size()) << "events of other tasks: " << describe(records);
  EXPECT_EQ(state_of(mine[1].state_word), TaskState::kRunning);
  EXPECT_EQ(mine[1].aux, static_cast<std::uint32_t>(worker_index));
  EXPECT_EQ(state_of(mine[2].state_word), TaskState::kSucceeded);
  ASSERT_TRUE(mine[2].result.has_value());
  EXPECT_EQ(*mine[2].result, "hello journal");
  EXPECT_EQ(state_of(mine[3].state_word), TaskState::kFree);
  EXPECT_EQ(mine[3].aux, static_cast<std::uint32_t>(FreeReason::kConsumed));
  // The freed word already carries the next generation; the record names the task.
  EXPECT_NE(detail::sw::generation(mine[3].state_word), id->generation());
  for (const Record& r : mine) EXPECT_EQ(r.epoch, reader->epoch());
}

TEST(JournalEngineTest, FailingTaskYieldsRequeuedRetryThenFailed) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  SubmitOptions o;
  o.max_attempts = 2;
  auto id = seg.client().submit("fail", "boom", o);
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  WorkerThread wt(seg.worker());
  std::vector<Record> records;
  ASSERT_TRUE(read_until(*reader, records, [&](const auto& v) { return has(v, *id, RecordType::kFailed); }))
      << describe(records);
  ASSERT_TRUE(wt.stop_and_join());
  const std::vector<Record> mine = of_task(records, *id);
  ASSERT_EQ(types_of(mine), (std::vector<RecordType>{RecordType::kSubmitted, RecordType::kStarted,
                                                     RecordType::kRequeued, RecordType::kStarted, RecordType::kFailed}))
      << describe(records);
  EXPECT_EQ(mine[2].aux, static_cast<std::uint32_t>(RequeueReason::kRetry));
  EXPECT_EQ(state_of(mine[2].state_word), TaskState::kPending);
  EXPECT_EQ(detail::sw::attempts(mine[2].state_word), 1u);
  EXPECT_EQ(state_of(mine[4].state_word), TaskState::kFailed);
  EXPECT_EQ(detail::sw::attempts(mine[4].state_word), 2u);
  ASSERT_TRUE(mine[4].result.has_value());
  EXPECT_EQ(*mine[4].result, "boom");
}

TEST(JournalEngineTest, CancelledPendingTaskYieldsCancelled) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  auto id = seg.client().submit("echo", "never runs");
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  auto c = seg.client().cancel(*id);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_EQ(*c, CancelOutcome::kCancelled);
  std::vector<Record> records;
  ASSERT_TRUE(read_until(*reader, records, [&](const auto& v) { return has(v, *id, RecordType::kCancelled); }))
      << describe(records);
  ASSERT_EQ(types_of(records), (std::vector<RecordType>{RecordType::kSubmitted, RecordType::kCancelled}))
      << describe(records);
  EXPECT_EQ(records[1].task_id, id->value);
  EXPECT_EQ(state_of(records[1].state_word), TaskState::kCancelled);
  EXPECT_TRUE(records[1].result.has_value() || records[1].result_missing);
}

TEST(JournalEngineTest, SubmitBatchYieldsOneSubmittedPerTask) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  // More than one chunk of the batch submit (64), so more than one reservation.
  constexpr std::size_t kTasks = 100;
  std::vector<std::string> payloads;
  for (std::size_t i = 0; i < kTasks; ++i) payloads.push_back("p" + std::to_string(i));
  std::vector<TaskSpec> specs;
  for (const std::string& p : payloads) specs.push_back(TaskSpec{"echo", p});
  std::vector<TaskId> ids(kTasks);
  auto n = seg.client().submit_batch(specs, ids);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  ASSERT_EQ(*n, kTasks);
  std::vector<Record> records;
  ASSERT_TRUE(read_until(*reader, records, [&](const auto& v) { return v.size() >= kTasks; }));
  // Nothing more is coming: no worker runs.
  JournalReadInfo info;
  EXPECT_EQ(reader->read(records, 1024, info), 0u);
  ASSERT_EQ(records.size(), kTasks);
  for (std::size_t i = 0; i < kTasks; ++i) {
    EXPECT_EQ(records[i].type, RecordType::kSubmitted) << i;
    EXPECT_EQ(records[i].task_id, ids[i].value) << i;
    EXPECT_EQ(state_of(records[i].state_word), TaskState::kPending) << i;
    ASSERT_TRUE(records[i].spec.has_value()) << i;
    EXPECT_EQ(records[i].spec->payload, payloads[i]);
    EXPECT_EQ(records[i].spec->name, "echo");
  }
}

TEST(JournalEngineTest, DetachedTaskEndsInFreedReleased) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  SubmitOptions o;
  o.detached = true;
  auto id = seg.client().submit("echo", "fire and forget", o);
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  std::vector<Record> records;
  // The spec is copied from the slot: read it while the task is there.
  ASSERT_TRUE(read_until(*reader, records, [&](const auto& v) { return has(v, *id, RecordType::kSubmitted); }));
  ASSERT_TRUE(records[0].spec.has_value());
  EXPECT_TRUE(records[0].spec->detached);
  WorkerThread wt(seg.worker());
  ASSERT_TRUE(read_until(*reader, records, [&](const auto& v) { return has(v, *id, RecordType::kFreed); }))
      << describe(records);
  ASSERT_TRUE(wt.stop_and_join());
  const std::vector<Record> mine = of_task(records, *id);
  ASSERT_GE(mine.size(), 3u) << describe(records);
  EXPECT_EQ(mine.front().type, RecordType::kSubmitted);
  EXPECT_TRUE(has(mine, *id, RecordType::kStarted)) << describe(records);
  EXPECT_EQ(mine.back().type, RecordType::kFreed) << describe(records);
  EXPECT_EQ(mine.back().aux, static_cast<std::uint32_t>(FreeReason::kReleased));
  EXPECT_EQ(state_of(mine.back().state_word), TaskState::kFree);
  EXPECT_EQ(seg.client().wait(*id, 0).status().code(), StatusCode::kNotFound);
}

// ---- Durable submits -------------------------------------------------------------

TEST(JournalEngineTest, DurableSubmitWithoutJournalIsRefused) {
  TestSegment seg("je", journal_config(JournalMode::kOff));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  SubmitOptions o;
  o.durable = true;
  auto id = seg.client().submit("echo", "x", o);
  ASSERT_FALSE(id.is_ok());
  EXPECT_EQ(id.status().code(), StatusCode::kFailedPrecondition) << id.status().to_string();
  EXPECT_NE(id.status().message().find("no journal"), std::string::npos) << id.status().to_string();
  EXPECT_EQ(seg.tasks_in(TaskState::kPending), 0u) << "a refused submit must leave no task";
  // The batch form refuses the same way.
  std::array<TaskSpec, 2> specs{TaskSpec{"echo", "a"}, TaskSpec{"echo", "b"}};
  std::array<TaskId, 2> ids{};
  auto n = seg.client().submit_batch(specs, ids, o);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kFailedPrecondition) << n.status().to_string();
}

TEST(JournalEngineTest, DurableSubmitWithoutSidecarTimesOut) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  SubmitOptions o;
  o.durable = true;
  o.timeout_ns = 50'000'000;
  auto id = seg.client().submit("echo", "x", o);
  ASSERT_FALSE(id.is_ok());
  EXPECT_EQ(id.status().code(), StatusCode::kDeadlineExceeded) << id.status().to_string();
  EXPECT_NE(id.status().message().find("no sidecar serves segment '" + seg.name() + "'"), std::string::npos)
      << id.status().to_string();
}

TEST(JournalEngineTest, DurableSubmitReturnsOnceTheReaderPublishesPastIt) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> published{0};
  std::vector<Record> records;
  std::thread sidecar([&] {
    while (!stop.load()) {
      JournalReadInfo info;
      const std::size_t n = reader->read(records, 64, info);
      if (n > 0) {
        reader->release();
        // "Written to disk": publish only what was read and released.
        published.store(reader->position());
        reader->publish_durable(reader->position());
      } else {
        reader->wait(1'000'000);
      }
    }
  });
  SubmitOptions o;
  o.durable = true;
  o.timeout_ns = kHangTimeoutNs;
  auto id = seg.client().submit("echo", "durable", o);
  const std::uint64_t published_at_return = published.load();
  stop.store(true);
  sidecar.join();
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_GE(published_at_return, 1u) << "the durable submit returned before anything was published";
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records[0].type, RecordType::kSubmitted);
  EXPECT_EQ(records[0].task_id, id->value);
}

TEST(JournalEngineTest, DurableSubmitBatchReturnsOnceTheReaderPublishesPastIt) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> published{0};
  std::thread sidecar([&] {
    std::vector<Record> records;
    while (!stop.load()) {
      JournalReadInfo info;
      // One record at a time, so the batch's last event is published last.
      const std::size_t n = reader->read(records, 1, info);
      if (n > 0) {
        reader->release();
        published.store(reader->position());
        reader->publish_durable(reader->position());
      } else {
        reader->wait(1'000'000);
      }
    }
  });
  constexpr std::size_t kTasks = 100;
  std::vector<TaskSpec> specs(kTasks, TaskSpec{"echo", "b"});
  std::vector<TaskId> ids(kTasks);
  SubmitOptions o;
  o.durable = true;
  o.timeout_ns = kHangTimeoutNs;
  auto n = seg.client().submit_batch(specs, ids, o);
  const std::uint64_t published_at_return = published.load();
  stop.store(true);
  sidecar.join();
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, kTasks);
  EXPECT_GE(published_at_return, kTasks) << "the batch returned before its last event was durable";
}

// ---- A full journal ---------------------------------------------------------------

TEST(JournalEngineTest, BestEffortFullJournalDropsAndCountsWhatDoesNotFit) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort, 64));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  constexpr int kTasks = 100;
  std::vector<TaskId> ids;
  for (int i = 0; i < kTasks; ++i) {
    auto id = seg.client().submit("noop", std::to_string(i));
    ASSERT_TRUE(id.is_ok()) << "submit " << i << ": " << id.status().to_string();
    ids.push_back(*id);
  }
  const SegmentSnapshot snap = seg.snapshot();
  EXPECT_EQ(snap.journal.dropped, static_cast<std::uint64_t>(kTasks - 64));
  EXPECT_EQ(snap.journal.written, 64u);
  EXPECT_EQ(snap.journal.sidecar_pid, 0u);
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->dropped(), static_cast<std::uint64_t>(kTasks - 64));
  // The events that fit are the first 64, in order.
  std::vector<Record> records;
  JournalReadInfo info;
  EXPECT_EQ(reader->read(records, 1024, info), 64u);
  ASSERT_EQ(records.size(), 64u);
  for (std::size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i].task_id, ids[i].value) << i;
}

TEST(JournalEngineTest, DurableFullJournalBlocksSubmitUntilTheReaderReleases) {
  TestSegment seg("je", journal_config(JournalMode::kDurable, 64));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  for (int i = 0; i < 64; ++i) {
    auto id = seg.client().submit("noop", std::to_string(i));
    ASSERT_TRUE(id.is_ok()) << "submit " << i << ": " << id.status().to_string();
  }
  std::atomic<bool> released{false};
  std::atomic<bool> done{false};
  std::atomic<bool> released_before_return{false};
  std::optional<Result<TaskId>> blocked;
  std::thread producer([&] {
    auto id = seg.client().submit("noop", "the 65th");
    released_before_return.store(released.load());
    blocked.emplace(std::move(id));
    done.store(true);
  });
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  // Give a broken engine the chance to return (it would drop the event).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(done.load()) << "a submit returned although the durable journal was full";
  std::vector<Record> records;
  JournalReadInfo info;
  EXPECT_EQ(reader->read(records, 1024, info), 64u);
  released.store(true);
  reader->release();
  const bool returned = wait_until([&] { return done.load(); });
  if (!returned) (void)destroy_segment(seg.name());  // unblocks the producer so the test can end
  producer.join();
  ASSERT_TRUE(returned) << "the blocked submit did not complete after the reader released";
  ASSERT_TRUE(blocked.has_value());
  ASSERT_TRUE(blocked->is_ok()) << blocked->status().to_string();
  EXPECT_TRUE(released_before_return.load()) << "the submit returned before the reader made room";
  EXPECT_EQ(reader->dropped(), 0u);
  ASSERT_TRUE(read_until(*reader, records, [](const auto& v) { return v.size() >= 65; }));
  EXPECT_EQ(records[64].type, RecordType::kSubmitted);
  EXPECT_EQ(records[64].task_id, (*blocked)->value);
}

// Runs `submit` on a thread; returns its result, or nullopt if it had not
// returned within the hang timeout (the segment is then destroyed, which
// makes a submit that waits for journal room give up, so the test can end).
std::optional<Result<TaskId>> submit_on_thread(const std::string& segment,
                                               const std::function<Result<TaskId>()>& submit) {
  std::atomic<bool> done{false};
  std::optional<Result<TaskId>> result;
  std::thread t([&] {
    auto r = submit();
    result.emplace(std::move(r));
    done.store(true);
  });
  const bool returned = wait_until([&] { return done.load(); });
  if (!returned) (void)destroy_segment(segment);
  t.join();
  if (!returned) return std::nullopt;
  return result;
}

void fill_journal(TestSegment& seg, int events) {
  for (int i = 0; i < events; ++i) {
    auto id = seg.client().submit("noop", std::to_string(i));
    ASSERT_TRUE(id.is_ok()) << "submit " << i << ": " << id.status().to_string();
  }
}

// A durable submit whose event does not fit waits for room only until its
// timeout_ns: with no sidecar and a full journal it returns kDeadlineExceeded.
TEST(JournalEngineTest, DurableSubmitOnAFullBestEffortJournalHonoursItsTimeout) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort, 64));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  fill_journal(seg, 64);
  ASSERT_EQ(seg.snapshot().journal.dropped, 0u);
  SubmitOptions o;
  o.durable = true;
  o.timeout_ns = 50'000'000;
  auto r = submit_on_thread(seg.name(), [&] { return seg.client().submit("noop", "durable", o); });
  ASSERT_TRUE(r.has_value()) << "a durable submit with timeout_ns 50 ms did not return within " << kHangTimeout.count()
                             << " s";
  ASSERT_FALSE(r->is_ok());
  EXPECT_EQ(r->status().code(), StatusCode::kDeadlineExceeded) << r->status().to_string();
}

// The same in durable mode.
TEST(JournalEngineTest, DurableSubmitOnAFullDurableJournalHonoursItsTimeout) {
  TestSegment seg("je", journal_config(JournalMode::kDurable, 64));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  fill_journal(seg, 64);
  SubmitOptions o;
  o.durable = true;
  o.timeout_ns = 50'000'000;
  auto r = submit_on_thread(seg.name(), [&] { return seg.client().submit("noop", "durable", o); });
  ASSERT_TRUE(r.has_value()) << "a durable submit with timeout_ns 50 ms did not return within " << kHangTimeout.count()
                             << " s";
  ASSERT_FALSE(r->is_ok());
  EXPECT_EQ(r->status().code(), StatusCode::kDeadlineExceeded) << r->status().to_string();
}

// When the segment closes while a durable submit waits for journal room, its
// event is dropped, and the submit reports the closing error
// (kFailedPrecondition), never success.
TEST(JournalEngineTest, DurableSubmitInterruptedByClosingIsNotAcknowledged) {
  TestSegment seg("je", journal_config(JournalMode::kDurable, 64));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  fill_journal(seg, 64);
  SubmitOptions o;
  o.durable = true;
  o.timeout_ns = kHangTimeoutNs;
  // Shared with the thread, which is leaked if the wait never ends.
  struct Outcome {
    std::atomic<bool> done{false};
    std::optional<Result<TaskId>> r;
  };
  auto out = std::make_shared<Outcome>();
  auto attached = Client::attach(seg.name());
  ASSERT_TRUE(attached.is_ok()) << attached.status().to_string();
  auto client = std::make_shared<Client>(std::move(attached).value());
  std::thread t([out, client, o] {
    auto id = client->submit("noop", "durable", o);
    out->r.emplace(std::move(id));
    out->done.store(true);
  });
  // Let it reach the wait for room; whether it is there yet or not, a
  // closing segment must not acknowledge it.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(out->done.load());
  ASSERT_TRUE(destroy_segment(seg.name()).is_ok());
  const bool returned = wait_until([&] { return out->done.load(); });
  if (returned) {
    t.join();
  } else {
    t.detach();  // it owns what it uses: the test fails below instead of hanging
  }
  ASSERT_TRUE(returned) << "closing did not end the durable submit's wait";
  ASSERT_TRUE(out->r.has_value());
  const Result<TaskId>& r = *out->r;
  EXPECT_FALSE(r.is_ok()) << "a durable submit was acknowledged although its event was dropped";
  if (!r.is_ok()) {
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().to_string();
  }
}

// ---- The reader role ---------------------------------------------------------------

TEST(JournalEngineTest, AttachRefusesASegmentWithoutJournal) {
  TestSegment seg("je", journal_config(JournalMode::kOff));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto r = JournalReader::attach(seg.name());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().to_string();
  EXPECT_NE(r.status().message().find("has no journal"), std::string::npos) << r.status().to_string();
}

// Another live process holds the role: its pid and start time are in the
// journal's control block, as its own attach left them.
TEST(JournalEngineTest, AttachRefusesWhileAnotherLiveProcessReads) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto engine = detail::Engine::attach(seg.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  ipc::JournalControl& c = (*engine)->journal().control();
  const auto other = static_cast<std::uint32_t>(getppid());
  const ipc::ProcessStat st = ipc::read_process_stat(other);
  ASSERT_TRUE(st.exists) << "the parent process " << other << " is not readable in /proc";
  c.reader_start_time.store(st.start_time);
  c.reader_pid.store(other);
  auto r = JournalReader::attach(seg.name());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().to_string();
  EXPECT_NE(r.status().message().find("pid " + std::to_string(other)), std::string::npos) << r.status().to_string();
  EXPECT_EQ(c.reader_pid.load(), other) << "a refused attach must not take the role";
  // That process "exits": the role is free again.
  c.reader_pid.store(0);
  auto again = JournalReader::attach(seg.name());
  EXPECT_TRUE(again.is_ok()) << again.status().to_string();
}

TEST(JournalEngineTest, AttachTakesTheRoleOfADeadReader) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto engine = detail::Engine::attach(seg.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  ipc::JournalControl& c = (*engine)->journal().control();
  // The recorded reader's pid now belongs to a process that started at
  // another time: the reader died and its pid was reused.
  const auto other = static_cast<std::uint32_t>(getppid());
  const ipc::ProcessStat st = ipc::read_process_stat(other);
  ASSERT_TRUE(st.exists);
  c.reader_start_time.store(st.start_time + 1);
  c.reader_pid.store(other);
  auto r = JournalReader::attach(seg.name());
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(c.reader_pid.load(), static_cast<std::uint32_t>(getpid()));
}

// One reader per segment at a time, also within one process: a second
// JournalReader of the same process is refused while the first lives.
TEST(JournalEngineTest, AttachRefusesASecondReaderInTheSameProcess) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto first = attach_reader(seg.name());
  ASSERT_NE(first, nullptr);
  auto second = JournalReader::attach(seg.name());
  ASSERT_FALSE(second.is_ok()) << "a second reader attached while the first lives";
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status().to_string();
  EXPECT_NE(second.status().message().find("pid " + std::to_string(getpid())), std::string::npos)
      << second.status().to_string();
}

TEST(JournalEngineTest, AttachSucceedsAfterTheReaderIsDestroyed) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto first = attach_reader(seg.name());
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(seg.snapshot().journal.sidecar_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_TRUE(seg.snapshot().journal.sidecar_alive);
  first.reset();
  EXPECT_EQ(seg.snapshot().journal.sidecar_pid, 0u) << "a destroyed reader must give the role back";
  auto second = JournalReader::attach(seg.name());
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(seg.snapshot().journal.sidecar_pid, static_cast<std::uint32_t>(getpid()));
}

TEST(JournalEngineTest, ANewReaderStartsWhereTheLastOneReleased) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto a = seg.client().submit("noop", "a");
  auto b = seg.client().submit("noop", "b");
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  std::vector<Record> records;
  {
    auto first = attach_reader(seg.name());
    ASSERT_NE(first, nullptr);
    JournalReadInfo info;
    ASSERT_EQ(first->read(records, 1, info), 1u);
    first->release();
  }
  auto second = attach_reader(seg.name());
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->position(), 1u);
  JournalReadInfo info;
  ASSERT_EQ(second->read(records, 1024, info), 1u);
  EXPECT_EQ(records[0].task_id, a->value);
  EXPECT_EQ(records[1].task_id, b->value);
}

// ---- Holes ------------------------------------------------------------------------

// A process that reserved a cell and died before writing it: the reader
// waits out the grace period, then skips the cell as a hole and goes on.
TEST(JournalEngineTest, ReadSkipsACellReservedAndNeverWrittenAfterTheGrace) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto engine = detail::Engine::attach(seg.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  std::uint64_t hole = 0;
  ASSERT_TRUE((*engine)->journal().try_reserve(1, hole));
  auto id = seg.client().submit("noop", "after the hole");
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  std::vector<Record> records;
  JournalReadInfo info;
  EXPECT_EQ(reader->read(records, 1024, info), 0u) << "the cell may still be written: wait";
  EXPECT_EQ(info.holes, 0u);
  EXPECT_EQ(reader->position(), hole);
  const auto deadline = std::chrono::steady_clock::now() + kHangTimeout;
  while (records.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    reader->read(records, 1024, info);
  }
  EXPECT_EQ(info.holes, 1u);
  ASSERT_EQ(records.size(), 1u) << describe(records);
  EXPECT_EQ(records[0].task_id, id->value);
  EXPECT_EQ(reader->position(), hole + 2);
  // The dead writer's late write (a process that was only stopped) is lost, not misread.
  EXPECT_FALSE((*engine)->journal().write(hole, "late", 4));
  EXPECT_EQ(seg.snapshot().journal.lost, 1u);
}

// A writer that died while copying its body: skipped once it has held the cell
// for kWriterCheckNs and its pid is gone (not after the 200 ms hole grace).
TEST(JournalEngineTest, ReadSkipsACellADeadProcessWasWriting) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto engine = detail::Engine::attach(seg.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  ipc::Journal& j = (*engine)->journal();
  // A pid nobody has now (pids fit the cell's 22 bits).
  std::uint32_t dead = (1u << 22) - 1;
  while (dead > 300 && ipc::process_alive(dead)) --dead;
  ASSERT_FALSE(ipc::process_alive(dead));
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(1, pos));
  auto* cells = reinterpret_cast<ipc::JournalCell*>(&j.control() + 1);
  cells[pos & (j.capacity() - 1)].word.store(ipc::Journal::pack(0, ipc::Journal::kWriting, dead));
  auto id = seg.client().submit("noop", "after the dead writer");
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  std::vector<Record> records;
  JournalReadInfo info;
  // The first look waits kWriterCheckNs before it asks whether the writer
  // lives (a live one finishes in nanoseconds); the next one skips the cell.
  EXPECT_EQ(reader->read(records, 1024, info), 0u);
  EXPECT_TRUE(info.writer_stalled);
  std::this_thread::sleep_for(std::chrono::nanoseconds(2 * JournalReader::kWriterCheckNs));
  info = JournalReadInfo{};
  EXPECT_EQ(reader->read(records, 1024, info), 1u);
  EXPECT_EQ(info.holes, 1u);
  EXPECT_FALSE(info.writer_stalled);
  ASSERT_EQ(records.size(), 1u) << describe(records);
  EXPECT_EQ(records[0].task_id, id->value);
}

// A live writer in the middle of its copy holds the reader up; it is not a hole.
TEST(JournalEngineTest, ReadStopsAtACellALiveProcessIsWriting) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto engine = detail::Engine::attach(seg.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  ipc::Journal& j = (*engine)->journal();
  std::uint64_t pos = 0;
  ASSERT_TRUE(j.try_reserve(1, pos));
  auto* cells = reinterpret_cast<ipc::JournalCell*>(&j.control() + 1);
  cells[pos & (j.capacity() - 1)].word.store(
      ipc::Journal::pack(0, ipc::Journal::kWriting, static_cast<std::uint32_t>(getpid())));
  ASSERT_TRUE(seg.client().submit("noop", "behind it").is_ok());
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  std::vector<Record> records;
  JournalReadInfo info;
  EXPECT_EQ(reader->read(records, 1024, info), 0u);
  EXPECT_TRUE(info.writer_stalled);
  EXPECT_EQ(info.holes, 0u);
  EXPECT_EQ(reader->position(), pos);
}

// ---- Snapshots ---------------------------------------------------------------------

TEST(JournalEngineTest, SnapshotShowsALivePendingTaskWithItsSpec) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  SubmitOptions o;
  o.priority = Priority::kHigh;
  o.max_attempts = 5;
  auto id = seg.client().submit("echo", "snap me", o);
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  std::vector<Record> out;
  reader->snapshot(out, false);
  ASSERT_EQ(out.size(), 1u) << describe(out);
  const Record& r = out[0];
  EXPECT_EQ(r.type, RecordType::kTaskSnapshot);
  EXPECT_EQ(r.task_id, id->value);
  EXPECT_EQ(r.epoch, reader->epoch());
  EXPECT_EQ(state_of(r.state_word), TaskState::kPending);
  ASSERT_TRUE(r.spec.has_value());
  EXPECT_EQ(r.spec->name, "echo");
  EXPECT_EQ(r.spec->queue, "default");
  EXPECT_EQ(r.spec->payload, "snap me");
  EXPECT_EQ(r.spec->priority, static_cast<std::uint8_t>(Priority::kHigh));
  EXPECT_EQ(r.spec->max_attempts, 5u);
  EXPECT_FALSE(r.result.has_value());
}

TEST(JournalEngineTest, SnapshotWithFreeSlotsListsEveryFreeSlot) {
  TestSegment seg("je", journal_config(JournalMode::kBestEffort));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  SubmitOptions later;
  later.delay_ns = 3'600'000'000'000;  // stays pending while the worker below runs the other
  auto id = seg.client().submit("echo", "x", later);
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  // One slot used and freed, so one free slot has moved past generation 1.
  auto gone = seg.client().submit("echo", "y");
  ASSERT_TRUE(gone.is_ok());
  auto worker = seg.worker();
  ASSERT_NE(worker, nullptr);
  ASSERT_TRUE(worker->run_tasks(1).is_ok());
  ASSERT_TRUE(seg.client().wait(*gone, kHangTimeoutNs).is_ok());
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  std::vector<Record> out;
  reader->snapshot(out, true);
  ASSERT_EQ(out.size(), seg.config().slots) << "one record per slot";
  std::vector<bool> seen(seg.config().slots, false);
  std::size_t snapshots = 0;
  for (const Record& r : out) {
    const TaskId t{r.task_id};
    ASSERT_LT(t.slot(), seg.config().slots);
    EXPECT_FALSE(seen[t.slot()]) << "slot " << t.slot() << " twice";
    seen[t.slot()] = true;
    if (r.type == RecordType::kTaskSnapshot) {
      ++snapshots;
      EXPECT_EQ(r.task_id, id->value);
      continue;
    }
    EXPECT_EQ(r.type, RecordType::kFreed);
    EXPECT_EQ(r.aux, static_cast<std::uint32_t>(FreeReason::kSlotFree));
    EXPECT_EQ(state_of(r.state_word), TaskState::kFree);
    EXPECT_EQ(t.generation(), detail::sw::generation(r.state_word));
    if (t.slot() == gone->slot()) {
      EXPECT_NE(t.generation(), gone->generation()) << "a freed slot names the next generation";
    }
  }
  EXPECT_EQ(snapshots, 1u);
}

// ---- restore_tasks -------------------------------------------------------------------

log::TaskSpec spec_of(std::string name, std::string payload, std::string queue = "default") {
  log::TaskSpec s;
  s.name = std::move(name);
  s.payload = std::move(payload);
  s.queue = std::move(queue);
  return s;
}

constexpr std::uint64_t kOldEpoch = 42;

TEST(JournalEngineTest, RestoreSkipsATaskWithoutSpec) {
  TestSegment seg("je", journal_config(JournalMode::kOff));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  log::LiveTask t;
  t.epoch = kOldEpoch;
  t.task_id = TaskId::make(7, 3).value;
  t.state = TaskState::kPending;
  std::vector<Record> records;
  auto report = restore_tasks(seg.name(), {t}, records);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->skipped, 1u);
  EXPECT_EQ(report->resubmitted, 0u);
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].find(std::to_string(t.task_id)), std::string::npos) << report->problems[0];
  EXPECT_NE(report->problems[0].find("spec"), std::string::npos) << report->problems[0];
  EXPECT_TRUE(records.empty());
  EXPECT_TRUE(report->mapping.empty());
  EXPECT_EQ(seg.tasks_in(TaskState::kPending), 0u);
}

TEST(JournalEngineTest, RestoreSkipsATaskOfAnUnknownQueue) {
  TestSegment seg("je", journal_config(JournalMode::kOff));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  log::LiveTask t;
  t.epoch = kOldEpoch;
  t.task_id = TaskId::make(1, 1).value;
  t.state = TaskState::kPending;
  t.spec = spec_of("echo", "lost queue", "nosuchqueue");
  std::vector<Record> records;
  auto report = restore_tasks(seg.name(), {t}, records);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->skipped, 1u);
  EXPECT_EQ(report->resubmitted, 0u);
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].find("nosuchqueue"), std::string::npos) << report->problems[0];
  EXPECT_NE(report->problems[0].find(std::to_string(t.task_id)), std::string::npos) << report->problems[0];
  EXPECT_TRUE(records.empty());
  EXPECT_EQ(seg.tasks_in(TaskState::kPending), 0u);
}

TEST(JournalEngineTest, RestoreResubmitsAPendingTaskThatThenRuns) {
  TestSegment seg("je", journal_config(JournalMode::kOff));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  log::LiveTask t;
  t.epoch = kOldEpoch;
  t.task_id = TaskId::make(9, 4).value;
  t.state = TaskState::kPending;
  t.spec = spec_of("echo", "back again");
  std::vector<Record> records;
  auto report = restore_tasks(seg.name(), {t}, records);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->resubmitted, 1u);
  EXPECT_EQ(report->skipped, 0u);
  EXPECT_TRUE(report->problems.empty());
  ASSERT_EQ(report->mapping.size(), 1u);
  EXPECT_EQ(report->mapping[0].first, t.task_id);
  const TaskId fresh{report->mapping[0].second};
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].type, RecordType::kRecovered);
  EXPECT_EQ(records[0].task_id, fresh.value);
  EXPECT_EQ(records[0].other_id, t.task_id);
  EXPECT_EQ(records[0].other_epoch, kOldEpoch);
  EXPECT_EQ(records[0].epoch, static_cast<std::uint64_t>(seg.snapshot().created_unix_ns));
  WorkerThread wt(seg.worker());
  auto out = seg.client().wait(fresh, kHangTimeoutNs);
  ASSERT_TRUE(wt.stop_and_join());
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kSucceeded);
  EXPECT_EQ(out->value, "back again");
}

TEST(JournalEngineTest, RestoreMakesAFinishedTaskResultReadable) {
  TestSegment seg("je", journal_config(JournalMode::kOff));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  log::LiveTask t;
  t.epoch = kOldEpoch;
  t.task_id = TaskId::make(2, 8).value;
  t.state = TaskState::kSucceeded;
  t.attempts = 1;
  t.spec = spec_of("echo", "the payload");
  t.result = "the stored result";
  t.finish_wall_ns = ipc::realtime_ns();
  std::vector<Record> records;
  auto report = restore_tasks(seg.name(), {t}, records);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->results_restored, 1u);
  EXPECT_EQ(report->resubmitted, 0u);
  EXPECT_EQ(report->expired, 0u);
  ASSERT_EQ(report->mapping.size(), 1u);
  const TaskId fresh{report->mapping[0].second};
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].type, RecordType::kRecovered);
  EXPECT_EQ(records[0].other_id, t.task_id);
  // No worker runs: the outcome is there without running anything.
  auto got = seg.client().try_get(fresh);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  ASSERT_TRUE(got->has_value()) << "a restored finished task must be finished";
  EXPECT_EQ((*got)->state, TaskState::kSucceeded);
  EXPECT_EQ((*got)->value, "the stored result");
  EXPECT_EQ(seg.tasks_in(TaskState::kPending), 0u);
}

TEST(JournalEngineTest, RestoreJournalsTheRestoredTask) {
  TestSegment seg("je", journal_config(JournalMode::kDurable));
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto reader = attach_reader(seg.name());
  ASSERT_NE(reader, nullptr);
  log::LiveTask pending;
  pending.epoch = kOldEpoch;
  pending.task_id = TaskId::make(3, 3).value;
  pending.state = TaskState::kPending;
  pending.spec = spec_of("echo", "p");
  log::LiveTask done = pending;
  done.task_id = TaskId::make(4, 4).value;
  done.state = TaskState::kFailed;
  done.attempts = 2;
  done.result = "it broke";
  done.finish_wall_ns = ipc::realtime_ns();
  std::vector<Record> recovered;
  auto report = restore_tasks(seg.name(), {pending, done}, recovered);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  ASSERT_EQ(report->mapping.size(), 2u);
  std::vector<Record> records;
  ASSERT_TRUE(read_until(*reader, records, [](const auto& v) { return v.size() >= 2; }));
  ASSERT_EQ(records.size(), 2u) << describe(records);
  EXPECT_EQ(records[0].type, RecordType::kSubmitted);
  EXPECT_EQ(records[0].task_id, report->mapping[0].second);
  EXPECT_EQ(state_of(records[0].state_word), TaskState::kPending);
  // A restored finished task is logged whole, as a snapshot of it.
  EXPECT_EQ(records[1].type, RecordType::kTaskSnapshot);
  EXPECT_EQ(records[1].task_id, report->mapping[1].second);
  EXPECT_EQ(state_of(records[1].state_word), TaskState::kFailed);
  ASSERT_TRUE(records[1].result.has_value());
  EXPECT_EQ(*records[1].result, "it broke");
}

}  // namespace
}  // namespace taskring
