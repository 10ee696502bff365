// Flags shared by taskring-bench's run command and `plan`: one parser per
// value kind, and the flags that describe the workload, so both commands
// accept and refuse the same values with the same messages.
//
// Thread safety: called from main before parsing; the options store into
// targets that must outlive parsing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <CLI/CLI.hpp>

#include "common.h"
#include "load.h"

namespace taskring::bench {

// Adds option `names` (e.g. "-d,--duration") whose text goes through `parse`
// (returning a Result) into `target`; a parse error reads "<flag>: <message>"
// and exits with status 2.
template <typename T, typename Parse>
CLI::Option* add_value_option(CLI::App* app, const std::string& names, const std::string& flag, T& target,
                              Parse parse, const std::string& description, const std::string& type_name,
                              const std::string& default_text = {}) {
  return cli::add_parsed_option(
      app, names, flag,
      [&target, parse](std::string_view text) -> Status {
        auto v = parse(text);
        if (!v) return v.status();
        target = std::move(*v);
        return Status::ok();
      },
      description, type_name, default_text);
}

// Seconds above 0, as cli::parse_seconds accepts them; returns nanoseconds.
Result<std::int64_t> parse_positive_seconds(std::string_view text);
// A payload size: 16 bytes (the task header) to 1M, with K/M suffixes.
Result<std::uint32_t> parse_payload(std::string_view text);

// Adds --payload, --batch, --handler, --pin, --spin-rounds and --claim-batch,
// storing into `config`.
void add_workload_options(CLI::App* app, LoadConfig& config);

}  // namespace taskring::bench
