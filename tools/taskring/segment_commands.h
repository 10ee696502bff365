// The segment commands of the taskring CLI: init (create a segment),
// destroy (close and remove it) and status (a read-only snapshot, as a table
// or one JSON document).
//
// Thread safety: single-threaded, like the rest of the CLI.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

// Adds the init, destroy and status subcommands to `app`. When one of them
// is parsed, its callback stores what to run in `action`, which must outlive
// parsing.
void add_segment_commands(CLI::App& app, Action& action);

}  // namespace taskring::cli
