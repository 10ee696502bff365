// `taskring sidecar`: mirrors a segment's journal to a durable log
// (tools/sidecar/sidecar.h). docs/cli.md documents its flags and output.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"

namespace taskring::cli {

void add_sidecar_command(CLI::App& app, Action& action);

}  // namespace taskring::cli
