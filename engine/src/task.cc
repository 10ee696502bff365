#include <charconv>
#include <cstdio>
#include <set>
#include <string>

#include "taskring/ipc/arena.h"
#include "taskring/ipc/journal.h"
#include "taskring/ipc/ring.h"
#include "layout_internal.h"
#include "taskring/options.h"
#include "taskring/task.h"

namespace taskring {

Result<TaskId> parse_task_id(std::string_view text) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !TaskId{v}.valid()) {
    return invalid_argument("task id '" + std::string(text) +
                            "': must be a decimal id as printed by submit (generation << 32 | slot, generation >= 1)");
  }
  return TaskId{v};
}

std::string to_string(TaskId id) { return std::to_string(id.value); }

std::string_view state_name(TaskState s) noexcept {
  switch (s) {
    case TaskState::kFree: return "free";
    case TaskState::kPending: return "pending";
    case TaskState::kRunning: return "running";
    case TaskState::kSucceeded: return "succeeded";
    case TaskState::kFailed: return "failed";
    case TaskState::kCancelled: return "cancelled";
  }
  return "invalid";
}

std::string_view priority_name(Priority p) noexcept {
  switch (p) {
    case Priority::kCritical: return "critical";
    case Priority::kHigh: return "high";
    case Priority::kNormal: return "normal";
    case Priority::kLow: return "low";
  }
  return "invalid";
}

Result<Priority> parse_priority(std::string_view text) {
  for (int i = 0; i < kPriorityCount; ++i) {
    const auto p = static_cast<Priority>(i);
    if (text == priority_name(p) || text == std::to_string(i)) return p;
  }
  return invalid_argument("priority '" + std::string(text) + "': must be one of critical, high, normal, low (or 0..3)");
}

namespace {
bool is_pow2(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
std::string num(std::uint64_t v) { return std::to_string(v); }
}  // namespace

Status EngineConfig::validate() const {
  constexpr std::uint32_t kMaxSlots = 1u << 22;
  if (slots < 1 || slots > kMaxSlots) {
    return invalid_argument("slots " + num(slots) + ": must be between 1 and " + num(kMaxSlots));
  }
  if (queues.empty() || queues.size() > kMaxQueues) {
    return invalid_argument("queues: " + num(queues.size()) + " given, must be between 1 and " + num(kMaxQueues));
  }
  std::set<std::string_view> seen;
  for (const std::string& q : queues) {
    bool ok = !q.empty() && q.size() <= kMaxQueueNameLength;
    for (char c : q) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.');
    }
    if (!ok) {
      return invalid_argument("queue name '" + q + "': must be 1 to " + num(kMaxQueueNameLength) +
                              " characters of A-Z a-z 0-9 _ - .");
    }
    if (!seen.insert(q).second) return invalid_argument("queue name '" + q + "': listed twice");
  }
  if (!is_pow2(ring_capacity) || ring_capacity < 64 || ring_capacity > ipc::Ring::kMaxCapacity) {
    return invalid_argument("ring_capacity " + num(ring_capacity) + ": must be a power of two between 64 and " +
                            num(ipc::Ring::kMaxCapacity));
  }
  constexpr std::uint64_t kMaxPayload = 1u << 30;
  if (max_payload > kMaxPayload) {
    return invalid_argument("max_payload " + num(max_payload) + ": must be at most " + num(kMaxPayload) + " (1 GiB)");
  }
  constexpr std::uint64_t kMaxArea = std::uint64_t{1} << 38;
  if (payload_area % 4096 != 0 || payload_area > kMaxArea) {
    return invalid_argument("payload_area " + num(payload_area) + ": must be a multiple of 4096 and at most " +
                            num(kMaxArea) + " (256 GiB)");
  }
  // Results over kInlineResultBytes (the smaller inline area) need a block too.
  if (max_payload > detail::kInlineResultBytes &&
      max_payload > ipc::Arena::max_block_data(payload_area / ipc::kArenaUnit)) {
    return invalid_argument("max_payload " + num(max_payload) + ": payloads over " + num(detail::kInlineBytes) +
                            " bytes and results over " + num(detail::kInlineResultBytes) +
                            " bytes live in the payload area, whose largest block holds " +
                            num(ipc::Arena::max_block_data(payload_area / ipc::kArenaUnit)) +
                            " bytes; raise payload_area or lower max_payload");
  }
  if (max_workers < 1 || max_workers > 254) {
    return invalid_argument("max_workers " + num(max_workers) + ": must be between 1 and 254");
  }
  if (!is_pow2(deque_capacity) || deque_capacity < 16 || deque_capacity > 65536) {
    return invalid_argument("deque_capacity " + num(deque_capacity) + ": must be a power of two between 16 and 65536");
  }
  if ((mode & ~0777u) != 0 || (mode & 0600u) != 0600u) {
    char octal[16];
    std::snprintf(octal, sizeof octal, "0%o", mode);
    return invalid_argument(std::string("mode ") + octal + ": must be within 0777 and include owner read and write (0600)");
  }
  if (static_cast<unsigned>(journal) > static_cast<unsigned>(JournalMode::kDurable)) {
    return invalid_argument("journal " + num(static_cast<unsigned>(journal)) + ": must be off, best-effort or durable");
  }
  if (!is_pow2(journal_capacity) || journal_capacity < ipc::Journal::kMinCapacity ||
      journal_capacity > ipc::Journal::kMaxCapacity) {
    return invalid_argument("journal_capacity " + num(journal_capacity) + ": must be a power of two between " +
                            num(ipc::Journal::kMinCapacity) + " and " + num(ipc::Journal::kMaxCapacity));
  }
  return Status::ok();
}

std::string_view journal_mode_name(JournalMode m) noexcept {
  switch (m) {
    case JournalMode::kOff: return "off";
    case JournalMode::kBestEffort: return "best-effort";
    case JournalMode::kDurable: return "durable";
  }
  return "unknown";
}

Result<JournalMode> parse_journal_mode(std::string_view text) {
  if (text == "off") return JournalMode::kOff;
  if (text == "best-effort") return JournalMode::kBestEffort;
  if (text == "durable") return JournalMode::kDurable;
  return invalid_argument("journal mode '" + std::string(text) + "': must be off, best-effort or durable");
}

}  // namespace taskring
