// The subcommands of taskring-bench. Each adds its options to the CLI11 app
// and, when it is the one chosen, sets `action` to a function that runs it
// and returns the exit status (0 ok, 1 a run failed or lost tasks, 2 bad
// usage; docs/cli.md).
//
// Thread safety: called once, from main, before parsing.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::bench {

// The root command: one run of one system, or of every system with --compare.
void add_run_command(CLI::App& app, cli::Action& action);
// `plan`: the open-loop rate sweep and its Markdown and SVG report.
void add_plan_command(CLI::App& app, cli::Action& action);
// `floor`: the machine's own core-to-core and futex-wake round trips.
void add_floor_command(CLI::App& app, cli::Action& action);
// `durability throughput|ack|recovery`: the sidecar's cost, durable
// acknowledgements against fdatasync, recovery time (durability.h).
void add_durability_command(CLI::App& app, cli::Action& action);

}  // namespace taskring::bench
