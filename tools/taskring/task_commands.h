// The task commands of the taskring CLI: submit (one task or many, delayed
// or with a time limit, with an optional wait for their results), get
// (inspect a task and read its result), cancel, and the dead-letter family
// dead list|show|requeue|purge (tasks that failed for good).
//
// Thread safety: single-threaded, like the rest of the CLI.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

// Adds the submit, get, cancel and dead subcommands to `app` (dead with its
// own subcommands list, show, requeue and purge). When one of them is
// parsed, its callback stores what to run in `action`, which must outlive
// parsing.
void add_task_commands(CLI::App& app, Action& action);

}  // namespace taskring::cli
