// The `taskring log` commands: read-only tools over a durable log directory
// (the files the sidecar writes, docs/formats/log.md). dump prints records,
// tail follows new ones as they are appended, verify checks every CRC and
// sequence number, stats counts records and the tasks the log leaves live.
// None of them writes to the log or takes its writer's lock.
//
// Thread safety: single-threaded, like the rest of the CLI.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

// Adds `log` with its subcommands dump, tail, verify and stats to `app`.
// When one of them is parsed, its callback stores what to run in `action`,
// which must outlive parsing.
void add_log_commands(CLI::App& app, Action& action);

}  // namespace taskring::cli
