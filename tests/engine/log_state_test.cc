// LogState: folding durable-log records into task states, in order and out
// of order, with resyncs, recovery marks, epochs and hostile input. Records
// are built directly; no files.
#include "taskring/log_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "layout_internal.h"
#include "test_support.h"

namespace taskring::log {
namespace {

namespace sw = ::taskring::detail::sw;

constexpr std::uint64_t kEpoch1 = 1;
constexpr std::uint64_t kEpoch2 = 2;

std::uint64_t make_id(std::uint32_t slot, std::uint32_t generation) {
  return (std::uint64_t{generation} << 32) | slot;
}

// A state word: [generation | tag | attempts | state].
std::uint64_t make_word(TaskState st, std::uint32_t generation, std::uint32_t tag, std::uint32_t attempts = 0) {
  return (std::uint64_t{generation} << 32) | (std::uint64_t{tag & 0xFF} << sw::kTagShift) |
         (std::uint64_t{attempts & 0xFF} << sw::kAttemptShift) | static_cast<std::uint64_t>(st);
}

TaskSpec make_spec(const std::string& payload) {
  TaskSpec s;
  s.queue = "default";
  s.name = "echo";
  s.payload = payload;
  return s;
}

// Builds records with increasing seq numbers, as a sidecar would log them.
class Records {
 public:
  Record attached(std::uint64_t epoch, std::uint32_t slots = 1024, const std::string& name = "jobs") {
    Record r = base(RecordType::kSegmentAttached, epoch);
    r.aux = slots;
    r.text = name;
    return r;
  }
  Record submitted(std::uint64_t epoch, std::uint32_t slot, std::uint32_t gen, std::uint32_t tag,
                   const std::string& payload = "p") {
    Record r = task(RecordType::kSubmitted, epoch, slot, gen, make_word(TaskState::kPending, gen, tag));
    r.spec = make_spec(payload);
    return r;
  }
  Record started(std::uint64_t epoch, std::uint32_t slot, std::uint32_t gen, std::uint32_t tag,
                 std::uint32_t attempts = 1) {
    return task(RecordType::kStarted, epoch, slot, gen, make_word(TaskState::kRunning, gen, tag, attempts));
  }
  Record requeued(std::uint64_t epoch, std::uint32_t slot, std::uint32_t gen, std::uint32_t tag,
                  std::uint32_t attempts, RequeueReason why = RequeueReason::kRetry) {
    Record r = task(RecordType::kRequeued, epoch, slot, gen, make_word(TaskState::kPending, gen, tag, attempts));
    r.aux = static_cast<std::uint32_t>(why);
    return r;
  }
  Record finished(TaskState st, std::uint64_t epoch, std::uint32_t slot, std::uint32_t gen, std::uint32_t tag,
                  std::uint32_t attempts, std::optional<std::string> result, std::int64_t wall_ns = 0) {
    const RecordType t = st == TaskState::kSucceeded ? RecordType::kSucceeded
                         : st == TaskState::kFailed  ? RecordType::kFailed
                                                     : RecordType::kCancelled;
    Record r = task(t, epoch, slot, gen, make_word(st, gen, tag, attempts));
    if (wall_ns != 0) r.wall_ns = wall_ns;
    r.result_missing = !result.has_value();
    r.result = std::move(result);
    return r;
  }
  // The word after freeing: free, the next generation, the tag kept.
  Record freed(std::uint64_t epoch, std::uint32_t slot, std::uint32_t gen, std::uint32_t tag,
               FreeReason why = FreeReason::kConsumed) {
    Record r = task(RecordType::kFreed, epoch, slot, gen, make_word(TaskState::kFree, sw::next_generation(gen), tag));
    r.aux = static_cast<std::uint32_t>(why);
    return r;
  }
  Record slot_free(std::uint64_t epoch, std::uint32_t slot, std::uint32_t next_gen, std::uint32_t tag) {
    Record r = task(RecordType::kFreed, epoch, slot, next_gen, make_word(TaskState::kFree, next_gen, tag));
    r.aux = static_cast<std::uint32_t>(FreeReason::kSlotFree);
    return r;
  }
  Record snapshot(std::uint64_t epoch, std::uint32_t slot, std::uint32_t gen, TaskState st, std::uint32_t tag,
                  std::uint32_t attempts, const std::string& payload = "p",
                  std::optional<std::string> result = std::nullopt) {
    Record r = task(RecordType::kTaskSnapshot, epoch, slot, gen, make_word(st, gen, tag, attempts));
    r.spec = make_spec(payload);
    r.result = std::move(result);
    return r;
  }
  Record resync_begin(std::uint64_t epoch) {
    Record r = base(RecordType::kResyncBegin, epoch);
    r.aux = static_cast<std::uint32_t>(ResyncReason::kDropped);
    return r;
  }
  Record resync_end(std::uint64_t epoch, std::uint32_t tasks = 0) {
    Record r = base(RecordType::kResyncEnd, epoch);
    r.aux = tasks;
    return r;
  }
  Record recovered(std::uint64_t epoch, std::uint64_t new_id, std::uint64_t old_epoch, std::uint64_t old_id) {
    Record r = base(RecordType::kRecovered, epoch);
    r.task_id = new_id;
    r.other_epoch = old_epoch;
    r.other_id = old_id;
    return r;
  }

