// LoadConfig checks, the handler spec parser and the system factory.
#include <charconv>
#include <string>

#include "load.h"

namespace taskring::bench {

namespace {

constexpr std::uint32_t kMaxProcesses = 64;
constexpr std::uint32_t kMaxBatch = 4096;
constexpr std::uint32_t kMaxInflight = 1 << 16;
constexpr std::uint32_t kMaxPayload = 1 << 20;
constexpr std::int64_t kMaxSpinUs = 1'000'000;
// Sequence numbers have kSequenceBits bits; a producer never issues more.
constexpr std::uint64_t kMaxTasks = std::uint64_t{1} << 36;

std::string number(double v) {
  std::string s = std::to_string(v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

std::string HandlerSpec::to_string() const {
  if (kind == Kind::kNoop) return "noop";
  return "spin:" + std::to_string(spin_ns / 1000);
}

Result<HandlerSpec> parse_handler(std::string_view text) {
  const auto bad = [&] {
    return invalid_argument("'" + std::string(text) + "': must be noop or spin:US (US a whole number of microseconds, 1 to 1000000)");
  };
  HandlerSpec spec;
  if (text == "noop") return spec;
  constexpr std::string_view kSpin = "spin:";
  if (!text.starts_with(kSpin)) return bad();
  const std::string_view digits = text.substr(kSpin.size());
  std::int64_t us = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), us);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || us < 1 ||
      us > kMaxSpinUs) {
    return bad();
  }
  spec.kind = HandlerSpec::Kind::kSpin;
  spec.spin_ns = us * 1000;
  return spec;
}

Result<double> parse_rate(std::string_view text) {
  const auto bad = [&] {
    return invalid_argument("'" + std::string(text) +
                            "': must be a number of tasks per second above 0, at most 1e9, optionally with a k or M "
                            "suffix (e.g. 50000, 50k, 1.5M)");
  };
  double scale = 1;
  std::string_view digits = text;
  if (!digits.empty() && (digits.back() == 'k' || digits.back() == 'K')) {
    scale = 1e3;
    digits.remove_suffix(1);
  } else if (!digits.empty() && digits.back() == 'M') {
    scale = 1e6;
    digits.remove_suffix(1);
  }
  // Digits with at most one '.': no sign, exponent, inf or nan.
  if (digits.empty() || digits.find_first_not_of("0123456789.") != std::string_view::npos ||
      digits.find('.') != digits.rfind('.')) {
    return bad();
  }
  double v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != digits.data() + digits.size()) return bad();
  v *= scale;
  if (!(v > 0) || v > 1e9) return bad();
  return v;
}

std::uint32_t LoadConfig::inflight_limit() const noexcept {
  if (inflight != 0) return inflight;
  if (rate > 0) return 4096;
  return batch > 64 ? batch : 64;
}

std::uint64_t LoadConfig::tasks_for_producer(std::uint32_t index) const noexcept {
  if (producers == 0) return 0;
  return tasks / producers + (index < tasks % producers ? 1 : 0);
}

Status LoadConfig::validate() const {
  if (producers < 1 || producers > kMaxProcesses) {
    return invalid_argument("--producers " + std::to_string(producers) + ": must be between 1 and " +
                            std::to_string(kMaxProcesses));
  }
  if (workers < 1 || workers > kMaxProcesses) {
    return invalid_argument("--workers " + std::to_string(workers) + ": must be between 1 and " +
                            std::to_string(kMaxProcesses));
  }
  if ((tasks == 0) == (duration_ns == 0)) {
    return invalid_argument("--tasks " + std::to_string(tasks) + ", --duration " +
                            number(static_cast<double>(duration_ns) / 1e9) +
                            "s: give exactly one of --tasks (a count above 0) and --duration (seconds above 0)");
  }
  if (tasks > kMaxTasks) {
    return invalid_argument("--tasks " + std::to_string(tasks) + ": must be at most " + std::to_string(kMaxTasks));
  }
  if (tasks != 0 && tasks < producers) {
    return invalid_argument("--tasks " + std::to_string(tasks) + ": must be at least --producers (" +
                            std::to_string(producers) + ") so every producer has work");
  }
  if (batch < 1 || batch > kMaxBatch) {
    return invalid_argument("--batch " + std::to_string(batch) + ": must be between 1 and " + std::to_string(kMaxBatch));
  }
  if (inflight != 0 && (inflight < batch || inflight > kMaxInflight)) {
    return invalid_argument("--inflight " + std::to_string(inflight) + ": must be between --batch (" +
                            std::to_string(batch) + ") and " + std::to_string(kMaxInflight));
  }
  if (!(rate >= 0) || rate > 1e9) {
    return invalid_argument("--rate " + number(rate) + ": must be between 0 (closed loop) and 1e9 tasks per second");
  }
  if (payload < sizeof(TaskHeader) || payload > kMaxPayload) {
    return invalid_argument("--payload " + std::to_string(payload) + ": must be between " +
                            std::to_string(sizeof(TaskHeader)) + " bytes (the harness's task header) and " +
                            std::to_string(kMaxPayload));
  }
  if (drain_timeout_ns <= 0) {
    return invalid_argument("--drain-timeout " + number(static_cast<double>(drain_timeout_ns) / 1e9) +
                            "s: must be above 0 seconds");
  }
  if (claim_batch < 1 || claim_batch > 256) {
    return invalid_argument("--claim-batch " + std::to_string(claim_batch) + ": must be between 1 and 256");
  }
  if (duration_ns != 0 && rate > 0 &&
      rate / producers * (static_cast<double>(duration_ns) / 1e9) > static_cast<double>(kDurationCapacity)) {
    return invalid_argument("--rate " + number(rate) + " for --duration " +
                            number(static_cast<double>(duration_ns) / 1e9) + "s: more than " +
                            std::to_string(kDurationCapacity) +
                            " tasks per producer, the most a --duration run tracks; shorten it or add producers");
  }
  const std::uint64_t first_share = tasks_for_producer(0);
  if (tasks != 0 && inject_loss + inject_duplicate > first_share) {
    return invalid_argument("--inject-loss " + std::to_string(inject_loss) + " + --inject-duplicate " +
                            std::to_string(inject_duplicate) + ": must not exceed producer 0's tasks (" +
                            std::to_string(first_share) + ")");
  }
  if (inject_loss >= inflight_limit()) {
    return invalid_argument("--inject-loss " + std::to_string(inject_loss) + ": must be below the in-flight limit (" +
                            std::to_string(inflight_limit()) + "), or producer 0 can never submit again");
  }
  return Status::ok();
}

std::unique_ptr<System> make_system(std::string_view name) {
  if (name == "taskring") return make_taskring_system();
  if (name == "bip_mq") return make_bip_mq_system();
  if (name == "moodycamel") return make_moodycamel_system();
  if (name == "tbb") return make_tbb_system();
  return nullptr;
}

LatencySummary summarize(const Histogram& h) {
  LatencySummary s;
  s.count = h.count();
  s.p50 = static_cast<std::int64_t>(h.value_at_percentile(50));
  s.p90 = static_cast<std::int64_t>(h.value_at_percentile(90));
  s.p99 = static_cast<std::int64_t>(h.value_at_percentile(99));
  s.p999 = static_cast<std::int64_t>(h.value_at_percentile(99.9));
  s.max = static_cast<std::int64_t>(h.max());
  return s;
}

}  // namespace taskring::bench
