// taskring-bench: the load harness. Without a subcommand it runs one workload
// over taskring (or, with --compare, over taskring and every baseline in the
// same invocation) and prints a table, optionally JSON. `plan` sweeps the
// offered rate for capacity planning; `floor` measures the machine's own
// latency floor. docs/performance.md and docs/capacity-planning.md explain
// the output. `durability` runs the sidecar, durable-acknowledgement and
// recovery scenarios (docs/benchmarking.md).
//
// Exit statuses: 0 every run completed every task exactly once; 1 a run
// failed or its accounting found lost, duplicated or malformed tasks; 2 a
// usage error.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "common.h"
#include "load.h"
#include "options.h"
#include "report.h"

namespace taskring::bench {

namespace {

struct RunOptions {
  LoadConfig config;
  std::string system = "taskring";
  bool compare = false;
  std::string json_path;
};


int run_command(const RunOptions& o) {
  LoadConfig c = o.config;
  if (c.tasks == 0 && c.duration_ns == 0) c.tasks = 200'000;
  const Status valid = c.validate();
  if (!valid.is_ok()) return cli::report(valid, {}, "run 'taskring-bench --help' for the flags");

  std::vector<std::string> names;
  if (o.compare) {
    names.assign(std::begin(kSystemNames), std::end(kSystemNames));
  } else {
    names.push_back(o.system);
  }
  std::vector<RunResult> results;
  for (const std::string& name : names) {
    std::unique_ptr<System> system = make_system(name);
    std::fprintf(stderr, "running %s: %u producer(s), %u worker(s)...\n", name.c_str(), c.producers, c.workers);
    results.push_back(run_load(*system, c));
  }
  std::cout << render_results_table(results);

  int exit_status = cli::kExitOk;
  for (const RunResult& r : results) {
    if (!r.status.is_ok()) {
      cli::print_error(r.system, r.status.to_string());
      exit_status = cli::kExitFailure;
    }
    const std::string p = problems(r);
    if (!p.empty()) {
      cli::print_error(r.system, "accounting found " + p);
      exit_status = cli::kExitFailure;
    }
  }
  if (!o.json_path.empty()) {
    nlohmann::json doc = {{"meta", run_meta()}, {"config", config_json(c)}, {"results", nlohmann::json::array()}};
    for (const RunResult& r : results) doc["results"].push_back(result_json(r));
    std::ofstream out(o.json_path);
    out << doc.dump(2) << '\n';
    if (!out) {
      cli::print_error("--json", "cannot write '" + o.json_path + "'");
      return cli::kExitFailure;
    }
  }
  return exit_status;
}

}  // namespace

void add_run_command(CLI::App& app, cli::Action& action) {
  auto o = std::make_shared<RunOptions>();
  LoadConfig& c = o->config;
  app.add_option("--system", o->system, "the system to run: taskring, bip_mq, moodycamel or tbb")
      ->check(CLI::IsMember({"taskring", "bip_mq", "moodycamel", "tbb"}))
      ->default_val("taskring");
  auto* compare = app.add_flag("--compare", o->compare,
                               "run taskring and every baseline (bip_mq, moodycamel, tbb) on the same workload");
  app.get_option("--system")->excludes(compare);
  cli::add_unsigned_option(&app, "-p,--producers", c.producers, 1, 64, "producer processes (threads for in-process baselines)");
  cli::add_unsigned_option(&app, "-w,--workers", c.workers, 1, 64, "worker processes (threads for in-process baselines)");
  auto* tasks = cli::add_unsigned_option(&app, "-n,--tasks", c.tasks, 1, std::uint64_t{1} << 36,
                                         "tasks in all (default 200000 when --duration is not given)");
  auto* duration = add_value_option(&app, "-d,--duration", "--duration", c.duration_ns, parse_positive_seconds,
                                    "run for this many seconds instead of a task count", "SECONDS");
  tasks->excludes(duration);
  cli::add_unsigned_option(&app, "--inflight", c.inflight, 1, 1 << 16,
                           "tasks in flight per producer (default: max(64, batch) closed loop, 4096 open loop)");
  add_value_option(&app, "-r,--rate", "--rate", c.rate, parse_rate,
                   "open loop at this many tasks per second over all producers (default: closed loop)", "RATE");
  add_workload_options(&app, c);
  add_value_option(&app, "--drain-timeout", "--drain-timeout", c.drain_timeout_ns, parse_positive_seconds,
                   "end the run when no task finished for this long; the rest count as lost", "SECONDS", "10");
  cli::add_unsigned_option(&app, "--inject-loss", c.inject_loss, 0, std::uint64_t{1} << 36,
                           "testing the harness: producer 0 drops its first N tasks");
  cli::add_unsigned_option(&app, "--inject-duplicate", c.inject_duplicate, 0, std::uint64_t{1} << 36,
                           "testing the harness: producer 0 sends its next N tasks twice");
  app.add_option("--json", o->json_path, "also write the results as JSON to this file");
  action = [o] { return run_command(*o); };
}

}  // namespace taskring::bench

int main(int argc, char** argv) {
  using namespace taskring;
  CLI::App app{"taskring-bench: load harness for taskring, with baselines in the same run", "taskring-bench"};
  app.require_subcommand(0, 1);
  app.footer("Commands: plan (capacity planning sweep), floor (the machine's latency floor),\n"
             "durability throughput|ack|recovery (the sidecar's cost, durable acknowledgements, recovery time).\n"
             "Documentation: docs/benchmarking.md, docs/performance.md, docs/capacity-planning.md\n");
  cli::Action action;
  bench::add_run_command(app, action);
  bench::add_plan_command(app, action);
  bench::add_floor_command(app, action);
  bench::add_durability_command(app, action);
  if (auto exit_now = cli::parse_command_line(app, argc, argv, "taskring-bench")) return *exit_now;
  return action();
}
