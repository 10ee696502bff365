// The worker command of the taskring CLI: attaches a worker to a segment,
// registers the built-in handlers and those of plugin shared objects, and
// runs the claim loop until SIGINT/SIGTERM, the segment closing, or --tasks.
//
// Thread safety: single-threaded, like the rest of the CLI; the signal
// handlers it installs only call Worker::stop(), which is async-signal-safe.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

// Adds the worker subcommand to `app`. When it is parsed, its callback
// stores what to run in `action`, which must outlive parsing.
void add_worker_command(CLI::App& app, Action& action);

}  // namespace taskring::cli
