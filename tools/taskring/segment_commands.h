// The segment commands of the taskring CLI: init (create a segment),
// destroy (close and remove it), status (a read-only snapshot, as a table
// or one JSON document), drain (the attached workers finish and exit) and
// recover (put back what dead processes held).
//
// Thread safety: single-threaded, like the rest of the CLI.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

// Adds the init, destroy, status, drain and recover subcommands to `app`.
// When one of them is parsed, its callback stores what to run in `action`,
// which must outlive parsing.
void add_segment_commands(CLI::App& app, Action& action);

}  // namespace taskring::cli
