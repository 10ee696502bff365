// The worker command of the taskring CLI. Without --processes it attaches
// one worker to a segment in this process, registers the built-in handlers
// and those of plugin shared objects, and runs the claim loop until
// SIGINT/SIGTERM, the segment closing or being drained, or --tasks.
//
// With --processes N it is a supervisor: it forks N worker processes, each
// running that same code path, and keeps N running. A child that dies is
// reported to the engine (worker_exited: its tasks are requeued with the exit
// reason recorded) and replaced; a child is recycled after
// --max-tasks-per-child tasks or when its private memory exceeds --max-rss;
// children that keep dying at start-up make the supervisor give up instead
// of fork-looping. SIGINT/SIGTERM stop every child (a second one kills
// them); a drain or the segment closing ends the children, which are not
// replaced. docs/cli.md describes the flags, the output and the exit
// statuses.
//
// Thread safety: single-threaded, like the rest of the CLI; the signal
// handlers a worker installs only call Worker::stop(), which is
// async-signal-safe. The supervisor takes its signals through a signalfd.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

// Adds the worker subcommand to `app`. When it is parsed, its callback
// stores what to run in `action`, which must outlive parsing.
void add_worker_command(CLI::App& app, Action& action);

}  // namespace taskring::cli
