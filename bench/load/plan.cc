// `taskring-bench plan`: the open-loop rate sweep for capacity planning, its
// verdicts, and its Markdown, SVG and JSON reports. docs/capacity-planning.md
// is the reader's guide.
#include "plan.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "commands.h"
#include "common.h"
#include "options.h"
#include "report.h"
#include "table.h"

namespace taskring::bench {
namespace {

constexpr std::size_t kMaxListEntries = 100;
constexpr std::uint32_t kMaxWorkers = 64;
constexpr std::uint32_t kMaxSteps = 100;
constexpr std::int64_t kMaxDurationNs = 3'600'000'000'000;  // 1 hour

std::string in_quotes(std::string_view text) { return "'" + std::string(text) + "'"; }

// 1234567 -> "1,234,567".
std::string with_commas(std::uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  const std::size_t n = digits.size();
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[i]);
    if (i + 1 < n && (n - i - 1) % 3 == 0) out.push_back(',');
  }
  return out;
}

// A rate for tables and sentences: "50,000", or "31.6" below 100.
std::string format_rate(double tps) {
  if (!(tps >= 0)) return "-";
  if (tps >= 100) return with_commas(static_cast<std::uint64_t>(std::llround(tps)));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", tps);
  return buf;
}

// A rate the way --rates accepts it and a tick shows it: "50k", "1.5M", "800".
std::string short_rate(double tps) {
  char buf[32];
  if (tps >= 1e6) {
    std::snprintf(buf, sizeof buf, "%gM", tps / 1e6);
  } else if (tps >= 1e3) {
    std::snprintf(buf, sizeof buf, "%gk", tps / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%g", tps);
  }
  return buf;
}

std::string latency(std::int64_t ns) { return cli::format_duration_ns(ns); }

// A step's duration as --duration takes it: "2 s", "0.5 s".
std::string seconds_text(std::int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(ns) / 1e9);
  return buf;
}

std::string workers_text(std::uint32_t w) { return std::to_string(w) + (w == 1 ? " worker" : " workers"); }

double round_to_3_significant(double v) {
  if (!(v > 0)) return v;
  const double scale = std::pow(10.0, std::floor(std::log10(v)) - 2);
  return std::round(v / scale) * scale;
}

}  // namespace

// --- parsers --------------------------------------------------------------------

Result<std::int64_t> parse_duration(std::string_view text) {
  const auto bad = [&] {
    return invalid_argument(in_quotes(text) +
                            ": must be a positive duration with a unit, ns, us, ms or s, between 1ns and 1h "
                            "(e.g. 500us, 2ms, 1.5s)");
  };
  const std::size_t number_end = text.find_first_not_of("0123456789.");
  if (number_end == 0 || number_end == std::string_view::npos) return bad();  // no number, or no unit
  const std::string_view number = text.substr(0, number_end);
  const std::string_view unit = text.substr(number_end);
  double scale = 0;
  if (unit == "ns") {
    scale = 1;
  } else if (unit == "us" || unit == "\xC2\xB5s" /* µs */) {
    scale = 1e3;
  } else if (unit == "ms") {
    scale = 1e6;
  } else if (unit == "s") {
    scale = 1e9;
  } else {
    return bad();
  }
  // Digits with at most one '.' and at least one digit: no sign, exponent, inf or nan.
  if (number.find('.') != number.rfind('.') || number.find_first_of("0123456789") == std::string_view::npos) {
    return bad();
  }
  double v = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != number.data() + number.size()) return bad();
  const double ns = v * scale;
  if (!(ns >= 1) || ns > static_cast<double>(kMaxDurationNs)) return bad();
  return static_cast<std::int64_t>(std::llround(ns));
}

Result<std::vector<double>> parse_rate_list(std::string_view text) {
  const std::vector<std::string> entries = cli::split_list(text);
  if (entries.size() > kMaxListEntries) {
    return invalid_argument(in_quotes(text) + ": at most " + std::to_string(kMaxListEntries) + " rates");
  }
  std::vector<double> rates;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].empty()) {
      return invalid_argument(in_quotes(text) + ": entry " + std::to_string(i + 1) +
                              " is empty; give rates separated by commas, e.g. 50k,100k,200k");
    }
    Result<double> rate = parse_rate(entries[i]);
    if (!rate) return rate.status();
    if (!rates.empty() && *rate <= rates.back()) {
      return invalid_argument(in_quotes(text) + ": rates must be strictly increasing (" + entries[i] + " comes after " +
                              entries[i - 1] + ")");
    }
    rates.push_back(*rate);
  }
  return rates;
}

Result<std::vector<std::uint32_t>> parse_worker_list(std::string_view text) {
  const std::vector<std::string> entries = cli::split_list(text);
  if (entries.size() > kMaxListEntries) {
    return invalid_argument(in_quotes(text) + ": at most " + std::to_string(kMaxListEntries) + " worker counts");
  }
  std::vector<std::uint32_t> workers;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].empty()) {
      return invalid_argument(in_quotes(text) + ": entry " + std::to_string(i + 1) +
                              " is empty; give worker counts separated by commas, e.g. 1,2,4");
    }
    Result<std::uint64_t> w = cli::parse_unsigned(entries[i], 1, kMaxWorkers);
    if (!w) return w.status();
    const auto count = static_cast<std::uint32_t>(*w);
    if (std::find(workers.begin(), workers.end(), count) != workers.end()) {
      return invalid_argument(in_quotes(text) + ": worker count " + entries[i] + " appears twice");
    }
    workers.push_back(count);
  }
  return workers;
}

