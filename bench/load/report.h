// How the harness reports: the machine and build a run was measured on, a
// run's configuration and results as JSON (the schema in docs/performance.md),
// and the table printed for people.
//
// Thread safety: functions of their arguments only.
#pragma once

#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "load.h"

namespace taskring::bench {

// {"commit", "cpu", "cores", "compiler", "build_type", "kernel", "date"}:
// the commit the harness was built from ("" outside git, "-dirty" when it had
// uncommitted changes), /proc/cpuinfo's model name, online cores, the
// compiler, CMAKE_BUILD_TYPE, uname -r and the UTC time of the call.
nlohmann::json run_meta();
// {"producers", "workers", "tasks", "duration_s", "batch", "inflight", "rate",
//  "payload", "handler", ...}
nlohmann::json config_json(const LoadConfig& config);
// One element of "results"; with a "sidecar" object (sidecar_json) when the
// run had one.
nlohmann::json result_json(const RunResult& result);
// {"fsync", "journal", "events", "records", "writes", "fdatasyncs",
//  "sync_ns_total", "sync_ns_mean", "sync_ns_max", "submits_synced",
//  "tasks_per_fdatasync", "resyncs", "dropped", "holes", "compactions",
//  "cpu_ns", "cpu_ns_per_task"}; per task over `completed` tasks.
nlohmann::json sidecar_json(const SidecarFigures& sidecar, std::uint64_t completed);
// {"p50", "p90", "p99", "p999", "max"} in nanoseconds.
nlohmann::json latency_json(const Histogram& histogram);

// What the accounting found wrong with one run ("3 lost, 1 duplicated"), or
// "" if nothing.
std::string problems(const RunResult& r);

// One row per result: throughput, ratio to the first result (taskring),
// counts, CPU per task and latency percentiles.
std::string render_results_table(std::span<const RunResult> results);

}  // namespace taskring::bench