 private:
  Record base(RecordType t, std::uint64_t epoch) {
    Record r;
    r.type = t;
    r.seq = ++seq_;
    r.wall_ns = 1'000'000'000 + static_cast<std::int64_t>(seq_) * 1000;
    r.epoch = epoch;
    return r;
  }
  Record task(RecordType t, std::uint64_t epoch, std::uint32_t slot, std::uint32_t gen, std::uint64_t word) {
    Record r = base(t, epoch);
    r.task_id = make_id(slot, gen);
    r.state_word = word;
    r.pid = 42;
    return r;
  }
  std::uint64_t seq_ = 0;
};

LogState fold(const std::vector<Record>& records) {
  LogState s;
  for (const Record& r : records) s.apply(r);
  return s;
}

// ---- Errors and hostile input first -----------------------------------------

TEST(LogStateTest, SlotOutOfRangeIsInvalidAndIgnored) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1, 1024));
  s.apply(rec.submitted(kEpoch1, kMaxLogSlots, 1, 1));
  s.apply(rec.submitted(kEpoch1, 0xFFFFFFFFu, 1, 1));
  EXPECT_TRUE(s.live_tasks().empty());
  EXPECT_EQ(s.counts().invalid, 2u);
  EXPECT_EQ(s.counts().stale_ignored, 0u);
  EXPECT_EQ(s.counts().records, 3u);
}

TEST(LogStateTest, SlotAboveTheSlotCountButValidIsKept) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1, 16));
  s.apply(rec.submitted(kEpoch1, 5000, 1, 1));
  s.apply(rec.started(kEpoch1, 5000, 1, 1));
  ASSERT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.live_tasks()[0].state, TaskState::kRunning);
  EXPECT_EQ(s.counts().invalid, 0u);
}

TEST(LogStateTest, UnknownStateBitsAreInvalid) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1));
  Record bad = rec.submitted(kEpoch1, 3, 1, 1);
  bad.state_word = (bad.state_word & ~sw::kStateMask) | 7;  // no such state
  s.apply(bad);
  Record reserved = rec.snapshot(kEpoch1, 4, 1, TaskState::kPending, 1, 0);
  reserved.state_word = (reserved.state_word & ~sw::kStateMask) | sw::kReservedState;
  s.apply(reserved);
  EXPECT_TRUE(s.live_tasks().empty());
  EXPECT_EQ(s.counts().invalid, 2u);
}

TEST(LogStateTest, StateBitsThatContradictTheTypeAreInvalid) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  Record started = rec.started(kEpoch1, 3, 1, 1);
  started.state_word = make_word(TaskState::kSucceeded, 1, 1, 1);  // a "started" that says succeeded
  s.apply(started);
  ASSERT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.live_tasks()[0].state, TaskState::kPending);
  EXPECT_EQ(s.counts().invalid, 1u);
}

TEST(LogStateTest, UnknownTypeEpochZeroAndGenerationZeroAreInvalid) {
  Records rec;
  LogState s;
  Record unknown = rec.submitted(kEpoch1, 1, 1, 1);
  unknown.type = static_cast<RecordType>(200);
  s.apply(unknown);
  Record zero_type = rec.submitted(kEpoch1, 1, 1, 1);
  zero_type.type = static_cast<RecordType>(0);
  s.apply(zero_type);
  s.apply(rec.submitted(0, 1, 1, 1));
  s.apply(rec.submitted(kEpoch1, 1, 0, 1));
  s.apply(rec.attached(0));
  s.apply(rec.attached(kEpoch1, 0));
  s.apply(rec.attached(kEpoch1, kMaxLogSlots + 1));
  s.apply(rec.recovered(kEpoch2, make_id(1, 1), 0, make_id(1, 1)));
  s.apply(rec.recovered(kEpoch2, make_id(1, 1), kEpoch1, make_id(kMaxLogSlots, 1)));
  s.apply(rec.resync_begin(0));
  const StateCounts c = s.counts();
  EXPECT_EQ(c.invalid, 10u);
  EXPECT_EQ(c.records, 10u);
  EXPECT_EQ(c.epochs, 0u);
  EXPECT_EQ(s.last_epoch(), 0u);
  EXPECT_TRUE(s.live_tasks().empty());
  // Unknown types are counted in no type; the rest under their type.
  std::uint64_t typed = 0;
  for (std::uint64_t n : c.by_type) typed += n;
  EXPECT_EQ(typed, 8u);
}

TEST(LogStateTest, EpochWithoutSegmentAttachedIsCountedAndFolded) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 7, 1, 1));
  s.apply(rec.started(kEpoch1, 7, 1, 1));
  const StateCounts c = s.counts();
  EXPECT_EQ(c.epochs, 0u);
  EXPECT_EQ(c.epochs_unattached, 1u);
  EXPECT_EQ(c.invalid, 0u);
  ASSERT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.live_tasks()[0].state, TaskState::kRunning);
}

TEST(LogStateTest, SegmentAttachedAfterTheEpochsRecordsKeepsTheirEntries) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 7, 1, 1));
  s.apply(rec.attached(kEpoch1, 1024));
  s.apply(rec.started(kEpoch1, 7, 1, 1));
  s.apply(rec.submitted(kEpoch1, 7, 0, 1));  // invalid, but must not disturb the entry
  ASSERT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.live_tasks()[0].state, TaskState::kRunning);
  ASSERT_TRUE(s.live_tasks()[0].spec.has_value());
  EXPECT_EQ(s.counts().epochs, 1u);
  EXPECT_EQ(s.counts().epochs_unattached, 0u);
}

// ---- A task's life in order --------------------------------------------------

