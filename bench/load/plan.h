// Capacity planning: `taskring-bench plan` sweeps the offered rate in open
// loop over taskring, for one or more worker counts, finds the highest rate
// each worker count sustains within a p99 round-trip target, and writes a
// Markdown report with an SVG plot beside it. docs/capacity-planning.md
// explains how to read them.
//
// The parsers, the verdicts and the renderers are pure functions of their
// arguments, so tests check them on synthetic reports without running load.
//
// Thread safety: functions of their arguments only; run_plan forks (through
// run_load) and must be called from a process with one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "load.h"
#include "taskring/base/status.h"

namespace taskring::bench {

// --- parsers (each error starts with the quoted text and says what is
// accepted; the caller adds the flag) -----------------------------------------

// A positive duration with a unit: a decimal number followed by ns, us (or
// µs), ms or s, e.g. "500us", "2ms", "1.5s". Between 1 ns and 1 hour.
// Returns nanoseconds.
Result<std::int64_t> parse_duration(std::string_view text);
// A comma-separated list of rates, each as parse_rate accepts it, strictly
// increasing: "50k,100k,200k". Empty entries are errors.
Result<std::vector<double>> parse_rate_list(std::string_view text);
// A comma-separated list of distinct worker counts, each 1..64: "1,2,4".
Result<std::vector<std::uint32_t>> parse_worker_list(std::string_view text);
// `steps` rates from `from` to `to` in geometric progression: the ends as
// given, the rates between rounded to 3 significant figures. Requires
// 0 < from < to and 2 <= steps <= 100; fails (invalid argument) if rounding
// makes two rates equal (too many steps for the range).
Result<std::vector<double>> geometric_rates(double from, double to, std::uint32_t steps);

// --- the sweep and its verdicts ------------------------------------------------

// The achieved throughput must be at least this share of the offered rate.
inline constexpr double kKeptUpShare = 0.95;
// A worker count's sweep ends after this many failing steps in a row.
inline constexpr int kFailuresToStop = 2;

// Why a step does not count as sustainable; a bit set (kStepOk: none).
enum StepProblem : std::uint32_t {
  kStepOk = 0,
  kStepRunFailed = 1u << 0,    // the run's status was not OK, or it stalled
  kStepLostTasks = 1u << 1,    // tasks submitted and never completed
  kStepBadAccounting = 1u << 2,  // duplicated or malformed tasks
  kStepFellBehind = 1u << 3,   // achieved < kKeptUpShare of offered
  kStepOverTarget = 1u << 4,   // p99 round trip above the target
};

// One offered rate at one worker count: what the run measured.
struct PlanStep {
  double offered_tps = 0;
  double achieved_tps = 0;
  std::uint64_t completed = 0;
  std::uint64_t lost = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t malformed = 0;
  bool stalled = false;
  std::string error;            // the run's Status message; empty when OK
  LatencySummary round_trip;    // intended submission -> result seen, ns
};

// Every step run at one worker count, in increasing offered rate.
struct WorkerSweep {
  std::uint32_t workers = 1;
  std::vector<PlanStep> steps;
  // Rates of the plan not run because kFailuresToStop steps failed in a row.
  std::vector<double> skipped_rates;
};

// What was asked: the common run settings, the rates, the worker counts and
// the target.
struct PlanSettings {
  LoadConfig base;                 // producers, duration_ns, payload, batch, handler, pin
  std::vector<double> rates;       // strictly increasing
  std::vector<std::uint32_t> workers;
  std::int64_t p99_target_ns = 0;
};

struct PlanReport {
  nlohmann::json meta;             // run_meta() at the start of the sweep
  PlanSettings settings;
  std::vector<WorkerSweep> sweeps;  // one per entry of settings.workers
};

// The problems of `step` against `p99_target_ns` (kStepOk if it passes).
std::uint32_t judge_step(const PlanStep& step, std::int64_t p99_target_ns);
// "p99 over target, fell behind" and the like; "ok" for kStepOk.
std::string describe_problems(std::uint32_t problems);

// The answer for one worker count.
struct SweepAnswer {
  // Index of the highest offered rate that passed, if any did.
  std::optional<std::size_t> sustainable;
  // Index of the first failing step above `sustainable` (or the first
  // failing step, when none passed), if any failed.
  std::optional<std::size_t> broke;
  // A step below `sustainable` failed: the figures are noisy.
  bool failure_below = false;
};
SweepAnswer find_sustainable(const WorkerSweep& sweep, std::int64_t p99_target_ns);

// The LoadConfig of one step: `base` with workers, rate set, tasks 0.
LoadConfig step_config(const PlanSettings& settings, std::uint32_t workers, double rate);

// Runs the whole plan over taskring, writing one progress line per step to
// stderr. Settings must have passed every step_config(...).validate().
// Returns the report; failed steps are in it, never an error. May block for
// the whole sweep (steps x duration and more).
PlanReport run_plan(const PlanSettings& settings);

// --- rendering (pure) ----------------------------------------------------------

// The plot: achieved throughput (x, linear) against round-trip latency (y,
// log scale, microseconds); one polyline per percentile (p50, p90, p99,
// p99.9) per worker count, a dashed line at the p99 target, axes, ticks, a
// legend and a title. A standalone SVG document.
std::string render_plan_svg(const PlanReport& report);
// The Markdown report; it embeds the plot as `svg_file_name`, relative to
// the Markdown file.
std::string render_plan_markdown(const PlanReport& report, std::string_view svg_file_name);
// {"meta", "settings", "sweeps": [{"workers", "steps": [...], "sustainable_tps", ...}]}.
nlohmann::json plan_json(const PlanReport& report);

}  // namespace taskring::bench
