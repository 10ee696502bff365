// The harness's reports: run metadata, JSON and the results table.
#include "report.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>

#include "common.h"
#include "git_commit.h"  // generated in the build directory: TASKRING_GIT_COMMIT
#include "table.h"

#ifndef TASKRING_BUILD_TYPE
#define TASKRING_BUILD_TYPE ""
#endif

namespace taskring::bench {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// "1.23 M/s", "456.7 k/s", "89 /s".
std::string rate_text(double tps) {
  if (tps >= 1e6) return fixed(tps / 1e6, 2) + " M/s";
  if (tps >= 1e3) return fixed(tps / 1e3, 1) + " k/s";
  return fixed(tps, 0) + " /s";
}

std::string ns_text(std::uint64_t ns) { return cli::format_duration_ns(static_cast<std::int64_t>(ns)); }

}  // namespace

nlohmann::json run_meta() {
  utsname u{};
  uname(&u);
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return {{"commit", TASKRING_GIT_COMMIT},
          {"cpu", cpu_model()},
          {"cores", cores},
          {"compiler", std::string("g++ ") + __VERSION__},
          {"build_type", TASKRING_BUILD_TYPE},
          {"kernel", u.release},
          {"date", utc_now()}};
}

nlohmann::json config_json(const LoadConfig& c) {
  return {{"producers", c.producers},
          {"workers", c.workers},
          {"tasks", c.tasks},
          {"duration_s", static_cast<double>(c.duration_ns) / 1e9},
          {"batch", c.batch},
          {"inflight", c.inflight_limit()},
          {"rate", c.rate},
          {"payload", c.payload},
          {"handler", c.handler.to_string()},
          {"pin", c.pin},
          {"spin_rounds", c.spin_rounds},
          {"claim_batch", c.claim_batch},
          {"drain_timeout_s", static_cast<double>(c.drain_timeout_ns) / 1e9},
          {"inject_loss", c.inject_loss},
          {"inject_duplicate", c.inject_duplicate}};
}

nlohmann::json latency_json(const Histogram& h) {
  const LatencySummary s = summarize(h);
  return {{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"p999", s.p999}, {"max", s.max}};
}

nlohmann::json sidecar_json(const SidecarFigures& s, std::uint64_t completed) {
  const double per_sync = s.syncs == 0 ? 0 : static_cast<double>(s.submits_synced) / static_cast<double>(s.syncs);
  return {{"fsync", s.fsync},
          {"journal", s.journal},
          {"events", s.events},
          {"records", s.records},
          {"writes", s.writes},
          {"fdatasyncs", s.syncs},
          {"sync_ns_total", s.sync_ns_total},
          {"sync_ns_mean", s.syncs == 0 ? 0 : s.sync_ns_total / s.syncs},
          {"sync_ns_max", s.sync_ns_max},
          {"submits_synced", s.submits_synced},
          {"tasks_per_fdatasync", per_sync},
          {"resyncs", s.resyncs},
          {"dropped", s.dropped},
          {"holes", s.holes},
          {"compactions", s.compactions},
          {"cpu_ns", s.cpu_ns},
          {"cpu_ns_per_task", completed == 0 ? 0.0 : static_cast<double>(s.cpu_ns) / static_cast<double>(completed)}};
}

nlohmann::json result_json(const RunResult& r) {
  nlohmann::json j = {{"system", r.system},
                      {"ok", r.status.is_ok()},
                      {"throughput_tps", r.throughput_tps},
                      {"elapsed_s", r.elapsed_s},
                      {"submitted", r.submitted},
                      {"completed", r.completed},
                      {"lost", r.lost},
                      {"duplicates", r.duplicates},
                      {"malformed", r.malformed},
                      {"stalled", r.stalled},
                      {"cpu_ns_per_task", r.cpu_ns_per_task},
                      {"latency_ns",
                       {{"submit_to_start", latency_json(r.submit_to_start)},
                        {"start_to_complete", latency_json(r.start_to_complete)},
                        {"round_trip", latency_json(r.round_trip)},
                        {"submit_call", latency_json(r.submit_call)}}}};
  if (r.sidecar) j["sidecar"] = sidecar_json(*r.sidecar, r.completed);
  if (!r.status.is_ok()) j["error"] = r.status.to_string();
  return j;
}

std::string problems(const RunResult& r) {
  std::string out;
  auto add = [&](std::uint64_t n, const char* what) {
    if (n == 0) return;
    out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + what;
  };
  add(r.lost, "lost");
  add(r.duplicates, "duplicated");
  add(r.malformed, "malformed");
  if (r.stalled) out += std::string(out.empty() ? "" : ", ") + "stalled (no progress for --drain-timeout)";
  return out;
}

std::string render_results_table(std::span<const RunResult> results) {
  cli::Table t({"system", "throughput", "ratio", "submitted", "completed", "lost", "dup", "cpu/task", "rt p50",
                 "rt p99", "rt p99.9", "rt max", "queue p50", "queue p99"},
                "lrrrrrrrrrrrrr");
  const double base = results.empty() ? 0 : results[0].throughput_tps;
  for (const RunResult& r : results) {
    // The ratio is taskring's throughput over this system's: how many times
    // faster taskring ran the same workload.
    const std::string ratio =
        r.throughput_tps > 0 && base > 0 ? fixed(base / r.throughput_tps, 2) + "x" : "-";
    const LatencySummary rt = summarize(r.round_trip);
    const LatencySummary q = summarize(r.submit_to_start);
    t.add({r.system + (r.status.is_ok() ? "" : " (failed)"), rate_text(r.throughput_tps), ratio,
           std::to_string(r.submitted), std::to_string(r.completed), std::to_string(r.lost),
           std::to_string(r.duplicates), ns_text(static_cast<std::uint64_t>(r.cpu_ns_per_task)),
           ns_text(static_cast<std::uint64_t>(rt.p50)), ns_text(static_cast<std::uint64_t>(rt.p99)),
           ns_text(static_cast<std::uint64_t>(rt.p999)), ns_text(static_cast<std::uint64_t>(rt.max)),
           ns_text(static_cast<std::uint64_t>(q.p50)), ns_text(static_cast<std::uint64_t>(q.p99))});
  }
  return t.render();
}

}  // namespace taskring::bench