Result<std::vector<double>> geometric_rates(double from, double to, std::uint32_t steps) {
  if (!(from > 0) || !(to > from)) {
    return invalid_argument("rates " + short_rate(from) + " to " + short_rate(to) +
                            ": --rate-from must be above 0 and below --rate-to");
  }
  if (steps < 2 || steps > kMaxSteps) {
    return invalid_argument("steps " + std::to_string(steps) + ": must be between 2 and " + std::to_string(kMaxSteps));
  }
  std::vector<double> rates;
  const double ratio = to / from;
  for (std::uint32_t i = 0; i < steps; ++i) {
    double r = 0;
    if (i == 0) {
      r = from;
    } else if (i + 1 == steps) {
      r = to;
    } else {
      r = round_to_3_significant(from * std::pow(ratio, static_cast<double>(i) / (steps - 1)));
    }
    if (!rates.empty() && r <= rates.back()) {
      return invalid_argument("steps " + std::to_string(steps) + ": too many for the range " + short_rate(from) +
                              " to " + short_rate(to) + " (rates rounded to 3 significant figures repeat)");
    }
    rates.push_back(r);
  }
  return rates;
}

// --- verdicts -------------------------------------------------------------------

std::uint32_t judge_step(const PlanStep& step, std::int64_t p99_target_ns) {
  std::uint32_t problems = kStepOk;
  if (!step.error.empty() || step.stalled) problems |= kStepRunFailed;
  if (step.lost > 0) problems |= kStepLostTasks;
  if (step.duplicates > 0 || step.malformed > 0) problems |= kStepBadAccounting;
  if (!(step.achieved_tps >= kKeptUpShare * step.offered_tps)) problems |= kStepFellBehind;
  // An empty histogram has no p99: nothing completed, which is no pass.
  if (step.round_trip.count == 0 || step.round_trip.p99 > p99_target_ns) problems |= kStepOverTarget;
  return problems;
}

std::string describe_problems(std::uint32_t problems) {
  if (problems == kStepOk) return "ok";
  static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
      {kStepRunFailed, "run failed"},
      {kStepLostTasks, "lost tasks"},
      {kStepBadAccounting, "duplicated or malformed tasks"},
      {kStepFellBehind, "fell behind"},
      {kStepOverTarget, "p99 over target"},
  };
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if ((problems & bit) != 0) out += (out.empty() ? "" : ", ") + std::string(name);
  }
  return out;
}

SweepAnswer find_sustainable(const WorkerSweep& sweep, std::int64_t p99_target_ns) {
  SweepAnswer answer;
  for (std::size_t i = 0; i < sweep.steps.size(); ++i) {
    if (judge_step(sweep.steps[i], p99_target_ns) == kStepOk) answer.sustainable = i;
  }
  for (std::size_t i = answer.sustainable ? *answer.sustainable + 1 : 0; i < sweep.steps.size(); ++i) {
    if (judge_step(sweep.steps[i], p99_target_ns) != kStepOk) {
      answer.broke = i;
      break;
    }
  }
  if (answer.sustainable) {
    for (std::size_t i = 0; i < *answer.sustainable; ++i) {
      if (judge_step(sweep.steps[i], p99_target_ns) != kStepOk) answer.failure_below = true;
    }
  }
  return answer;
}

LoadConfig step_config(const PlanSettings& settings, std::uint32_t workers, double rate) {
  LoadConfig c = settings.base;
  c.workers = workers;
  c.rate = rate;
  c.tasks = 0;
  return c;
}

// --- running --------------------------------------------------------------------

namespace {

PlanStep step_from(const RunResult& r, double offered) {
  PlanStep s;
  s.offered_tps = offered;
  s.achieved_tps = r.throughput_tps;
  s.completed = r.completed;
  s.lost = r.lost;
  s.duplicates = r.duplicates;
  s.malformed = r.malformed;
  s.stalled = r.stalled;
  if (!r.status.is_ok()) s.error = r.status.to_string();
  s.round_trip = summarize(r.round_trip);
  return s;
}

// Why a failing step failed, with the figures that show it.
std::string explain_step(const PlanStep& s, std::int64_t target_ns) {
  const std::uint32_t problems = judge_step(s, target_ns);
  if (problems == kStepOk) return "ok";
  std::string out;
  const auto add = [&](const std::string& part) { out += (out.empty() ? "" : "; ") + part; };
  if ((problems & kStepRunFailed) != 0) add("run failed: " + (s.error.empty() ? std::string("stalled") : s.error));
  if ((problems & kStepLostTasks) != 0) add(with_commas(s.lost) + " tasks lost");
  if ((problems & kStepBadAccounting) != 0) {
    add(with_commas(s.duplicates) + " duplicated, " + with_commas(s.malformed) + " malformed");
  }
  if ((problems & kStepFellBehind) != 0) {
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%", s.offered_tps > 0 ? 100.0 * s.achieved_tps / s.offered_tps : 0.0);
    add(std::string("fell behind (achieved ") + pct + " of offered)");
  }
  if ((problems & kStepOverTarget) != 0) {
    add(s.round_trip.count == 0 ? std::string("no task completed")
                                : "p99 over target (" + latency(s.round_trip.p99) + ")");
  }
  return out;
}

}  // namespace

