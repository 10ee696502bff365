// Bounded structures and the full policy: a full queue ring, a full slot
// table and a full payload area each give kResourceExhausted at once under
// kFail and after the timeout under kWait, unblock a waiting producer when
// room appears, and never leak the slot or block of the failed submit.
// submit_batch: partial success, and all-or-nothing validation.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "taskring/client.h"
#include "taskring/worker.h"

namespace taskring {
namespace {

using testing::kHangTimeoutNs;
using testing::TestSegment;
using testing::wait_until;
using testing::WorkerThread;

constexpr std::uint32_t kRing = 64;

EngineConfig ring_config() {
  EngineConfig c = testing::small_config();
  c.ring_capacity = kRing;  // the smallest ring; slots (4096) are plentiful
  return c;
}

EngineConfig slot_config() {
  EngineConfig c = testing::small_config();
  c.slots = 16;  // the slot table runs out long before the ring (1024)
  return c;
}

// 512 units of 128 bytes: eight 8000-byte payloads (8 KiB blocks) fill it.
EngineConfig area_config() {
  EngineConfig c = testing::small_config();
  c.payload_area = 64 * 1024;
  c.max_payload = 8000;
  return c;
}
constexpr int kAreaBlocks = 8;

SubmitOptions fail_fast() {
  SubmitOptions o;
  o.on_full = FullPolicy::kFail;
  return o;
}

SubmitOptions wait_for(std::int64_t timeout_ns) {
  SubmitOptions o;
  o.on_full = FullPolicy::kWait;
  o.timeout_ns = timeout_ns;
  return o;
}

void expect_exhausted(const Result<TaskId>& r, const char* what) {
  ASSERT_FALSE(r.is_ok()) << "submit into a full structure succeeded";
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().to_string();
  EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
}

// Fills the ring of the default queue at normal priority with echo tasks.
std::vector<TaskId> fill_ring(Client& c) {
  std::vector<TaskId> ids;
  for (std::uint32_t i = 0; i < kRing; ++i) {
    auto id = c.submit("echo", std::to_string(i), fail_fast());
    EXPECT_TRUE(id.is_ok()) << "submit " << i << ": " << id.status().to_string();
    if (id) ids.push_back(*id);
  }
  return ids;
}

// ---- queue ring ------------------------------------------------------------------

TEST(FullPolicyTest, FullRingWithFailPolicyIsExhaustedAtOnceAndLeaksNothing) {
  TestSegment seg("full-ring", ring_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto ids = fill_ring(seg.client());
  ASSERT_EQ(ids.size(), kRing);
  const std::uint64_t free_before = seg.free_slots();
  for (int i = 0; i < 10; ++i) expect_exhausted(seg.client().submit("echo", "x", fail_fast()), "queue ring full");
  expect_exhausted(seg.client().submit("echo", "x", fail_fast()), "on_full is fail");
  const SegmentSnapshot snap = seg.snapshot();
  EXPECT_EQ(snap.free_slots, free_before) << "a failed submit kept its slot";
  EXPECT_EQ(snap.tasks_by_state[static_cast<int>(TaskState::kPending)], kRing);
  EXPECT_EQ(snap.queues.at(0).submitted, kRing);
  // Other priorities have their own rings.
  SubmitOptions high = fail_fast();
  high.priority = Priority::kHigh;
  auto h = seg.client().submit("echo", "high", high);
  EXPECT_TRUE(h.is_ok()) << h.status().to_string();
  // Every accepted task still completes with its own payload.
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(kRing + 1).is_ok());
  for (std::uint32_t i = 0; i < kRing; ++i) {
    auto out = seg.client().wait(ids[i], kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    EXPECT_EQ(out->value, std::to_string(i));
  }
  EXPECT_EQ(seg.client().wait(*h, kHangTimeoutNs)->value, "high");
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(FullPolicyTest, FullRingWithWaitPolicyGivesUpAfterTheTimeout) {
  TestSegment seg("full-ring-wait", ring_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  ASSERT_EQ(fill_ring(seg.client()).size(), kRing);
  const std::uint64_t free_before = seg.free_slots();
  auto r = seg.client().submit("echo", "x", wait_for(50'000'000));
  expect_exhausted(r, "queue ring full");
  EXPECT_NE(r.status().message().find("waited 50 ms"), std::string::npos) << r.status().message();
  EXPECT_EQ(seg.free_slots(), free_before);
  EXPECT_EQ(seg.snapshot().queues.at(0).submitted, kRing);
}

TEST(FullPolicyTest, FullRingWithWaitPolicyUnblocksWhenAWorkerDrains) {
  TestSegment seg("full-ring-drain", ring_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  auto ids = fill_ring(seg.client());
  ASSERT_EQ(ids.size(), kRing);
  std::atomic<bool> returned{false};
  Result<TaskId> blocked = Status(StatusCode::kInternal, "not yet");
  std::thread producer([&] {
    blocked = seg.client().submit("echo", "the 65th", wait_for(kHangTimeoutNs));
    returned.store(true);
  });
  // Give the producer time to reach its park; it must still be waiting.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned.load()) << "submit into a full ring under kWait returned without room";
  WorkerThread wt(seg.worker());  // drains the ring
  producer.join();
  ASSERT_TRUE(blocked.is_ok()) << blocked.status().to_string();
  auto out = seg.client().wait(*blocked, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->value, "the 65th");
  for (std::uint32_t i = 0; i < kRing; ++i) EXPECT_EQ(seg.client().wait(ids[i], kHangTimeoutNs)->value, std::to_string(i));
  ASSERT_TRUE(wt.stop_and_join());
  EXPECT_EQ(wt.last_stats().succeeded, kRing + 1);
}

// ---- slot table -------------------------------------------------------------------

TEST(FullPolicyTest, FullSlotTableIsExhaustedAtOnceWithFailPolicy) {
  TestSegment seg("full-slots", slot_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  std::vector<TaskId> ids;
  for (std::uint32_t i = 0; i < seg.config().slots; ++i) {
    auto id = seg.client().submit("echo", "x", fail_fast());
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ids.push_back(*id);
  }
  EXPECT_EQ(seg.free_slots(), 0u);
  expect_exhausted(seg.client().submit("echo", "x", fail_fast()), "no free task slot");
  expect_exhausted(seg.client().submit("echo", "x", wait_for(20'000'000)), "no free task slot");
  // Finished but unread results still hold their slots.
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(seg.config().slots).is_ok());
  expect_exhausted(seg.client().submit("echo", "x", fail_fast()), "no free task slot");
  // Reading one result makes room for exactly one task.
  ASSERT_TRUE(seg.client().wait(ids[0], kHangTimeoutNs).is_ok());
  EXPECT_TRUE(seg.client().submit("echo", "x", fail_fast()).is_ok());
  expect_exhausted(seg.client().submit("echo", "x", fail_fast()), "no free task slot");
}

TEST(FullPolicyTest, FullSlotTableWithWaitPolicyUnblocksWhenAResultIsRead) {
  TestSegment seg("full-slots-wait", slot_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  std::vector<TaskId> ids;
  for (std::uint32_t i = 0; i < seg.config().slots; ++i) {
    auto id = seg.client().submit("echo", std::to_string(i), fail_fast());
    ASSERT_TRUE(id.is_ok());
    ids.push_back(*id);
  }
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(seg.config().slots).is_ok());
  std::atomic<bool> returned{false};
  Result<TaskId> blocked = Status(StatusCode::kInternal, "not yet");
  std::thread producer([&] {
    blocked = seg.client().submit("echo", "late", wait_for(kHangTimeoutNs));
    returned.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned.load()) << "submit with a full slot table under kWait returned without room";
  ASSERT_EQ(seg.client().wait(ids[3], kHangTimeoutNs)->value, "3");  // frees one slot
  producer.join();
  ASSERT_TRUE(blocked.is_ok()) << blocked.status().to_string();
  EXPECT_EQ(blocked->slot(), ids[3].slot());
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  EXPECT_EQ(seg.client().wait(*blocked, kHangTimeoutNs)->value, "late");
}

// ---- payload area -------------------------------------------------------------------

TEST(FullPolicyTest, FullPayloadAreaIsExhaustedAndReturnsTheSlot) {
  TestSegment seg("full-area", area_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const std::string big(seg.config().max_payload, 'b');
  std::vector<TaskId> ids;
  for (int i = 0; i < kAreaBlocks; ++i) {
    // noop: empty results, so only the payloads hold blocks.
    auto id = seg.client().submit("noop", big, fail_fast());
    ASSERT_TRUE(id.is_ok()) << "payload " << i << ": " << id.status().to_string();
    ids.push_back(*id);
  }
  const std::uint64_t free_before = seg.free_slots();
  expect_exhausted(seg.client().submit("noop", big, fail_fast()), "payload area");
  expect_exhausted(seg.client().submit("noop", big, wait_for(20'000'000)), "payload area");
  EXPECT_EQ(seg.free_slots(), free_before) << "a submit that found no room kept its slot";
  // Inline payloads need no block and still go through.
  auto small = seg.client().submit("echo", "tiny", fail_fast());
  ASSERT_TRUE(small.is_ok()) << small.status().to_string();
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(kAreaBlocks + 1).is_ok());
  // Blocks return when the results are read, not before.
  expect_exhausted(seg.client().submit("noop", big, fail_fast()), "payload area");
  for (TaskId id : ids) {
    auto out = seg.client().wait(id, kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    EXPECT_EQ(out->state, TaskState::kSucceeded) << out->value;
  }
  EXPECT_EQ(seg.client().wait(*small, kHangTimeoutNs)->value, "tiny");
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
  for (int i = 0; i < kAreaBlocks; ++i) {
    auto again = seg.client().submit("noop", big, fail_fast());
    EXPECT_TRUE(again.is_ok()) << "after recovery, payload " << i << ": " << again.status().to_string();
  }
}

TEST(FullPolicyTest, ResultThatFindsNoRoomInTheAreaFailsTheTaskWithAMessage) {
  TestSegment seg("full-area-result", area_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const std::string big(seg.config().max_payload, 'b');
  std::vector<TaskId> ids;
  SubmitOptions once = fail_fast();
  once.max_attempts = 1;  // the test is about the first attempt's message
  for (int i = 0; i < kAreaBlocks; ++i) {
    auto id = seg.client().submit("echo", big, once);
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ids.push_back(*id);
  }
  // Each echo needs a second block for its result while its payload's block
  // is still held: with the area full, the first one finds no room.
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  auto out = seg.client().wait(ids[0], kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kFailed);
  EXPECT_NE(out->value.find("area full"), std::string::npos) << out->value;
  EXPECT_NE(out->value.find(std::to_string(big.size()) + "-byte result"), std::string::npos) << out->value;
}

TEST(FullPolicyTest, FullPayloadAreaWithWaitPolicyUnblocksWhenBlocksReturn) {
  TestSegment seg("full-area-wait", area_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const std::string big(seg.config().max_payload, 'b');
  std::vector<TaskId> ids;
  for (int i = 0; i < kAreaBlocks; ++i) {
    auto id = seg.client().submit("noop", big, fail_fast());
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ids.push_back(*id);
  }
  std::atomic<bool> returned{false};
  Result<TaskId> blocked = Status(StatusCode::kInternal, "not yet");
  std::thread producer([&] {
    blocked = seg.client().submit("noop", big, wait_for(kHangTimeoutNs));
    returned.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned.load()) << "submit into a full payload area under kWait returned without room";
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(1).is_ok());
  ASSERT_TRUE(seg.client().wait(ids[0], kHangTimeoutNs).is_ok());  // frees its payload block
  producer.join();
  ASSERT_TRUE(blocked.is_ok()) << blocked.status().to_string();
  ASSERT_TRUE(w->run_tasks(kAreaBlocks).is_ok());
  for (std::size_t i = 1; i < ids.size(); ++i) {
    EXPECT_EQ(seg.client().wait(ids[i], kHangTimeoutNs)->state, TaskState::kSucceeded);
  }
  auto out = seg.client().wait(*blocked, kHangTimeoutNs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->state, TaskState::kSucceeded);
}

// ---- submit_batch -------------------------------------------------------------------

TEST(FullPolicyTest, BatchIntoAShortRingSubmitsWhatFitsAndReturnsTheRest) {
  TestSegment seg("batch-partial", ring_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  constexpr std::size_t kN = 100;
  std::vector<std::string> payloads;
  for (std::size_t i = 0; i < kN; ++i) payloads.push_back("p" + std::to_string(i));
  std::vector<TaskSpec> specs;
  for (const auto& p : payloads) specs.push_back({"echo", p});
  std::vector<TaskId> ids(kN);
  auto n = seg.client().submit_batch(specs, ids, fail_fast());
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  ASSERT_EQ(*n, kRing) << "a partial batch must report exactly what went in";
  const SegmentSnapshot snap = seg.snapshot();
  EXPECT_EQ(snap.tasks_by_state[static_cast<int>(TaskState::kPending)], kRing);
  EXPECT_EQ(snap.free_slots, seg.config().slots - kRing) << "slots of the tasks that did not fit leaked";
  EXPECT_EQ(snap.queues.at(0).submitted, kRing);
  for (std::size_t i = 0; i < kRing; ++i) {
    auto info = seg.client().peek(ids[i]);
    ASSERT_TRUE(info.is_ok()) << i << ": " << info.status().to_string();
    EXPECT_EQ(info->state, TaskState::kPending);
  }
  // Nothing fits now: the error is returned, since none was submitted.
  std::vector<TaskId> more(3);
  auto none = seg.client().submit_batch(std::span<const TaskSpec>(specs.data(), 3), more, fail_fast());
  ASSERT_FALSE(none.is_ok());
  EXPECT_EQ(none.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(seg.free_slots(), seg.config().slots - kRing);
  // The accepted ones run in order with their own payloads.
  auto w = seg.worker();
  ASSERT_TRUE(w->run_tasks(kRing).is_ok());
  for (std::size_t i = 0; i < kRing; ++i) {
    auto out = seg.client().wait(ids[i], kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok());
    EXPECT_EQ(out->value, payloads[i]);
  }
  EXPECT_EQ(seg.free_slots(), seg.config().slots);
}

TEST(FullPolicyTest, BatchLargerThanTheSlotTableSubmitsWhatFits) {
  TestSegment seg("batch-slots", slot_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  std::vector<TaskSpec> specs(20, TaskSpec{"echo", "s"});
  std::vector<TaskId> ids(specs.size());
  auto n = seg.client().submit_batch(specs, ids, fail_fast());
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, seg.config().slots);
  EXPECT_EQ(seg.free_slots(), 0u);
}

TEST(FullPolicyTest, BatchWithWaitPolicyCompletesWhileAWorkerDrains) {
  TestSegment seg("batch-wait", ring_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  constexpr std::size_t kN = 1000;  // many rings' worth
  std::vector<std::string> payloads;
  for (std::size_t i = 0; i < kN; ++i) payloads.push_back(std::to_string(i));
  std::vector<TaskSpec> specs;
  for (const auto& p : payloads) specs.push_back({"echo", p});
  std::vector<TaskId> ids(kN);
  WorkerThread wt(seg.worker());
  auto n = seg.client().submit_batch(specs, ids, wait_for(kHangTimeoutNs));
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  ASSERT_EQ(*n, kN);
  for (std::size_t i = 0; i < kN; ++i) {
    auto out = seg.client().wait(ids[i], kHangTimeoutNs);
    ASSERT_TRUE(out.is_ok()) << i << ": " << out.status().to_string();
    ASSERT_EQ(out->value, payloads[i]);
  }
  ASSERT_TRUE(wt.stop_and_join());
  EXPECT_EQ(wt.last_stats().succeeded, kN);
}

TEST(FullPolicyTest, InvalidTaskFailsTheWholeBatchBeforeAnythingIsSubmitted) {
  TestSegment seg("batch-invalid");
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  const std::string too_big(seg.config().max_payload + 1, 'x');
  std::vector<TaskSpec> specs = {{"echo", "a"}, {"echo", "b"}, {"echo", too_big}, {"echo", "d"}};
  std::vector<TaskId> ids(specs.size());
  auto n = seg.client().submit_batch(specs, ids);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find(std::to_string(too_big.size())), std::string::npos) << n.status().message();
  specs[2] = {"", "c"};
  n = seg.client().submit_batch(specs, ids);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  specs[2] = {"echo", "c"};
  SubmitOptions bad_queue;
  bad_queue.queue = "elsewhere";
  n = seg.client().submit_batch(specs, ids, bad_queue);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  // ids too short for the batch.
  std::vector<TaskId> short_ids(2);
  n = seg.client().submit_batch(specs, short_ids);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  const SegmentSnapshot snap = seg.snapshot();
  EXPECT_EQ(snap.queues.at(0).submitted, 0u);
  EXPECT_EQ(snap.free_slots, seg.config().slots);
  // The valid batch goes through whole.
  n = seg.client().submit_batch(specs, ids);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(*n, specs.size());
}

// SubmitOptions::interrupted ends a wait for room with kCancelled, and
// leaves nothing behind: the ring still holds exactly what was submitted.
TEST(FullPolicyTest, InterruptedWaitForRoomEndsWithCancelledAndSubmitsNothing) {
  TestSegment seg("full-interrupt", ring_config());
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  for (std::uint32_t i = 0; i < kRing; ++i) ASSERT_TRUE(seg.client().submit("noop", "", fail_fast()).is_ok());
  int polls = 0;
  SubmitOptions o = wait_for(-1);  // without the hook this would wait forever
  o.interrupted = [](void* arg) { return ++*static_cast<int*>(arg) >= 3; };
  o.interrupt_arg = &polls;
  auto r = seg.client().submit("noop", "", o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().to_string();
  EXPECT_EQ(polls, 3);
  EXPECT_EQ(seg.client().submit("noop", "", fail_fast()).status().code(), StatusCode::kResourceExhausted);
}

// A durable submit with no sidecar waits for the disk until interrupted; the
// task itself was submitted (its id is in the message) and is pending.
TEST(FullPolicyTest, InterruptedDurableWaitSaysTheTaskWasSubmitted) {
  EngineConfig c = testing::small_config();
  c.journal = JournalMode::kBestEffort;
  TestSegment seg("durable-interrupt", c);
  ASSERT_TRUE(seg.status().is_ok()) << seg.status().to_string();
  int polls = 0;
  SubmitOptions o;
  o.durable = true;
  o.interrupted = [](void* arg) { return ++*static_cast<int*>(arg) >= 2; };
  o.interrupt_arg = &polls;
  auto r = seg.client().submit("noop", "", o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().to_string();
  EXPECT_NE(r.status().message().find("was submitted"), std::string::npos) << r.status().message();
  EXPECT_EQ(polls, 2);
  const std::string msg = r.status().message();
  const std::size_t at = msg.find("task ") + 5;
  auto id = parse_task_id(msg.substr(at, msg.find(' ', at) - at));
  ASSERT_TRUE(id.is_ok()) << msg;
  auto info = seg.client().peek(*id);
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(info->state, TaskState::kPending);
}

}  // namespace
}  // namespace taskring