TEST(LogStateTest, NormalLifecycleEndsFreed) {
  Records rec;
  const std::vector<Record> log = {rec.attached(kEpoch1), rec.submitted(kEpoch1, 3, 1, 1),
                                   rec.started(kEpoch1, 3, 1, 1),
                                   rec.finished(TaskState::kSucceeded, kEpoch1, 3, 1, 1, 1, "ok"),
                                   rec.freed(kEpoch1, 3, 1, 1)};
  const LogState s = fold(log);
  EXPECT_TRUE(s.live_tasks().empty());
  const StateCounts c = s.counts();
  EXPECT_EQ(c.live_pending + c.live_running + c.live_succeeded + c.live_failed + c.live_cancelled, 0u);
  EXPECT_EQ(c.stale_ignored, 0u);
}

TEST(LogStateTest, SubmittedTaskIsLivePendingWithItsSpec) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1));
  s.apply(rec.submitted(kEpoch1, 3, 1, 1, "hello"));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].epoch, kEpoch1);
  EXPECT_EQ(live[0].task_id, make_id(3, 1));
  EXPECT_EQ(live[0].state, TaskState::kPending);
  ASSERT_TRUE(live[0].spec.has_value());
  EXPECT_EQ(*live[0].spec, make_spec("hello"));
  EXPECT_FALSE(live[0].result.has_value());
  EXPECT_EQ(live[0].finish_wall_ns, 0);
  EXPECT_EQ(live[0].last_seq, 2u);
}

TEST(LogStateTest, StartedTaskIsLiveRunningWithItsAttempts) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.started(kEpoch1, 3, 1, 1, 1));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kRunning);
  EXPECT_EQ(live[0].attempts, 1u);
  EXPECT_EQ(live[0].state_word, make_word(TaskState::kRunning, 1, 1, 1));
}

TEST(LogStateTest, TerminalTaskKeepsResultAndFinishTime) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.started(kEpoch1, 3, 1, 1));
  s.apply(rec.finished(TaskState::kFailed, kEpoch1, 3, 1, 1, 1, "boom", 777));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kFailed);
  EXPECT_EQ(live[0].result, std::optional<std::string>("boom"));
  EXPECT_EQ(live[0].finish_wall_ns, 777);
  ASSERT_TRUE(live[0].spec.has_value());
}

TEST(LogStateTest, TerminalWithResultMissingHasNoResult) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.finished(TaskState::kSucceeded, kEpoch1, 3, 1, 1, 1, std::nullopt, 55));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kSucceeded);
  EXPECT_FALSE(live[0].result.has_value());
  EXPECT_EQ(live[0].finish_wall_ns, 55);
}

TEST(LogStateTest, PayloadMissingBringsNoSpec) {
  Records rec;
  LogState s;
  Record sub = rec.submitted(kEpoch1, 3, 1, 1, "");
  sub.payload_missing = true;  // even if a spec came along, it is not the task's
  s.apply(sub);
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kPending);
  EXPECT_FALSE(live[0].spec.has_value());
}

TEST(LogStateTest, RvalueApplyMovesThePayload) {
  Records rec;
  LogState s;
  const std::string big(4096, 'x');
  s.apply(rec.submitted(kEpoch1, 3, 1, 1, big));
  Record fin = rec.finished(TaskState::kSucceeded, kEpoch1, 3, 1, 1, 1, std::string(1000, 'r'));
  s.apply(std::move(fin));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  ASSERT_TRUE(live[0].spec.has_value());
  EXPECT_EQ(live[0].spec->payload, big);
  EXPECT_EQ(live[0].result, std::optional<std::string>(std::string(1000, 'r')));
}

// ---- Out of order ------------------------------------------------------------

TEST(LogStateTest, StartedBeforeSubmittedIsRunningWithTheSpec) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 1, "late");
  const Record st = rec.started(kEpoch1, 3, 1, 1);
  LogState s;
  s.apply(st);
  s.apply(sub);
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kRunning);
  ASSERT_TRUE(live[0].spec.has_value());
  EXPECT_EQ(live[0].spec->payload, "late");
  EXPECT_EQ(live[0].last_seq, st.seq);  // the spec filled in, the key stayed
  EXPECT_EQ(s.counts().stale_ignored, 0u);
}

TEST(LogStateTest, FreedBeforeStartedStaysFreed) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 1);
  const Record st = rec.started(kEpoch1, 3, 1, 1);
  const Record fin = rec.finished(TaskState::kSucceeded, kEpoch1, 3, 1, 1, 1, "ok");
  const Record fr = rec.freed(kEpoch1, 3, 1, 1);
  LogState s;
  s.apply(sub);
  s.apply(fr);
  s.apply(st);
  s.apply(fin);
  EXPECT_TRUE(s.live_tasks().empty());
  EXPECT_EQ(s.counts().stale_ignored, 2u);
}

TEST(LogStateTest, FreedFirstThenSubmittedStaysFreed) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 1);
  const Record fr = rec.freed(kEpoch1, 3, 1, 1, FreeReason::kWithdrawn);
  LogState s;
  s.apply(fr);
  s.apply(sub);
  EXPECT_TRUE(s.live_tasks().empty());
  EXPECT_EQ(s.counts().stale_ignored, 1u);  // not even its spec is kept
}

TEST(LogStateTest, TombstoneIsNotRevivedByANewerTag) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.freed(kEpoch1, 3, 1, 1));
  s.apply(rec.requeued(kEpoch1, 3, 1, 2, 1));  // no valid log has this; the task is gone all the same
  s.apply(rec.started(kEpoch1, 3, 1, 2, 2));
  EXPECT_TRUE(s.live_tasks().empty());
  EXPECT_EQ(s.counts().stale_ignored, 2u);
}