PlanReport run_plan(const PlanSettings& settings) {
  PlanReport report;
  report.meta = run_meta();
  report.settings = settings;
  const std::size_t total = settings.workers.size() * settings.rates.size();
  std::size_t done = 0;
  for (const std::uint32_t workers : settings.workers) {
    WorkerSweep sweep;
    sweep.workers = workers;
    int failing_in_row = 0;
    for (std::size_t i = 0; i < settings.rates.size(); ++i) {
      const double rate = settings.rates[i];
      if (failing_in_row >= kFailuresToStop) {
        sweep.skipped_rates.push_back(rate);
        continue;
      }
      std::unique_ptr<System> system = make_taskring_system();  // one System object per run
      const RunResult result = run_load(*system, step_config(settings, workers, rate));
      sweep.steps.push_back(step_from(result, rate));
      const PlanStep& s = sweep.steps.back();
      const bool ok = judge_step(s, settings.p99_target_ns) == kStepOk;
      failing_in_row = ok ? 0 : failing_in_row + 1;
      ++done;
      std::fprintf(stderr, "plan [%zu/%zu] %s, offered %s/s: achieved %s/s, p99 %s, lost %s: %s\n", done, total,
                   workers_text(workers).c_str(), format_rate(rate).c_str(), format_rate(s.achieved_tps).c_str(),
                   s.round_trip.count ? latency(s.round_trip.p99).c_str() : "-", with_commas(s.lost).c_str(),
                   explain_step(s, settings.p99_target_ns).c_str());
    }
    if (!sweep.skipped_rates.empty()) {
      std::string skipped;
      for (double r : sweep.skipped_rates) skipped += (skipped.empty() ? "" : ", ") + format_rate(r);
      std::fprintf(stderr, "plan: %s: %d failing steps in a row; not running %s tasks/s\n",
                   workers_text(workers).c_str(), kFailuresToStop, skipped.c_str());
      done += sweep.skipped_rates.size();
    }
    report.sweeps.push_back(std::move(sweep));
  }
  return report;
}

// --- SVG --------------------------------------------------------------------------

