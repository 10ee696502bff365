// The built-in handlers every `taskring worker` offers (docs/cli.md).
#include <charconv>
#include <chrono>
#include <string>
#include <thread>

#include "taskring/ipc/futex.h"
#include "taskring/worker.h"

namespace taskring {
namespace {

// Parses the payload as a non-negative decimal count for sleep and spin.
bool parse_count(std::string_view payload, std::uint64_t& out) {
  if (payload.empty()) {
    out = 0;
    return true;
  }
  const auto [end, ec] = std::from_chars(payload.data(), payload.data() + payload.size(), out);
  return ec == std::errc() && end == payload.data() + payload.size();
}

void bad_count(TaskContext& ctx, const char* unit) {
  ctx.fail("task '" + std::string(ctx.task_name()) + "': payload '" + std::string(ctx.payload().substr(0, 32)) +
           "' must be a non-negative decimal number of " + unit);
}

}  // namespace

void Worker::register_builtins() {
  const auto must = [](Status s) { TASKRING_ASSERT(s.is_ok()); };
  must(register_handler("noop", [](TaskContext&) {}));
  must(register_handler("echo", [](TaskContext& ctx) { ctx.set_result(ctx.payload()); }));
  // fail fails the same way every time: one attempt unless the submitter asks for more.
  must(register_handler("fail", [](TaskContext& ctx) { ctx.fail(ctx.payload()); }, HandlerOptions{1}));
  must(register_handler("sleep", [](TaskContext& ctx) {
    std::uint64_t ms = 0;
    if (!parse_count(ctx.payload(), ms)) return bad_count(ctx, "milliseconds");
    // Sleep in short steps so that a cancel request ends the task early.
    const std::int64_t end = ipc::monotonic_ns() + static_cast<std::int64_t>(ms) * 1'000'000;
    while (ipc::monotonic_ns() < end) {
      if (ctx.cancel_requested()) return;
      const std::int64_t left = end - ipc::monotonic_ns();
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<std::int64_t>(left, 5'000'000)));
    }
  }));
  must(register_handler("spin", [](TaskContext& ctx) {
    std::uint64_t us = 0;
    if (!parse_count(ctx.payload(), us)) return bad_count(ctx, "microseconds");
    const std::int64_t end = ipc::monotonic_ns() + static_cast<std::int64_t>(us) * 1000;
    while (ipc::monotonic_ns() < end) {
      if (ctx.cancel_requested()) return;
    }
  }));
}

}  // namespace taskring