TEST(LogStateTest, RetryEndsInTheLastAttempt) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 10));
  s.apply(rec.started(kEpoch1, 3, 1, 10, 1));
  s.apply(rec.requeued(kEpoch1, 3, 1, 11, 1));
  {
    const auto live = s.live_tasks();
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].state, TaskState::kPending);
    EXPECT_EQ(live[0].attempts, 1u);
  }
  s.apply(rec.started(kEpoch1, 3, 1, 11, 2));
  s.apply(rec.finished(TaskState::kSucceeded, kEpoch1, 3, 1, 11, 2, "second"));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kSucceeded);
  EXPECT_EQ(live[0].attempts, 2u);
  EXPECT_EQ(live[0].result, std::optional<std::string>("second"));
}

TEST(LogStateTest, LateRequeueDoesNotUndoTheNextAttempt) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 10);
  const Record st1 = rec.started(kEpoch1, 3, 1, 10, 1);
  const Record rq = rec.requeued(kEpoch1, 3, 1, 11, 1);
  const Record st2 = rec.started(kEpoch1, 3, 1, 11, 2);
  LogState s;
  s.apply(sub);
  s.apply(st2);
  s.apply(st1);  // older tag
  s.apply(rq);   // same tag, lower rank
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kRunning);
  EXPECT_EQ(live[0].attempts, 2u);
  EXPECT_EQ(s.counts().stale_ignored, 2u);
}

TEST(LogStateTest, TagWrapsFrom255To0) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 255);
  const Record st1 = rec.started(kEpoch1, 3, 1, 255, 1);
  const Record rq = rec.requeued(kEpoch1, 3, 1, 0, 1, RequeueReason::kCrash);
  const Record st2 = rec.started(kEpoch1, 3, 1, 0, 2);
  LogState s;
  s.apply(sub);
  s.apply(rq);
  s.apply(st2);
  s.apply(st1);  // tag 255 is older than tag 0
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kRunning);
  EXPECT_EQ(live[0].attempts, 2u);
  EXPECT_EQ(sw::tag(live[0].state_word), 0u);
}

TEST(LogStateTest, RequeuedDeadLetterDropsTheOldResult) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 1);
  const Record st = rec.started(kEpoch1, 3, 1, 1, 1);
  const Record failed = rec.finished(TaskState::kFailed, kEpoch1, 3, 1, 1, 1, "err", 500);
  const Record rq = rec.requeued(kEpoch1, 3, 1, 2, 0, RequeueReason::kManual);
  LogState s;
  s.apply(sub);
  s.apply(st);
  s.apply(rq);
  s.apply(failed);  // late: must not bring its result back
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].state, TaskState::kPending);
  EXPECT_FALSE(live[0].result.has_value());
  EXPECT_EQ(live[0].finish_wall_ns, 0);
}

TEST(LogStateTest, TerminalRecordFinishTimeWinsOverASnapshots) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 1);
  const Record fin = rec.finished(TaskState::kSucceeded, kEpoch1, 3, 1, 1, 1, std::nullopt, 100);
  Record snap = rec.snapshot(kEpoch1, 3, 1, TaskState::kSucceeded, 1, 1, "p", "res");
  snap.wall_ns = 900;
  for (int order = 0; order < 2; ++order) {
    LogState s;
    s.apply(sub);
    if (order == 0) {
      s.apply(snap);
      s.apply(fin);
    } else {
      s.apply(fin);
      s.apply(snap);
    }
    const auto live = s.live_tasks();
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].finish_wall_ns, 100) << "order " << order;
    EXPECT_EQ(live[0].result, std::optional<std::string>("res")) << "order " << order;
  }
}

// ---- Generations -------------------------------------------------------------

TEST(LogStateTest, NewerGenerationReplacesTheOlderEntry) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1, "old"));
  s.apply(rec.submitted(kEpoch1, 3, 2, 2, "new"));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].task_id, make_id(3, 2));
  EXPECT_EQ(live[0].spec->payload, "new");
}

TEST(LogStateTest, OlderGenerationsLateRecordIsIgnored) {
  Records rec;
  const Record old_sub = rec.submitted(kEpoch1, 3, 1, 1, "old");
  const Record old_start = rec.started(kEpoch1, 3, 1, 1);
  const Record new_sub = rec.submitted(kEpoch1, 3, 2, 2, "new");
  LogState s;
  s.apply(new_sub);
  s.apply(old_sub);
  s.apply(old_start);
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].task_id, make_id(3, 2));
  EXPECT_EQ(live[0].state, TaskState::kPending);
  EXPECT_EQ(live[0].spec->payload, "new");
  EXPECT_EQ(s.counts().stale_ignored, 2u);
}

TEST(LogStateTest, GenerationComparisonWrapsAround) {
  Records rec;
  const Record old_sub = rec.submitted(kEpoch1, 3, 0xFFFFFFFFu, 1, "old");
  const Record new_sub = rec.submitted(kEpoch1, 3, 1, 2, "new");  // the engine skips 0
  LogState s;
  s.apply(new_sub);
  s.apply(old_sub);
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].task_id, make_id(3, 1));
}

TEST(LogStateTest, SlotFreeSnapshotMakesOlderGenerationsStale) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 3, 1));
  s.apply(rec.slot_free(kEpoch1, 3, 5, 4));  // gens 3 and 4 came and went
  EXPECT_TRUE(s.live_tasks().empty());
  s.apply(rec.started(kEpoch1, 3, 3, 1));
  s.apply(rec.submitted(kEpoch1, 3, 4, 3));
  EXPECT_TRUE(s.live_tasks().empty());
  EXPECT_EQ(s.counts().stale_ignored, 2u);
  s.apply(rec.submitted(kEpoch1, 3, 5, 5));  // the next task
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].task_id, make_id(3, 5));
}

