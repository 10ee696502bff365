// The pure parts of `taskring-bench plan`: its flag parsers, the verdict on
// each step and the sustainable rate of a sweep, and the SVG and Markdown
// renderers, all on synthetic reports (no load is run).
#include "plan.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <regex>
#include <string>
#include <vector>

namespace taskring::bench {
namespace {

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

// --- parse_duration ----------------------------------------------------------

TEST(PlanParseTest, DurationRejectsABareNumber) {
  Result<std::int64_t> d = parse_duration("5");
  ASSERT_FALSE(d.is_ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  // Names the value and what is accepted.
  EXPECT_NE(d.status().message().find("'5'"), std::string::npos) << d.status().message();
  EXPECT_NE(d.status().message().find("ns, us, ms or s"), std::string::npos) << d.status().message();
}

TEST(PlanParseTest, DurationRejectsMalformedText) {
  for (const char* text : {"", "ms", "2 ms", " 2ms", "-1ms", "+1ms", "1e3us", "1.2.3ms", ".ms", "2h", "2MS", "2Ms",
                           "2m", "infs", "nans", "2ms ", "0x10ms", "2msec"}) {
    EXPECT_FALSE(parse_duration(text).is_ok()) << "'" << text << "'";
  }
}

TEST(PlanParseTest, DurationRejectsZeroAndOutOfRange) {
  EXPECT_FALSE(parse_duration("0s").is_ok());
  EXPECT_FALSE(parse_duration("0us").is_ok());
  EXPECT_FALSE(parse_duration("0.4ns").is_ok());
  EXPECT_FALSE(parse_duration("3601s").is_ok());
  EXPECT_FALSE(parse_duration("99999999999999999999s").is_ok());
}

TEST(PlanParseTest, DurationAcceptsEachUnit) {
  EXPECT_EQ(*parse_duration("250ns"), 250);
  EXPECT_EQ(*parse_duration("500us"), 500'000);
  EXPECT_EQ(*parse_duration("500\xC2\xB5s"), 500'000);  // µs
  EXPECT_EQ(*parse_duration("2ms"), 2'000'000);
  EXPECT_EQ(*parse_duration("1s"), 1'000'000'000);
  EXPECT_EQ(*parse_duration("1.5ms"), 1'500'000);
  EXPECT_EQ(*parse_duration("0.25s"), 250'000'000);
  EXPECT_EQ(*parse_duration("3600s"), 3'600'000'000'000);
}

// --- parse_rate_list, parse_worker_list ------------------------------------------

TEST(PlanParseTest, RateListRejectsEmptyEntries) {
  for (const char* text : {"", ",", "50k,", ",50k", "50k,,100k"}) {
    EXPECT_FALSE(parse_rate_list(text).is_ok()) << "'" << text << "'";
  }
  Result<std::vector<double>> r = parse_rate_list("50k,,100k");
  EXPECT_NE(r.status().message().find("entry 2 is empty"), std::string::npos) << r.status().message();
}

TEST(PlanParseTest, RateListRejectsBadRates) {
  for (const char* text : {"0", "-5k", "50x", "50m", "1e5", "50k,abc", "2G", "1.5.1k", "2000M"}) {
    EXPECT_FALSE(parse_rate_list(text).is_ok()) << "'" << text << "'";
  }
}

TEST(PlanParseTest, RateListMustIncreaseStrictly) {
  Result<std::vector<double>> down = parse_rate_list("100k,50k");
  ASSERT_FALSE(down.is_ok());
  EXPECT_NE(down.status().message().find("strictly increasing"), std::string::npos) << down.status().message();
  EXPECT_FALSE(parse_rate_list("50k,50000").is_ok());  // equal values, spelt differently
}

TEST(PlanParseTest, RateListAcceptsSuffixes) {
  Result<std::vector<double>> r = parse_rate_list("500,50k,100K,1.5M");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(*r, (std::vector<double>{500, 50'000, 100'000, 1'500'000}));
}

TEST(PlanParseTest, WorkerListRejectsBadCounts) {
  for (const char* text : {"", "0", "65", "1,", "1,,2", "a", "1,1", "-1", "2,1,2"}) {
    EXPECT_FALSE(parse_worker_list(text).is_ok()) << "'" << text << "'";
  }
}

TEST(PlanParseTest, WorkerListKeepsTheGivenOrder) {
  Result<std::vector<std::uint32_t>> w = parse_worker_list("1,4,2");
  ASSERT_TRUE(w.is_ok()) << w.status().message();
  EXPECT_EQ(*w, (std::vector<std::uint32_t>{1, 4, 2}));
}

// --- geometric_rates ------------------------------------------------------------

TEST(PlanParseTest, GeometricRatesRejectBadRanges) {
  EXPECT_FALSE(geometric_rates(0, 1000, 3).is_ok());
  EXPECT_FALSE(geometric_rates(2000, 1000, 3).is_ok());
  EXPECT_FALSE(geometric_rates(1000, 1000, 3).is_ok());
  EXPECT_FALSE(geometric_rates(1000, 2000, 1).is_ok());
  EXPECT_FALSE(geometric_rates(1000, 2000, 101).is_ok());
  // Rounded to 3 significant figures, 50 steps between 1000 and 1010 repeat.
  EXPECT_FALSE(geometric_rates(1000, 1010, 50).is_ok());
}

TEST(PlanParseTest, GeometricRatesStepByAConstantFactor) {
  Result<std::vector<double>> r = geometric_rates(1000, 8000, 4);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(*r, (std::vector<double>{1000, 2000, 4000, 8000}));
  Result<std::vector<double>> decades = geometric_rates(1000, 100'000, 3);
  ASSERT_TRUE(decades.is_ok());
  EXPECT_EQ(*decades, (std::vector<double>{1000, 10'000, 100'000}));
}

TEST(PlanParseTest, GeometricRatesKeepTheEndsExact) {
  Result<std::vector<double>> r = geometric_rates(12'345, 54'321, 3);
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ(r->front(), 12'345);
  EXPECT_EQ(r->back(), 54'321);
  EXPECT_EQ((*r)[1], 25'900);  // sqrt(12345 * 54321) = 25895.7, to 3 significant figures
}

// --- verdicts -------------------------------------------------------------------

constexpr std::int64_t kTarget = 1'000'000;  // 1 ms

PlanStep passing_step(double rate) {
  PlanStep s;
  s.offered_tps = rate;
  s.achieved_tps = rate;
  s.completed = static_cast<std::uint64_t>(rate);
  s.round_trip = {.count = s.completed, .p50 = 20'000, .p90 = 50'000, .p99 = 200'000, .p999 = 400'000, .max = 900'000};
  return s;
}

TEST(PlanVerdictTest, PassingStepIsOk) {
  EXPECT_EQ(judge_step(passing_step(1000), kTarget), kStepOk);
  EXPECT_EQ(describe_problems(kStepOk), "ok");
}

TEST(PlanVerdictTest, P99AboveTargetFails) {
  PlanStep s = passing_step(1000);
  s.round_trip.p99 = kTarget;  // at the target: still ok
  EXPECT_EQ(judge_step(s, kTarget), kStepOk);
  s.round_trip.p99 = kTarget + 1;
  EXPECT_EQ(judge_step(s, kTarget), kStepOverTarget);
  EXPECT_EQ(describe_problems(kStepOverTarget), "p99 over target");
}

TEST(PlanVerdictTest, AchievingLessThan95PercentFallsBehind) {
  PlanStep s = passing_step(100'000);
  s.achieved_tps = 95'000;
  EXPECT_EQ(judge_step(s, kTarget), kStepOk);
  s.achieved_tps = 94'999;
  EXPECT_EQ(judge_step(s, kTarget), kStepFellBehind);
}

TEST(PlanVerdictTest, LossAccountingAndRunFailuresFail) {
  PlanStep lost = passing_step(1000);
  lost.lost = 1;
  EXPECT_EQ(judge_step(lost, kTarget), kStepLostTasks);
  PlanStep dup = passing_step(1000);
  dup.duplicates = 1;
  EXPECT_EQ(judge_step(dup, kTarget), kStepBadAccounting);
  PlanStep malformed = passing_step(1000);
  malformed.malformed = 1;
  EXPECT_EQ(judge_step(malformed, kTarget), kStepBadAccounting);
  PlanStep failed = passing_step(1000);
  failed.error = "internal: worker died";
  EXPECT_EQ(judge_step(failed, kTarget), kStepRunFailed);
  PlanStep stalled = passing_step(1000);
  stalled.stalled = true;
  EXPECT_EQ(judge_step(stalled, kTarget), kStepRunFailed);
}

TEST(PlanVerdictTest, NothingCompletedIsNoPass) {
  PlanStep s;
  s.offered_tps = 1000;
  EXPECT_NE(judge_step(s, kTarget) & kStepOverTarget, 0u);
  EXPECT_NE(judge_step(s, kTarget) & kStepFellBehind, 0u);
}

TEST(PlanVerdictTest, ProblemsAreAllNamed) {
  EXPECT_EQ(describe_problems(kStepFellBehind | kStepOverTarget), "fell behind, p99 over target");
  EXPECT_EQ(describe_problems(kStepRunFailed | kStepLostTasks), "run failed, lost tasks");
}

WorkerSweep sweep_of(std::uint32_t workers, const std::vector<PlanStep>& steps) {
  WorkerSweep w;
  w.workers = workers;
  w.steps = steps;
  return w;
}

PlanStep over_target(double rate) {
  PlanStep s = passing_step(rate);
  s.round_trip.p99 = 3 * kTarget;
  s.round_trip.p999 = 5 * kTarget;
  s.round_trip.max = 9 * kTarget;
  return s;
}

PlanStep behind(double rate) {
  PlanStep s = passing_step(rate);
  s.achieved_tps = rate * 0.6;
  return s;
}

TEST(PlanVerdictTest, SustainableIsTheHighestPassingRate) {
  const WorkerSweep sw =
      sweep_of(1, {passing_step(10'000), passing_step(20'000), over_target(40'000), behind(80'000)});
  const SweepAnswer a = find_sustainable(sw, kTarget);
  ASSERT_TRUE(a.sustainable.has_value());
  EXPECT_EQ(*a.sustainable, 1u);
  ASSERT_TRUE(a.broke.has_value());
  EXPECT_EQ(*a.broke, 2u);
  EXPECT_FALSE(a.failure_below);
}

TEST(PlanVerdictTest, NoPassingRateHasNoSustainableRate) {
  const SweepAnswer a = find_sustainable(sweep_of(1, {over_target(10'000), behind(20'000)}), kTarget);
  EXPECT_FALSE(a.sustainable.has_value());
  ASSERT_TRUE(a.broke.has_value());
  EXPECT_EQ(*a.broke, 0u);
}

TEST(PlanVerdictTest, AllPassingNeverBroke) {
  const SweepAnswer a = find_sustainable(sweep_of(2, {passing_step(10'000), passing_step(20'000)}), kTarget);
  ASSERT_TRUE(a.sustainable.has_value());
  EXPECT_EQ(*a.sustainable, 1u);
  EXPECT_FALSE(a.broke.has_value());
}

TEST(PlanVerdictTest, AFailureBelowAPassIsFlaggedAsNoise) {
  const SweepAnswer a = find_sustainable(
      sweep_of(1, {passing_step(10'000), over_target(20'000), passing_step(40'000), behind(80'000)}), kTarget);
  ASSERT_TRUE(a.sustainable.has_value());
  EXPECT_EQ(*a.sustainable, 2u);
  ASSERT_TRUE(a.broke.has_value());
  EXPECT_EQ(*a.broke, 3u);
  EXPECT_TRUE(a.failure_below);
}

TEST(PlanVerdictTest, StepConfigIsAnOpenLoopDurationRun) {
  PlanSettings st;
  st.base.tasks = 500;  // a stray count must not survive into a duration run
  st.base.duration_ns = 2'000'000'000;
  st.base.payload = 64;
  const LoadConfig c = step_config(st, 3, 25'000);
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(c.rate, 25'000);
  EXPECT_EQ(c.tasks, 0u);
  EXPECT_EQ(c.duration_ns, 2'000'000'000);
  EXPECT_EQ(c.payload, 64u);
  EXPECT_TRUE(c.validate().is_ok()) << c.validate().message();
}

// --- rendering -------------------------------------------------------------------

PlanReport synthetic_report() {
  PlanReport r;
  r.meta = {{"commit", "abc123"}, {"cpu", "Test CPU <x>"}, {"cores", 2},       {"compiler", "g++ 12"},
            {"build_type", "Release"}, {"kernel", "6.1"},   {"date", "2026-01-01T00:00:00Z"}};
  r.settings.base.duration_ns = 2'000'000'000;
  r.settings.rates = {10'000, 20'000, 40'000, 80'000};
  r.settings.workers = {1, 2};
  r.settings.p99_target_ns = kTarget;
  r.sweeps.push_back(sweep_of(1, {passing_step(10'000), passing_step(20'000), over_target(40'000), behind(80'000)}));
  WorkerSweep two = sweep_of(2, {passing_step(10'000), over_target(20'000), over_target(40'000)});
  two.skipped_rates = {80'000};
  r.sweeps.push_back(two);
  return r;
}

TEST(PlanRenderTest, SvgIsAStandaloneDocument) {
  const std::string svg = render_plan_svg(synthetic_report());
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // Text from the meta is escaped.
  EXPECT_EQ(svg.find("<x>"), std::string::npos);
  EXPECT_NE(svg.find("Test CPU &lt;x&gt;"), std::string::npos);
}

TEST(PlanRenderTest, SvgHasOnePolylinePerPercentilePerWorkerCount) {
  const std::string svg = render_plan_svg(synthetic_report());
  EXPECT_EQ(count_of(svg, "<polyline"), 8u);
  for (const char* workers : {"1", "2"}) {
    for (const char* p : {"p50", "p90", "p99", "p99.9"}) {
      const std::string tag = std::string("data-workers=\"") + workers + "\" data-percentile=\"" + p + "\"";
      EXPECT_EQ(count_of(svg, tag), 1u) << tag;
    }
  }
}

TEST(PlanRenderTest, SvgPolylinesHaveOnePointPerCompletedStep) {
  PlanReport r = synthetic_report();
  r.sweeps[1].steps[2].round_trip = {};  // nothing completed: no point to plot
  const std::string svg = render_plan_svg(r);
  const std::regex series("data-workers=\"(\\d)\" data-percentile=\"p99\" points=\"([^\"]*)\"");
  std::vector<std::size_t> points;
  for (std::sregex_iterator it(svg.begin(), svg.end(), series), end; it != end; ++it) {
    points.push_back(count_of((*it)[2].str(), ","));
  }
  EXPECT_EQ(points, (std::vector<std::size_t>{4, 2}));
}

TEST(PlanRenderTest, SvgDrawsTheTargetLineAtTheTarget) {
  const std::string svg = render_plan_svg(synthetic_report());
  ASSERT_EQ(count_of(svg, "class=\"target\""), 1u);
  const std::regex line("class=\"target\" x1=\"[0-9.]+\" y1=\"([0-9.]+)\" x2=\"[0-9.]+\" y2=\"([0-9.]+)\"");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, line));
  EXPECT_EQ(m[1].str(), m[2].str());  // horizontal
  EXPECT_NE(svg.find("p99 target 1.00 ms"), std::string::npos);
  // The 1 ms grid line has the same height as the target line: the y axis
  // is log-scaled in whole decades and 1 ms is a decade.
  const std::regex tick("y=\"([0-9.]+)\" text-anchor=\"end\">1 ms</text>");
  std::smatch t;
  ASSERT_TRUE(std::regex_search(svg, t, tick));
  EXPECT_NEAR(std::stod(t[1].str()) - 4, std::stod(m[1].str()), 0.11);
}

TEST(PlanRenderTest, SvgRingsTheSustainablePoint) {
  // Worker count 1 sustains 20k, worker count 2 sustains 10k: two rings.
  EXPECT_EQ(count_of(render_plan_svg(synthetic_report()), "class=\"sustainable\""), 2u);
}

TEST(PlanRenderTest, MarkdownEmbedsThePlotAndStatesTheAnswer) {
  const std::string md = render_plan_markdown(synthetic_report(), "plan.svg");
  EXPECT_EQ(md.rfind("# taskring capacity plan", 0), 0u);
  EXPECT_NE(md.find("](plan.svg)"), std::string::npos);
  EXPECT_NE(md.find("With 1 worker, taskring sustains **20,000 tasks/s** with p99 <= 1.00 ms"), std::string::npos)
      << md;
  EXPECT_NE(md.find("At 40,000 tasks/s it broke: p99 over target (3.00 ms)"), std::string::npos) << md;
  EXPECT_NE(md.find("With 2 workers, taskring sustains **10,000 tasks/s**"), std::string::npos) << md;
  EXPECT_NE(md.find("not run: 80,000 tasks/s"), std::string::npos) << md;
  EXPECT_NE(md.find("docs/capacity-planning.md"), std::string::npos);
  EXPECT_NE(md.find("abc123"), std::string::npos);
}

TEST(PlanRenderTest, MarkdownHasOneRowPerStep) {
  const std::string md = render_plan_markdown(synthetic_report(), "plan.svg");
  EXPECT_EQ(count_of(md, "| achieved (tasks/s) |"), 2u);
  EXPECT_EQ(count_of(md, "| ok |"), 3u);
  EXPECT_EQ(count_of(md, "| p99 over target (3.00 ms) |"), 3u);
  EXPECT_EQ(count_of(md, "| fell behind (achieved 60.0% of offered) |"), 1u);
}

TEST(PlanRenderTest, JsonNamesTheSustainableRate) {
  const nlohmann::json j = plan_json(synthetic_report());
  ASSERT_EQ(j["plan"]["sweeps"].size(), 2u);
  EXPECT_EQ(j["plan"]["sweeps"][0]["sustainable_tps"], 20'000.0);
  EXPECT_EQ(j["plan"]["sweeps"][0]["broke_at_tps"], 40'000.0);
  EXPECT_EQ(j["plan"]["sweeps"][0]["broke_because"], "p99 over target");
  EXPECT_EQ(j["plan"]["sweeps"][1]["skipped_rates"], nlohmann::json::array({80'000.0}));
  EXPECT_EQ(j["plan"]["settings"]["p99_target_ns"], kTarget);
  EXPECT_EQ(j["meta"]["commit"], "abc123");
}

}  // namespace
}  // namespace taskring::bench
