#include "options.h"

#include <string>

namespace taskring::bench {

namespace {
constexpr std::uint64_t kMaxPayloadFlag = std::uint64_t{1} << 20;
}  // namespace

Result<std::int64_t> parse_positive_seconds(std::string_view text) {
  auto v = cli::parse_seconds(text);
  if (!v) return v.status();
  if (*v == 0) return invalid_argument("'" + std::string(text) + "': must be above 0 seconds");
  return *v;
}

Result<std::uint32_t> parse_payload(std::string_view text) {
  auto v = cli::parse_byte_size(text);
  if (!v) return v.status();
  if (*v < sizeof(TaskHeader) || *v > kMaxPayloadFlag) {
    return invalid_argument("'" + std::string(text) + "': must be between 16 bytes (the task header) and 1M");
  }
  return static_cast<std::uint32_t>(*v);
}

void add_workload_options(CLI::App* app, LoadConfig& c) {
  add_value_option(app, "--payload", "--payload", c.payload, parse_payload,
                   "payload bytes per task (16 to 1M; K and M suffixes)", "BYTES", "32");
  cli::add_unsigned_option(app, "-b,--batch", c.batch, 1, 4096, "tasks per submit call (1: the one-task API)");
  add_value_option(app, "--handler", "--handler", c.handler, parse_handler,
                   "what each task does: noop, or spin:US (busy for US microseconds)", "HANDLER", "noop");
  app->add_flag("--pin", c.pin, "pin producer i to cpu i and worker j to cpu P+j (modulo the cores)");
  cli::add_unsigned_option(app, "--spin-rounds", c.spin_rounds, 0, 1u << 30,
                           "taskring workers: idle polls before yielding and parking (large: a spinning worker)");
  cli::add_unsigned_option(app, "--claim-batch", c.claim_batch, 1, 256,
                           "taskring workers: tasks taken from the queue at once");
}

}  // namespace taskring::bench