TEST(LogStateTest, SlotFreeSnapshotLosesToTheNextTasksRecords) {
  Records rec;
  const Record snap = rec.slot_free(kEpoch1, 3, 5, 4);
  const Record sub = rec.submitted(kEpoch1, 3, 5, 5);
  LogState s;
  s.apply(sub);
  s.apply(snap);
  ASSERT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.counts().stale_ignored, 1u);
}

// ---- Resync ------------------------------------------------------------------

TEST(LogStateTest, ResyncFreesAnEntryItDidNotMention) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1));
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));  // its kFreed was dropped
  s.apply(rec.resync_begin(kEpoch1));
  s.apply(rec.resync_end(kEpoch1, 0));
  EXPECT_TRUE(s.live_tasks().empty());
  EXPECT_EQ(s.counts().resync_freed, 1u);
}

TEST(LogStateTest, ResyncKeepsAnEntryItMentioned) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.submitted(kEpoch1, 4, 1, 1));
  s.apply(rec.resync_begin(kEpoch1));
  s.apply(rec.snapshot(kEpoch1, 3, 1, TaskState::kRunning, 1, 1));
  s.apply(rec.slot_free(kEpoch1, 4, 2, 1));  // slot 4 moved on: its task is gone
  s.apply(rec.resync_end(kEpoch1, 1));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].task_id, make_id(3, 1));
  EXPECT_EQ(live[0].state, TaskState::kRunning);
  EXPECT_EQ(s.counts().resync_freed, 0u);
}

TEST(LogStateTest, ResyncKeepsAnEntryWhoseRecordCameAfterTheBegin) {
  Records rec;
  LogState s;
  s.apply(rec.resync_begin(kEpoch1));
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));  // mirrored while the snapshot ran
  s.apply(rec.resync_end(kEpoch1, 0));
  ASSERT_EQ(s.live_tasks().size(), 1u);
}

TEST(LogStateTest, ResyncKeepsAnOlderEntryThatAdvancedAfterTheBegin) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.resync_begin(kEpoch1));
  s.apply(rec.started(kEpoch1, 3, 1, 1));  // logged after the begin: it was alive then
  s.apply(rec.resync_end(kEpoch1, 0));
  ASSERT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.live_tasks()[0].state, TaskState::kRunning);
}

TEST(LogStateTest, ResyncLeavesOtherEpochsAlone) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.submitted(kEpoch2, 3, 1, 1));
  s.apply(rec.resync_begin(kEpoch2));
  s.apply(rec.snapshot(kEpoch1, 3, 1, TaskState::kPending, 1, 0));  // another epoch: mentions nothing of 2
  s.apply(rec.resync_end(kEpoch2, 0));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].epoch, kEpoch1);
}

TEST(LogStateTest, ResyncEndWithoutBeginChangesNothing) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.resync_end(kEpoch1, 0));
  EXPECT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.counts().stale_ignored, 1u);
}

TEST(LogStateTest, ResyncSnapshotRecordsBeforeTheBeginDoNotMention) {
  Records rec;
  LogState s;
  const Record snap = rec.snapshot(kEpoch1, 3, 1, TaskState::kPending, 1, 0);
  s.apply(rec.resync_begin(kEpoch1));
  s.apply(snap);  // a seq before the begin: not part of this snapshot
  s.apply(rec.resync_end(kEpoch1, 0));
  EXPECT_TRUE(s.live_tasks().empty());
}

// ---- Recovery marks ----------------------------------------------------------

TEST(LogStateTest, RecoveredAfterTheOldTasksRecordsEndsIt) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1));
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.attached(kEpoch2));
  s.apply(rec.recovered(kEpoch2, make_id(9, 1), kEpoch1, make_id(3, 1)));
  s.apply(rec.submitted(kEpoch2, 9, 1, 1));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].epoch, kEpoch2);
  EXPECT_EQ(live[0].task_id, make_id(9, 1));
}

TEST(LogStateTest, RecoveredBeforeTheOldTasksRecordsKeepsItEnded) {
  Records rec;
  const Record sub = rec.submitted(kEpoch1, 3, 1, 1);
  const Record st = rec.started(kEpoch1, 3, 1, 1);
  const Record mark = rec.recovered(kEpoch2, make_id(9, 1), kEpoch1, make_id(3, 1));
  LogState s;
  s.apply(mark);
  s.apply(st);
  s.apply(sub);
  EXPECT_TRUE(s.live_tasks().empty());
  // A later task in the same old slot is a different task.
  s.apply(rec.submitted(kEpoch1, 3, 2, 2));
  ASSERT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.live_tasks()[0].task_id, make_id(3, 2));
}

TEST(LogStateTest, RecoveredOfAnOlderGenerationChangesNothing) {
  Records rec;
  LogState s;
  s.apply(rec.submitted(kEpoch1, 3, 2, 1));
  s.apply(rec.recovered(kEpoch2, make_id(9, 1), kEpoch1, make_id(3, 1)));
  EXPECT_EQ(s.live_tasks().size(), 1u);
  EXPECT_EQ(s.counts().stale_ignored, 1u);
}

// ---- Epochs, counts, order ---------------------------------------------------

TEST(LogStateTest, EpochsAreKeptApart) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1));
  s.apply(rec.submitted(kEpoch1, 3, 5, 1, "one"));
  s.apply(rec.attached(kEpoch2));
  s.apply(rec.submitted(kEpoch2, 3, 1, 1, "two"));  // a lower generation, but another segment
  s.apply(rec.freed(kEpoch2, 3, 1, 1));
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].epoch, kEpoch1);
  EXPECT_EQ(live[0].spec->payload, "one");
  EXPECT_EQ(s.live_tasks(kEpoch1).size(), 1u);
  EXPECT_TRUE(s.live_tasks(kEpoch2).empty());
  EXPECT_TRUE(s.live_tasks(77).empty());
}

