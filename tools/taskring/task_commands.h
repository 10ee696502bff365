// The task commands of the taskring CLI: submit (one task or many, with an
// optional wait for their results), get (inspect a task and read its
// result) and cancel.
//
// Thread safety: single-threaded, like the rest of the CLI.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

// Adds the submit, get and cancel subcommands to `app`. When one of them is
// parsed, its callback stores what to run in `action`, which must outlive
// parsing.
void add_task_commands(CLI::App& app, Action& action);

}  // namespace taskring::cli