namespace {

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// A latency in microseconds for a tick label: "0.5 µs", "20 µs", "2 ms", "1 s".
std::string tick_latency(double us) {
  char buf[32];
  if (us < 1e3) {
    std::snprintf(buf, sizeof buf, "%g \xC2\xB5s", us);
  } else if (us < 1e6) {
    std::snprintf(buf, sizeof buf, "%g ms", us / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%g s", us / 1e6);
  }
  return buf;
}

std::string json_string(const nlohmann::json& meta, const char* key) {
  if (!meta.is_object() || !meta.contains(key)) return "?";
  const nlohmann::json& v = meta[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// A step "nice" for an axis: 1, 2 or 5 times a power of ten, about range / 6.
double nice_step(double range) {
  const double rough = range / 6;
  const double magnitude = std::pow(10.0, std::floor(std::log10(rough)));
  const double f = rough / magnitude;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
}

struct Percentile {
  const char* name;   // in the legend and the data attribute
  std::int64_t LatencySummary::*field;
  const char* dash;   // stroke-dasharray, "" for solid
  double width;
};
constexpr Percentile kPercentiles[] = {
    {"p50", &LatencySummary::p50, "", 2.0},
    {"p90", &LatencySummary::p90, "10 5", 2.0},
    {"p99", &LatencySummary::p99, "8 4 2 4", 2.4},
    {"p99.9", &LatencySummary::p999, "1.5 3.5", 2.0},
};
constexpr const char* kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"};
constexpr const char* kTargetColour = "#d62728";

bool plotted(const PlanStep& s) { return s.round_trip.count > 0 && s.achieved_tps > 0; }

std::string settings_line(const PlanSettings& st) {
  const LoadConfig& b = st.base;
  return "open loop, " + std::to_string(b.producers) + (b.producers == 1 ? " producer" : " producers") + ", payload " +
         std::to_string(b.payload) + " B, batch " + std::to_string(b.batch) + ", handler " + b.handler.to_string() +
         ", " + seconds_text(b.duration_ns) + " per step" + (b.pin ? ", pinned" : "");
}

}  // namespace

std::string render_plan_svg(const PlanReport& report) {
  constexpr double kWidth = 980, kHeight = 600;
  constexpr double kLeft = 90, kRight = 750, kTop = 78, kBottom = 540;  // the plot area
  const std::int64_t target_ns = report.settings.p99_target_ns;

  // Ranges: x from 0 to the highest achieved throughput; y over every plotted
  // latency and the target, widened to whole decades.
  double x_max = 0;
  double y_lo = target_ns > 0 ? static_cast<double>(target_ns) / 1e3 : 1;
  double y_hi = y_lo;
  for (const WorkerSweep& sw : report.sweeps) {
    for (const PlanStep& s : sw.steps) {
      if (!plotted(s)) continue;
      x_max = std::max(x_max, s.achieved_tps);
      for (const Percentile& p : kPercentiles) {
        const double us = static_cast<double>(s.round_trip.*p.field) / 1e3;
        if (us <= 0) continue;
        y_lo = std::min(y_lo, us);
        y_hi = std::max(y_hi, us);
      }
    }
  }
  if (x_max <= 0) x_max = 1;
  const double x_step = nice_step(x_max * 1.05);
  const double x_top = std::ceil(x_max * 1.05 / x_step) * x_step;
  const int dec_lo = static_cast<int>(std::floor(std::log10(y_lo)));
  int dec_hi = static_cast<int>(std::ceil(std::log10(y_hi)));
  if (dec_hi <= dec_lo) dec_hi = dec_lo + 1;
  const auto px = [&](double tps) { return kLeft + (kRight - kLeft) * tps / x_top; };
  const auto py = [&](double us) {
    return kBottom - (kBottom - kTop) * (std::log10(us) - dec_lo) / static_cast<double>(dec_hi - dec_lo);
  };

  std::string o;
  o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fixed1(kWidth) + "\" height=\"" + fixed1(kHeight) +
       "\" viewBox=\"0 0 " + fixed1(kWidth) + " " + fixed1(kHeight) +
       "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + fixed1(kLeft) + "\" y=\"28\" font-size=\"17\" font-weight=\"bold\">" +
       "taskring capacity plan: round-trip latency against achieved throughput</text>\n";
  o += "<text x=\"" + fixed1(kLeft) + "\" y=\"48\" fill=\"#444\">" + xml_escape(settings_line(report.settings)) +
       "</text>\n";
  o += "<text x=\"" + fixed1(kLeft) + "\" y=\"64\" fill=\"#444\">" +
       xml_escape(json_string(report.meta, "cpu") + ", " + json_string(report.meta, "cores") + " cores, commit " +
                  json_string(report.meta, "commit") + ", " + json_string(report.meta, "date")) +
       "</text>\n";

  // Grid, ticks and tick labels.
  o += "<g class=\"axes\" stroke=\"#ddd\" stroke-width=\"1\">\n";
  for (double x = 0; x <= x_top + x_step / 2; x += x_step) {
    o += "<line x1=\"" + fixed1(px(x)) + "\" y1=\"" + fixed1(kTop) + "\" x2=\"" + fixed1(px(x)) + "\" y2=\"" +
         fixed1(kBottom) + "\"/>\n";
  }
  const bool minor_labels = dec_hi - dec_lo <= 3;
  for (int d = dec_lo; d <= dec_hi; ++d) {
    for (const double m : {1.0, 2.0, 5.0}) {
      const double us = m * std::pow(10.0, d);
      if (d == dec_hi && m > 1) break;
      o += "<line x1=\"" + fixed1(kLeft) + "\" y1=\"" + fixed1(py(us)) + "\" x2=\"" + fixed1(kRight) + "\" y2=\"" +
           fixed1(py(us)) + "\"" + (m == 1 ? " stroke=\"#bbb\"" : "") + "/>\n";
    }
  }
  o += "</g>\n<g class=\"tick-labels\" fill=\"#222\">\n";
  for (double x = 0; x <= x_top + x_step / 2; x += x_step) {
    o += "<text x=\"" + fixed1(px(x)) + "\" y=\"" + fixed1(kBottom + 18) + "\" text-anchor=\"middle\">" +
         (x == 0 ? std::string("0") : short_rate(x)) + "</text>\n";
  }
  for (int d = dec_lo; d <= dec_hi; ++d) {
    for (const double m : {1.0, 2.0, 5.0}) {
      if (d == dec_hi && m > 1) break;
      if (m > 1 && !minor_labels) continue;
      const double us = m * std::pow(10.0, d);
      o += "<text x=\"" + fixed1(kLeft - 8) + "\" y=\"" + fixed1(py(us) + 4) + "\" text-anchor=\"end\">" +
           tick_latency(us) + "</text>\n";
    }
  }
  o += "</g>\n";
  o += "<rect x=\"" + fixed1(kLeft) + "\" y=\"" + fixed1(kTop) + "\" width=\"" + fixed1(kRight - kLeft) +
       "\" height=\"" + fixed1(kBottom - kTop) + "\" fill=\"none\" stroke=\"#333\"/>\n";
  o += "<text x=\"" + fixed1((kLeft + kRight) / 2) + "\" y=\"" + fixed1(kBottom + 42) +
       "\" text-anchor=\"middle\" font-size=\"13\">achieved throughput (tasks/s)</text>\n";
  o += "<text transform=\"translate(22 " + fixed1((kTop + kBottom) / 2) +
       ") rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">round-trip latency (\xC2\xB5s, log scale)</text>\n";

  // The target.
  if (target_ns > 0) {
    const double y = py(static_cast<double>(target_ns) / 1e3);
    o += "<line class=\"target\" x1=\"" + fixed1(kLeft) + "\" y1=\"" + fixed1(y) + "\" x2=\"" + fixed1(kRight) +
         "\" y2=\"" + fixed1(y) + "\" stroke=\"" + kTargetColour +
         "\" stroke-width=\"1.5\" stroke-dasharray=\"8 5\"/>\n";
    o += "<text x=\"" + fixed1(kLeft + 6) + "\" y=\"" + fixed1(y - 5) + "\" fill=\"" + kTargetColour +
         "\">p99 target " + xml_escape(latency(target_ns)) + "</text>\n";
  }

  // The series: one polyline per percentile per worker count, in the order
  // the rates were offered; markers on every point, a ring at the p99 point
  // of the sustainable rate.
  for (std::size_t wi = 0; wi < report.sweeps.size(); ++wi) {
    const WorkerSweep& sw = report.sweeps[wi];
    const char* colour = kColours[wi % std::size(kColours)];
    const SweepAnswer answer = find_sustainable(sw, target_ns);
    o += "<g class=\"sweep\" data-workers=\"" + std::to_string(sw.workers) + "\">\n";
    for (const Percentile& p : kPercentiles) {
      std::string points;
      std::string markers;
      for (std::size_t i = 0; i < sw.steps.size(); ++i) {
        const PlanStep& s = sw.steps[i];
        const double us = static_cast<double>(s.round_trip.*p.field) / 1e3;
        if (!plotted(s) || us <= 0) continue;
        const std::string x = fixed1(px(s.achieved_tps)), y = fixed1(py(us));
        points += (points.empty() ? "" : " ") + x + "," + y;
        markers += "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"2.5\" fill=\"" + colour + "\"><title>" +
                   xml_escape(workers_text(sw.workers) + ", offered " + format_rate(s.offered_tps) + "/s: achieved " +
                              format_rate(s.achieved_tps) + "/s, " + p.name + " " +
                              latency(s.round_trip.*p.field)) +
                   "</title></circle>\n";
        if (p.field == &LatencySummary::p99 && answer.sustainable == i) {
          markers += "<circle class=\"sustainable\" cx=\"" + x + "\" cy=\"" + y + "\" r=\"7\" fill=\"none\" stroke=\"" +
                     colour + "\" stroke-width=\"2\"/>\n";
        }
      }
      o += "<polyline class=\"series\" data-workers=\"" + std::to_string(sw.workers) + "\" data-percentile=\"" +
           p.name + "\" points=\"" + points + "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"" +
           fixed1(p.width) + "\" stroke-linejoin=\"round\" stroke-linecap=\"round\"" +
           (*p.dash ? std::string(" stroke-dasharray=\"") + p.dash + "\"" : std::string()) + "/>\n";
      o += markers;
    }
    o += "</g>\n";
  }

  // The legend: colours are worker counts, line styles are percentiles.
  double ly = kTop + 6;
  const double lx = kRight + 24;
  o += "<g class=\"legend\">\n";
  o += "<text x=\"" + fixed1(lx) + "\" y=\"" + fixed1(ly) + "\" font-weight=\"bold\">colour: workers</text>\n";
  for (std::size_t wi = 0; wi < report.sweeps.size(); ++wi) {
    ly += 20;
    o += "<line x1=\"" + fixed1(lx) + "\" y1=\"" + fixed1(ly - 4) + "\" x2=\"" + fixed1(lx + 34) + "\" y2=\"" +
         fixed1(ly - 4) + "\" stroke=\"" + kColours[wi % std::size(kColours)] + "\" stroke-width=\"3\"/>\n";
    o += "<text x=\"" + fixed1(lx + 42) + "\" y=\"" + fixed1(ly) + "\">" +
         workers_text(report.sweeps[wi].workers) + "</text>\n";
  }
  ly += 32;
  o += "<text x=\"" + fixed1(lx) + "\" y=\"" + fixed1(ly) + "\" font-weight=\"bold\">line: percentile</text>\n";
  for (const Percentile& p : kPercentiles) {
    ly += 20;
    o += "<line x1=\"" + fixed1(lx) + "\" y1=\"" + fixed1(ly - 4) + "\" x2=\"" + fixed1(lx + 34) + "\" y2=\"" +
         fixed1(ly - 4) + "\" stroke=\"#333\" stroke-width=\"" + fixed1(p.width) + "\" stroke-linecap=\"round\"" +
         (*p.dash ? std::string(" stroke-dasharray=\"") + p.dash + "\"" : std::string()) + "/>\n";
    o += "<text x=\"" + fixed1(lx + 42) + "\" y=\"" + fixed1(ly) + "\">" + p.name + "</text>\n";
  }
  ly += 32;
  o += "<line x1=\"" + fixed1(lx) + "\" y1=\"" + fixed1(ly - 4) + "\" x2=\"" + fixed1(lx + 34) + "\" y2=\"" +
       fixed1(ly - 4) + "\" stroke=\"" + kTargetColour + "\" stroke-width=\"1.5\" stroke-dasharray=\"8 5\"/>\n";
  o += "<text x=\"" + fixed1(lx + 42) + "\" y=\"" + fixed1(ly) + "\">p99 target</text>\n";
  ly += 22;
  o += "<circle cx=\"" + fixed1(lx + 17) + "\" cy=\"" + fixed1(ly - 4) +
       "\" r=\"7\" fill=\"none\" stroke=\"#333\" stroke-width=\"2\"/>\n";
  o += "<text x=\"" + fixed1(lx + 42) + "\" y=\"" + fixed1(ly) + "\">sustainable rate</text>\n";
  ly += 30;
  o += "<text x=\"" + fixed1(lx) + "\" y=\"" + fixed1(ly) + "\" fill=\"#444\">One point per offered rate;</text>\n";
  o += "<text x=\"" + fixed1(lx) + "\" y=\"" + fixed1(ly + 16) +
       "\" fill=\"#444\">latency from when each task</text>\n";
  o += "<text x=\"" + fixed1(lx) + "\" y=\"" + fixed1(ly + 32) + "\" fill=\"#444\">was due (open loop).</text>\n";
  o += "</g>\n</svg>\n";
  return o;
}

// --- Markdown --------------------------------------------------------------------

namespace {

std::string md_cell(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      out += ' ';
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string rate_list_text(const std::vector<double>& rates) {
  std::string out;
  for (double r : rates) out += (out.empty() ? "" : ", ") + format_rate(r);
  return out;
}

std::string percent(double part, double whole) {
  if (!(whole > 0)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * part / whole);
  return buf;
}

std::string answer_text(const WorkerSweep& sw, std::int64_t target_ns) {
  const SweepAnswer a = find_sustainable(sw, target_ns);
  const std::string who = "With " + workers_text(sw.workers) + ", ";
  std::string out;
  if (a.sustainable) {
    const PlanStep& s = sw.steps[*a.sustainable];
    out = who + "taskring sustains **" + format_rate(s.offered_tps) + " tasks/s** with p99 <= " + latency(target_ns) +
          " (p99 there: " + latency(s.round_trip.p99) + ", achieved " + format_rate(s.achieved_tps) + " tasks/s).";
  } else if (sw.steps.empty()) {
    return who + "no step ran.";
  } else {
    out = who + "no offered rate met the target; lower the rates or raise --p99-target.";
  }
  if (a.broke) {
    const PlanStep& b = sw.steps[*a.broke];
    out += " At " + format_rate(b.offered_tps) + " tasks/s it " + (a.sustainable ? "broke" : "failed") + ": " +
           explain_step(b, target_ns) + ".";
  } else if (a.sustainable) {
    out += " It did not break within the rates tried: add higher rates to find its limit.";
  }
  if (a.failure_below) {
    out += " Note: a lower rate failed although this one passed, so the figures are noisy; repeat with a longer "
           "--duration on a quieter machine.";
  }
  return out;
}

}  // namespace

std::string render_plan_markdown(const PlanReport& report, std::string_view svg_file_name) {
  const PlanSettings& st = report.settings;
  const LoadConfig& b = st.base;
  const nlohmann::json& m = report.meta;
  std::string o;
  o += "# taskring capacity plan\n\n";
  o += "Measured " + json_string(m, "date") + " on " + md_cell(json_string(m, "cpu")) + " (" +
       json_string(m, "cores") + " cores, kernel " + json_string(m, "kernel") + "), commit `" +
       json_string(m, "commit") + "`, " + md_cell(json_string(m, "compiler")) + ", " + json_string(m, "build_type") +
       " build.\n\n";

  o += "## Configuration\n\n| setting | value |\n|---|---|\n";
  o += "| system | taskring, open loop (latency counted from when each task was due) |\n";
  o += "| producers | " + std::to_string(b.producers) + " |\n";
  std::string workers;
  for (std::uint32_t w : st.workers) workers += (workers.empty() ? "" : ", ") + std::to_string(w);
  o += "| worker counts | " + workers + " |\n";
  o += "| offered rates (tasks/s) | " + rate_list_text(st.rates) + " |\n";
  o += "| duration per step | " + seconds_text(b.duration_ns) + " |\n";
  o += "| payload | " + std::to_string(b.payload) + " bytes |\n";
  o += "| batch | " + std::to_string(b.batch) + (b.batch == 1 ? " (the one-task API)" : "") + " |\n";
  o += "| handler | " + b.handler.to_string() + " |\n";
  o += std::string("| pinned to CPUs | ") + (b.pin ? "yes" : "no") + " |\n";
  o += "| worker spin rounds, claim batch | " + std::to_string(b.spin_rounds) + ", " + std::to_string(b.claim_batch) +
       " |\n";
  o += "| p99 target | " + latency(st.p99_target_ns) + " |\n";
  char share[16];
  std::snprintf(share, sizeof share, "%.0f%%", kKeptUpShare * 100);
  o += std::string("| a step passes when | p99 round trip <= target, achieved >= ") + share +
       " of offered, no lost, duplicated or malformed tasks, the run succeeded |\n\n";

  for (const WorkerSweep& sw : report.sweeps) {
    o += "## " + workers_text(sw.workers) + "\n\n";
    o += "| offered (tasks/s) | achieved (tasks/s) | achieved/offered | p50 | p90 | p99 | p99.9 | lost | verdict |\n";
    o += "|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for (const PlanStep& s : sw.steps) {
      const bool has = s.round_trip.count > 0;
      o += "| " + format_rate(s.offered_tps) + " | " + format_rate(s.achieved_tps) + " | " +
           percent(s.achieved_tps, s.offered_tps) + " | " + (has ? latency(s.round_trip.p50) : "-") + " | " +
           (has ? latency(s.round_trip.p90) : "-") + " | " + (has ? latency(s.round_trip.p99) : "-") + " | " +
           (has ? latency(s.round_trip.p999) : "-") + " | " + with_commas(s.lost) + " | " +
           md_cell(explain_step(s, st.p99_target_ns)) + " |\n";
    }
    if (!sw.skipped_rates.empty()) {
      o += "\nThe sweep stopped after " + std::to_string(kFailuresToStop) +
           " failing steps in a row; not run: " + rate_list_text(sw.skipped_rates) + " tasks/s.\n";
    }
    o += "\n";
  }

  o += "## Answer\n\n";
  for (const WorkerSweep& sw : report.sweeps) o += "- " + answer_text(sw, st.p99_target_ns) + "\n";
  o += "\n## Plot\n\n";
  o += "![Round-trip latency percentiles (p50, p90, p99, p99.9) against achieved throughput](" +
       std::string(svg_file_name) + ")\n\n";
  o += "## How to read this\n\n";
  o += "Each row is one open-loop run at a fixed offered rate. A rate is sustainable when the p99 round trip "
       "stays within the target and the achieved throughput keeps up with the offered rate. Where p99 climbs "
       "steeply while the achieved throughput stops growing, the system is saturated: that knee is the "
       "capacity, and a deployment should plan well below it (for example 70% of the sustainable rate). "
       "`docs/capacity-planning.md` in the taskring repository explains the method, the plot and how to "
       "choose the target and the rates.\n";
  return o;
}

nlohmann::json plan_json(const PlanReport& report) {
  const PlanSettings& st = report.settings;
  nlohmann::json settings = config_json(st.base);
  settings.erase("workers");
  settings.erase("rate");
  settings["worker_counts"] = st.workers;
  settings["rates"] = st.rates;
  settings["p99_target_ns"] = st.p99_target_ns;
  settings["kept_up_share"] = kKeptUpShare;
  nlohmann::json sweeps = nlohmann::json::array();
  for (const WorkerSweep& sw : report.sweeps) {
    nlohmann::json steps = nlohmann::json::array();
    for (const PlanStep& s : sw.steps) {
      steps.push_back({{"offered_tps", s.offered_tps},
                       {"achieved_tps", s.achieved_tps},
                       {"completed", s.completed},
                       {"lost", s.lost},
                       {"duplicates", s.duplicates},
                       {"malformed", s.malformed},
                       {"stalled", s.stalled},
                       {"error", s.error},
                       {"round_trip_ns",
                        {{"count", s.round_trip.count},
                         {"p50", s.round_trip.p50},
                         {"p90", s.round_trip.p90},
                         {"p99", s.round_trip.p99},
                         {"p999", s.round_trip.p999},
                         {"max", s.round_trip.max}}},
                       {"verdict", describe_problems(judge_step(s, st.p99_target_ns))}});
    }
    const SweepAnswer a = find_sustainable(sw, st.p99_target_ns);
    nlohmann::json j = {{"workers", sw.workers}, {"steps", steps}, {"skipped_rates", sw.skipped_rates}};
    j["sustainable_tps"] = a.sustainable ? nlohmann::json(sw.steps[*a.sustainable].offered_tps) : nlohmann::json();
    j["broke_at_tps"] = a.broke ? nlohmann::json(sw.steps[*a.broke].offered_tps) : nlohmann::json();
    j["broke_because"] = a.broke ? nlohmann::json(describe_problems(judge_step(sw.steps[*a.broke], st.p99_target_ns)))
                                 : nlohmann::json();
    j["failure_below_sustainable"] = a.failure_below;
    sweeps.push_back(std::move(j));
  }
  return {{"meta", report.meta}, {"plan", {{"settings", settings}, {"sweeps", sweeps}}}};
}

// --- the command -------------------------------------------------------------------

namespace {

struct PlanCommand {
  PlanSettings settings;
  bool rates_given = false;
  double rate_from = 0;
  double rate_to = 0;
  std::uint32_t steps = 8;
  std::string out = "taskring-plan.md";
  std::string json_path;
};

// The directory `path` would be written to, for the up-front check.
std::string directory_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Status check_writable(const std::string& path, std::string_view flag) {
  const std::string dir = directory_of(path);
  if (access(dir.c_str(), W_OK) != 0) {
    return failed_precondition(std::string(flag) + " " + in_quotes(path) + ": cannot write into directory " +
                               in_quotes(dir) + ": " + std::strerror(errno));
  }
  return Status::ok();
}

Status write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
  out.close();
  if (!out) return internal_error("could not write " + in_quotes(path) + ": " + std::strerror(errno));
  return Status::ok();
}

int run_plan_command(PlanCommand& c) {
  PlanSettings& st = c.settings;
  if (!c.rates_given) {
    if (c.rate_from == 0 || c.rate_to == 0) {
      cli::print_error("plan", "no rates given",
                       "give --rates LIST (e.g. 20k,50k,100k) or --rate-from R --rate-to R [--steps N]");
      return cli::kExitUsage;
    }
    Result<std::vector<double>> rates = geometric_rates(c.rate_from, c.rate_to, c.steps);
    if (!rates) return cli::report(rates.status(), "plan");
    st.rates = std::move(*rates);
  }
  // Every step's configuration is checked before anything runs.
  for (const std::uint32_t w : st.workers) {
    for (const double r : st.rates) {
      const Status valid = step_config(st, w, r).validate();
      if (!valid.is_ok()) {
        return cli::report(valid, "plan step with " + workers_text(w) + " at " + short_rate(r) + " tasks/s",
                           "run 'taskring-bench plan --help' for the flags");
      }
    }
  }
  const std::string svg_path = c.out.substr(0, c.out.size() - 3) + ".svg";
  for (const auto& [path, flag] : {std::pair{c.out, "--out"}, std::pair{c.json_path, "--json"}}) {
    if (path.empty()) continue;
    if (const Status s = check_writable(path, flag); !s.is_ok()) return cli::report(s, {});
  }

  const PlanReport report = run_plan(st);

  int exit_status = cli::kExitOk;
  for (const WorkerSweep& sw : report.sweeps) {
    std::printf("%s:\n", workers_text(sw.workers).c_str());
    cli::Table table({"offered/s", "achieved/s", "p50", "p90", "p99", "p99.9", "lost", "verdict"}, "rrrrrrrl");
    for (const PlanStep& s : sw.steps) {
      const std::uint32_t problems = judge_step(s, st.p99_target_ns);
      const bool has = s.round_trip.count > 0;
      table.add({format_rate(s.offered_tps), format_rate(s.achieved_tps), has ? latency(s.round_trip.p50) : "-",
                 has ? latency(s.round_trip.p90) : "-", has ? latency(s.round_trip.p99) : "-",
                 has ? latency(s.round_trip.p999) : "-", with_commas(s.lost), describe_problems(problems)});
      if ((problems & (kStepRunFailed | kStepLostTasks | kStepBadAccounting)) != 0) {
        cli::print_error("plan", workers_text(sw.workers) + " at " + format_rate(s.offered_tps) +
                                     " tasks/s: " + explain_step(s, st.p99_target_ns));
        exit_status = cli::kExitFailure;
      }
    }
    std::fputs(table.render().c_str(), stdout);
    std::printf("%s\n\n", answer_text(sw, st.p99_target_ns).c_str());
  }

  const Status wrote_svg = write_file(svg_path, render_plan_svg(report));
  if (!wrote_svg.is_ok()) return cli::report(wrote_svg, "--out");
  const Status wrote_md = write_file(c.out, render_plan_markdown(report, base_name(svg_path)));
  if (!wrote_md.is_ok()) return cli::report(wrote_md, "--out");
  std::printf("wrote %s and %s\n", c.out.c_str(), svg_path.c_str());
  if (!c.json_path.empty()) {
    const Status wrote_json = write_file(c.json_path, plan_json(report).dump(2) + "\n");
    if (!wrote_json.is_ok()) return cli::report(wrote_json, "--json");
    std::printf("wrote %s\n", c.json_path.c_str());
  }
  std::fflush(stdout);
  return exit_status;
}


}  // namespace

void add_plan_command(CLI::App& app, cli::Action& action) {
  auto c = std::make_shared<PlanCommand>();
  PlanSettings& st = c->settings;
  st.base.duration_ns = 2'000'000'000;
  st.workers = {1};
  CLI::App* sub = app.add_subcommand(
      "plan", "Capacity planning: sweep the offered rate over taskring in open loop and find the highest rate "
              "each worker count sustains within a p99 target; writes Markdown and SVG");

  CLI::Option* rates = cli::add_parsed_option(
      sub, "--rates", "--rates",
      [c](std::string_view text) -> Status {
        Result<std::vector<double>> v = parse_rate_list(text);
        if (!v) return v.status();
        c->settings.rates = std::move(*v);
        c->rates_given = true;
        return Status::ok();
      },
      "Offered rates to run, tasks/s, increasing (k and M suffixes), e.g. 50k,100k,200k", "RATE,...");
  CLI::Option* from = add_value_option(sub, "--rate-from", "--rate-from", c->rate_from, parse_rate,
                                       "Lowest offered rate of a geometric sweep (with --rate-to)", "RATE");
  CLI::Option* to = add_value_option(sub, "--rate-to", "--rate-to", c->rate_to, parse_rate,
                                     "Highest offered rate of a geometric sweep (with --rate-from)", "RATE");
  CLI::Option* steps = cli::add_unsigned_option(sub, "--steps", c->steps, 2, kMaxSteps,
                                                "Rates in the geometric sweep, ends included");
  rates->excludes(from)->excludes(to)->excludes(steps);
  from->needs(to);
  to->needs(from);
  steps->needs(from);
  add_value_option(sub, "--workers", "--workers", st.workers, parse_worker_list,
                   "Worker counts to sweep, each its own series, e.g. 1,2", "N,...", "1");
  cli::add_unsigned_option(sub, "--producers", st.base.producers, 1, kMaxWorkers, "Producer processes");
  add_value_option(sub, "--duration", "--duration", st.base.duration_ns, parse_positive_seconds,
                   "Seconds each step offers load", "SECONDS", "2");
  add_workload_options(sub, st.base);
  add_value_option(sub, "--p99-target", "--p99-target", st.p99_target_ns, parse_duration,
                   "The p99 round-trip latency a sustainable rate must meet, e.g. 500us, 2ms, 1s", "DURATION")
      ->required();
  cli::add_parsed_option(
      sub, "--out", "--out",
      [c](std::string_view text) -> Status {
        if (text.size() <= 3 || !text.ends_with(".md") || text.ends_with("/.md")) {
          return invalid_argument(in_quotes(text) + ": must be a file name ending in .md (the plot goes beside it, "
                                                 "ending in .svg)");
        }
        c->out = std::string(text);
        return Status::ok();
      },
      "Markdown report to write; the SVG plot goes beside it as PATH.svg", "PATH.md", "taskring-plan.md");
  sub->add_option("--json", c->json_path, "Also write the results as JSON to FILE")->type_name("FILE");
  sub->callback([&action, c] { action = [c] { return run_plan_command(*c); }; });
}

}  // namespace taskring::bench