TEST(LogStateTest, LastEpochIsTheLatestAttach) {
  Records rec;
  const Record a1 = rec.attached(kEpoch1, 1024, "first");
  const Record a2 = rec.attached(kEpoch2, 1024, "second");
  LogState s;
  EXPECT_EQ(s.last_epoch(), 0u);
  s.apply(a2);
  s.apply(a1);  // out of order: the higher seq stays the latest
  EXPECT_EQ(s.last_epoch(), kEpoch2);
  EXPECT_EQ(s.last_segment(), "second");
  EXPECT_EQ(s.counts().epochs, 2u);
  s.apply(rec.attached(kEpoch2, 1024, "second"));  // a sidecar restart
  EXPECT_EQ(s.counts().epochs, 2u);
}

TEST(LogStateTest, CountsByTypeAndLiveStates) {
  Records rec;
  LogState s;
  s.apply(rec.attached(kEpoch1));
  s.apply(rec.submitted(kEpoch1, 1, 1, 1));                                       // pending
  s.apply(rec.submitted(kEpoch1, 2, 1, 1));
  s.apply(rec.started(kEpoch1, 2, 1, 1));                                         // running
  s.apply(rec.submitted(kEpoch1, 3, 1, 1));
  s.apply(rec.finished(TaskState::kSucceeded, kEpoch1, 3, 1, 1, 1, "ok"));       // succeeded
  s.apply(rec.submitted(kEpoch1, 4, 1, 1));
  s.apply(rec.finished(TaskState::kFailed, kEpoch1, 4, 1, 1, 1, "bad"));         // failed
  s.apply(rec.submitted(kEpoch1, 5, 1, 1));
  s.apply(rec.finished(TaskState::kCancelled, kEpoch1, 5, 1, 1, 0, std::string()));  // cancelled
  s.apply(rec.submitted(kEpoch1, 6, 1, 1));
  s.apply(rec.freed(kEpoch1, 6, 1, 1));                                           // gone
  s.apply(rec.started(kEpoch1, 6, 1, 1));                                         // stale
  const StateCounts c = s.counts();
  EXPECT_EQ(c.records, 13u);
  EXPECT_EQ(c.by_type[static_cast<int>(RecordType::kSegmentAttached)], 1u);
  EXPECT_EQ(c.by_type[static_cast<int>(RecordType::kSubmitted)], 6u);
  EXPECT_EQ(c.by_type[static_cast<int>(RecordType::kStarted)], 2u);
  EXPECT_EQ(c.by_type[static_cast<int>(RecordType::kSucceeded)], 1u);
  EXPECT_EQ(c.by_type[static_cast<int>(RecordType::kFailed)], 1u);
  EXPECT_EQ(c.by_type[static_cast<int>(RecordType::kCancelled)], 1u);
  EXPECT_EQ(c.by_type[static_cast<int>(RecordType::kFreed)], 1u);
  EXPECT_EQ(c.stale_ignored, 1u);
  EXPECT_EQ(c.invalid, 0u);
  EXPECT_EQ(c.epochs, 1u);
  EXPECT_EQ(c.live_pending, 1u);
  EXPECT_EQ(c.live_running, 1u);
  EXPECT_EQ(c.live_succeeded, 1u);
  EXPECT_EQ(c.live_failed, 1u);
  EXPECT_EQ(c.live_cancelled, 1u);
  EXPECT_EQ(s.live_tasks().size(), 5u);
}

TEST(LogStateTest, LiveTasksAreOrderedByEpochThenFirstRecord) {
  Records rec;
  const Record e2 = rec.submitted(kEpoch2, 0, 1, 1);
  const Record a = rec.submitted(kEpoch1, 9, 1, 1);
  const Record b = rec.submitted(kEpoch1, 2, 1, 1);
  const Record b_start = rec.started(kEpoch1, 2, 1, 1);
  const Record c_start = rec.started(kEpoch1, 5, 1, 1);
  const Record c = rec.submitted(kEpoch1, 5, 1, 1);  // logged after its start, applied later
  LogState s;
  for (const Record* r : {&c_start, &b_start, &e2, &c, &b, &a}) s.apply(*r);
  const auto live = s.live_tasks();
  ASSERT_EQ(live.size(), 4u);
  EXPECT_EQ(live[0].task_id, make_id(9, 1));  // seq 2
  EXPECT_EQ(live[1].task_id, make_id(2, 1));  // seq 3
  EXPECT_EQ(live[2].task_id, make_id(5, 1));  // seq 5 (its start)
  EXPECT_EQ(live[3].epoch, kEpoch2);
}

// ---- Randomised: any order folds to the same states ------------------------

// A model segment: per slot the current generation, tag and task, producing
// a valid record stream with retries, requeues, cancels, dead letters,
// snapshots, free-slot snapshots and a recovery into a second epoch.
class Model {
 public:
  struct Task {
    bool live = false;       // a task of the current generation exists
    bool carried = false;
    TaskState state = TaskState::kFree;
    std::uint32_t attempts = 0;
    std::string payload;
    std::optional<std::string> result;
  };
  struct Slot {
    std::uint32_t generation = 1;
    std::uint32_t tag = 0;
    Task task;
  };

  Model(std::mt19937_64& rng, std::uint32_t slots) : rng_(rng) {
    for (std::uint64_t epoch : {kEpoch1, kEpoch2}) {
      std::vector<Slot>& v = slots_[epoch];
      v.resize(slots);
      for (Slot& s : v) {
        // Start near the wrap points of tags and generations now and then.
        s.tag = pick(2) == 0 ? 252 + static_cast<std::uint32_t>(pick(4)) : static_cast<std::uint32_t>(pick(256));
        s.generation = pick(4) == 0 ? 0xFFFFFFFDu : 1 + static_cast<std::uint32_t>(pick(1000));
      }
    }
  }

  std::vector<Record> run(int steps_per_epoch) {
    records_.clear();
    emit_attached(kEpoch1);
    for (int i = 0; i < steps_per_epoch; ++i) step(kEpoch1);
    // Recovery: a new segment; some live tasks of the old one are carried over.
    emit_attached(kEpoch2);
    std::vector<Slot>& old = slots_[kEpoch1];
    for (std::uint32_t i = 0; i < old.size(); ++i) {
      if (old[i].task.live && pick(2) == 0) {
        Record r = base(RecordType::kRecovered, kEpoch2);
        r.task_id = make_id(static_cast<std::uint32_t>(pick(old.size())), 1);
        r.other_epoch = kEpoch1;
        r.other_id = make_id(i, old[i].generation);
        records_.push_back(r);
        old[i].task.carried = true;
      }
    }
    for (int i = 0; i < steps_per_epoch; ++i) step(kEpoch2);
    return records_;
  }

  const std::map<std::uint64_t, std::vector<Slot>>& slots() const { return slots_; }

 private:
  std::uint64_t pick(std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_); }

  Record base(RecordType t, std::uint64_t epoch) {
    Record r;
    r.type = t;
    r.seq = records_.size() + 1;
    r.wall_ns = static_cast<std::int64_t>(r.seq) * 10;
    r.epoch = epoch;
    return r;
  }
  void emit_attached(std::uint64_t epoch) {
    Record r = base(RecordType::kSegmentAttached, epoch);
    r.aux = static_cast<std::uint32_t>(slots_[epoch].size());
    r.text = "seg" + std::to_string(epoch);
    records_.push_back(r);
  }
  void emit(RecordType t, std::uint64_t epoch, std::uint32_t slot, const Slot& s, std::uint32_t aux = 0) {
    Record r = base(t, epoch);
    r.task_id = make_id(slot, s.generation);
    r.aux = aux;
    if (t == RecordType::kFreed) {
      r.state_word = make_word(TaskState::kFree, sw::next_generation(s.generation), s.tag);
    } else {
      r.state_word = make_word(s.task.state, s.generation, s.tag, s.task.attempts);
    }
    if (t == RecordType::kSubmitted || t == RecordType::kTaskSnapshot) {
      if (t == RecordType::kSubmitted && pick(8) == 0) {
        r.payload_missing = true;
      } else {
        r.spec = make_spec(s.task.payload);
      }
    }
    const bool terminal_record = t == RecordType::kSucceeded || t == RecordType::kFailed || t == RecordType::kCancelled;
    if (terminal_record || (t == RecordType::kTaskSnapshot && is_terminal(s.task.state))) {
      if (terminal_record && pick(6) == 0) {
        r.result_missing = true;
      } else {
        r.result = s.task.result;
      }
    }
    records_.push_back(std::move(r));
  }

  void step(std::uint64_t epoch) {
    std::vector<Slot>& v = slots_[epoch];
    const auto slot = static_cast<std::uint32_t>(pick(v.size()));
    Slot& s = v[slot];
    Task& t = s.task;
    const std::uint64_t roll = pick(100);
    if (roll < 4 && t.live) {  // a snapshot of the task as it is
      emit(RecordType::kTaskSnapshot, epoch, slot, s);
      return;
    }
    if (!t.live) {
      if (roll < 8) {  // a snapshot of the free slot
        Record r = base(RecordType::kFreed, epoch);
        r.task_id = make_id(slot, s.generation);
        r.aux = static_cast<std::uint32_t>(FreeReason::kSlotFree);
        r.state_word = make_word(TaskState::kFree, s.generation, s.tag);
        records_.push_back(r);
        return;
      }
      s.tag = (s.tag + 1) & 0xFF;  // publish
      t = Task{};
      t.live = true;
      t.state = TaskState::kPending;
      t.payload = "payload-" + std::to_string(epoch) + "-" + std::to_string(slot) + "-" + std::to_string(s.generation);
      emit(RecordType::kSubmitted, epoch, slot, s);
      return;
    }
    switch (t.state) {
      case TaskState::kPending:
        if (roll < 60) {
          t.state = TaskState::kRunning;
          t.attempts = std::min<std::uint32_t>(t.attempts + 1, 255);
          emit(RecordType::kStarted, epoch, slot, s);
        } else if (roll < 80) {
          s.tag = (s.tag + 1) & 0xFF;
          emit(RecordType::kRequeued, epoch, slot, s, static_cast<std::uint32_t>(RequeueReason::kAudit));
        } else {
          t.state = TaskState::kCancelled;
          t.result = "";
          emit(RecordType::kCancelled, epoch, slot, s);
        }
        break;
      case TaskState::kRunning:
        if (roll < 40) {
          t.state = TaskState::kSucceeded;
          t.result = "ok-" + std::to_string(s.tag);
          emit(RecordType::kSucceeded, epoch, slot, s);
        } else if (roll < 55) {
          t.state = TaskState::kFailed;
          t.result = "err-" + std::to_string(s.tag);
          emit(RecordType::kFailed, epoch, slot, s);
        } else if (roll < 65) {
          t.state = TaskState::kCancelled;
          t.result = "";
          emit(RecordType::kCancelled, epoch, slot, s);
        } else {
          s.tag = (s.tag + 1) & 0xFF;  // a retry or a crash requeue
          t.state = TaskState::kPending;
          emit(RecordType::kRequeued, epoch, slot, s,
               static_cast<std::uint32_t>(roll < 85 ? RequeueReason::kRetry : RequeueReason::kCrash));
        }
        break;
      default:  // terminal
        if (t.state == TaskState::kFailed && roll < 25) {
          s.tag = (s.tag + 1) & 0xFF;  // Client::requeue of a dead letter
          t.state = TaskState::kPending;
          t.attempts = 0;
          t.result.reset();
          emit(RecordType::kRequeued, epoch, slot, s, static_cast<std::uint32_t>(RequeueReason::kManual));
        } else if (roll < 80) {
          emit(RecordType::kFreed, epoch, slot, s, static_cast<std::uint32_t>(FreeReason::kConsumed));
          s.generation = sw::next_generation(s.generation);
          s.task = Task{};
        }
        break;
    }
  }

  std::mt19937_64& rng_;
  std::map<std::uint64_t, std::vector<Slot>> slots_;
  std::vector<Record> records_;
};

using Fingerprint = std::tuple<std::uint64_t, std::uint64_t, TaskState, std::uint32_t, std::uint64_t,
                               std::optional<std::string>, std::optional<std::string>, std::int64_t>;

std::vector<Fingerprint> fingerprint(const LogState& s) {
  std::vector<Fingerprint> out;
  for (const LiveTask& t : s.live_tasks()) {
    std::optional<std::string> payload;
    if (t.spec.has_value()) payload = t.spec->payload;
    out.emplace_back(t.epoch, t.task_id, t.state, t.attempts, t.state_word, payload, t.result, t.finish_wall_ns);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Moves each record earlier by up to `max_shift` places (or anywhere, when
// max_shift is 0): the order a set of racing journal writers could produce,
// and worse.
std::vector<Record> perturb(const std::vector<Record>& in, std::mt19937_64& rng, std::size_t max_shift) {
  std::vector<std::pair<double, std::size_t>> keys;
  keys.reserve(in.size());
  std::uniform_real_distribution<double> any(0.0, static_cast<double>(in.size()));
  std::uniform_real_distribution<double> shift(0.0, static_cast<double>(max_shift) + 0.5);
  for (std::size_t i = 0; i < in.size(); ++i) {
    keys.emplace_back(max_shift == 0 ? any(rng) : static_cast<double>(i) - shift(rng), i);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<Record> out;
  out.reserve(in.size());
  for (const auto& k : keys) out.push_back(in[k.second]);
  return out;
}

TEST(LogStateTest, RandomOrderFoldsToTheInOrderStates) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 8; ++round) {
    // Short rounds leave most slots in their first generations, whose tags
    // start just below the wrap; long ones go through many generations.
    Model model(rng, 48);
    const std::vector<Record> log = model.run(round % 2 == 0 ? 300 : 4000);
    const LogState in_order = fold(log);

    // The in-order fold against the model.
    using Expected = std::tuple<std::uint64_t, std::uint64_t, TaskState, std::uint64_t, std::optional<std::string>>;
    std::vector<Expected> want;
    for (const auto& [epoch, slots] : model.slots()) {
      for (std::uint32_t i = 0; i < slots.size(); ++i) {
        const Model::Task& t = slots[i].task;
        if (!t.live || t.carried) continue;
        want.emplace_back(epoch, make_id(i, slots[i].generation), t.state,
                          make_word(t.state, slots[i].generation, slots[i].tag, t.attempts),
                          is_terminal(t.state) ? t.result : std::nullopt);
      }
    }
    std::sort(want.begin(), want.end());
    std::vector<Expected> got;
    for (const LiveTask& t : in_order.live_tasks()) {
      EXPECT_EQ(t.attempts, sw::attempts(t.state_word));
      got.emplace_back(t.epoch, t.task_id, t.state, t.state_word, t.result);
    }
    std::sort(got.begin(), got.end());
    // Results can be missing (result_missing on every record that had it):
    // compare them only where the fold has one.
    ASSERT_EQ(got.size(), want.size()) << "seed " << seed << " round " << round;
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (!std::get<4>(got[i]).has_value()) std::get<4>(want[i]).reset();
      ASSERT_EQ(got[i], want[i]) << "seed " << seed << " round " << round << " task " << i;
    }
    ASSERT_FALSE(got.empty());

    const std::vector<Fingerprint> expected = fingerprint(in_order);
    const StateCounts expected_counts = in_order.counts();
    for (std::size_t max_shift : {std::size_t{3}, std::size_t{40}, std::size_t{0}}) {
      std::vector<Record> shuffled = perturb(log, rng, max_shift);
      LogState s;
      for (Record& r : shuffled) s.apply(std::move(r));
      ASSERT_EQ(fingerprint(s), expected) << "seed " << seed << " round " << round << " shift " << max_shift;
      const StateCounts c = s.counts();
      EXPECT_EQ(c.live_pending, expected_counts.live_pending);
      EXPECT_EQ(c.live_running, expected_counts.live_running);
      EXPECT_EQ(c.live_succeeded, expected_counts.live_succeeded);
      EXPECT_EQ(c.live_failed, expected_counts.live_failed);
      EXPECT_EQ(c.live_cancelled, expected_counts.live_cancelled);
      EXPECT_EQ(c.invalid, 0u);
      EXPECT_EQ(s.last_epoch(), kEpoch2);
    }
  }
}

}  // namespace
}  // namespace taskring::log
