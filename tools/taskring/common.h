// Shared pieces of the taskring CLI: exit statuses, error reporting, strict
// parsers for flag values, option helpers built on them, and formatting of
// byte counts, durations and task values for people.
//
// Thread safety: the CLI is single-threaded; these functions keep no state
// except what their arguments point at.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "taskring/base/status.h"

namespace taskring::cli {

// Process exit statuses, documented in docs/cli.md.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // a runtime failure: attach, submit, a system call
inline constexpr int kExitUsage = 2;        // a bad flag, value or argument
inline constexpr int kExitTaskFailed = 3;   // submit --wait: a task failed, was cancelled or timed out

// What a parsed subcommand runs; returns the process exit status.
using Action = std::function<int()>;

// Parses argv into `app` (a program with subcommands). Returns std::nullopt
// when the chosen command should run; otherwise the exit status to return at
// once: 0 after --help or --version, kExitUsage after a parse error, which is
// printed with a hint naming `program` and the chosen subcommand.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, std::string_view program);

// The exit status for a failed engine call: kExitUsage when the engine says
// the caller's input was wrong (kInvalidArgument), kExitFailure otherwise.
int exit_status_for(const Status& status);

// Writes "error: <context>: <message>" (or "error: <message>" without a
// context) and, when `hint` is not empty, "hint: <hint>" to stderr.
void print_error(std::string_view context, std::string_view message, std::string_view hint = {});

// print_error for a Status, then returns exit_status_for(status).
int report(const Status& status, std::string_view context, std::string_view hint = {});

// Engine errors name a field first ("cpu 99: ...", "queue 'x': ..."). Maps
// such a message to the flag that sets the field, so the error line can
// name the flag too.
struct FieldFlag {
  std::string_view field;  // as the engine's message starts, e.g. "claim_batch"
  std::string_view flag;   // e.g. "--batch"
};
// The flag of the first field that `message` starts with (followed by a
// space or a colon), or `fallback`.
std::string_view flag_for_message(std::string_view message, std::initializer_list<FieldFlag> fields,
                                  std::string_view fallback);

// Strict parsers. Each rejects empty text, signs, spaces, junk after the
// number and overflow; the error message names the value and what is
// accepted (the caller adds the flag name).

// A decimal integer in [min, max].
Result<std::uint64_t> parse_unsigned(std::string_view text, std::uint64_t min, std::uint64_t max);
// A byte count: a decimal integer optionally followed by K, M or G (also
// KiB, MiB, GiB; any case), powers of 1024.
Result<std::uint64_t> parse_byte_size(std::string_view text);
// A non-negative decimal number of seconds, at most 1e9 (e.g. 0.5, 30).
// Returns nanoseconds.
Result<std::int64_t> parse_seconds(std::string_view text);
// An octal file mode such as 0600 or 660.
Result<std::uint64_t> parse_octal_mode(std::string_view text);
// A duration: one or more <number><unit> pairs, the number a decimal with an
// optional fraction and the unit one of ns, us, ms, s, m, h, d (e.g. 250ms,
// 2s, 1.5m, 1h30m), or a bare 0. Returns nanoseconds. Rejects signs,
// spaces, a number without a unit, a value finer than 1 ns and a total over
// `max_ns` (the message then names the limit in the same notation).
Result<std::int64_t> parse_duration(std::string_view text, std::int64_t max_ns);

// Adds option `names` to `app`; its text goes to `parse`, which checks it and
// stores the value where it belongs. A non-OK Status from `parse` becomes a
// CLI11 ValidationError reading "<flag>: <message>", so the command exits
// with kExitUsage. `default_text`, when not empty, is shown in --help.
CLI::Option* add_parsed_option(CLI::App* app, const std::string& names, const std::string& flag,
                               std::function<Status(std::string_view)> parse,
                               const std::string& description, const std::string& type_name,
                               const std::string& default_text = {});

// Convenience wrappers over add_parsed_option for the common value kinds.
// Each stores into `target` (which must outlive parsing) and shows its
// current value as the default. A value outside [min, max] is an error.
CLI::Option* add_unsigned_option(CLI::App* app, const std::string& names, std::uint32_t& target,
                                 std::uint64_t min, std::uint64_t max, const std::string& description);
CLI::Option* add_unsigned_option(CLI::App* app, const std::string& names, std::uint64_t& target,
                                 std::uint64_t min, std::uint64_t max, const std::string& description);
CLI::Option* add_byte_size_option(CLI::App* app, const std::string& names, std::uint64_t& target,
                                  std::uint64_t max, const std::string& description);

// Adds option `names` taking a duration (parse_duration) from `min_ns` to
// `max_ns` into `target`; the default shown is `target`'s current value.
CLI::Option* add_duration_option(CLI::App* app, const std::string& names, std::int64_t& target,
                                 std::int64_t min_ns, std::int64_t max_ns, const std::string& description);

// A comma-separated list, empty fields kept (so that "a,,b" reaches the
// validation that rejects an empty name instead of being tidied away).
std::vector<std::string> split_list(std::string_view text);
// Adds option `names` taking one comma-separated list into `target`.
CLI::Option* add_list_option(CLI::App* app, const std::string& names, std::vector<std::string>& target,
                             const std::string& description);

// Adds the required --segment option (also read from $TASKRING_SEGMENT).
CLI::Option* add_segment_option(CLI::App* app, std::string& target);

// "64 MiB", "1.5 KiB", "512 B".
std::string format_bytes(std::uint64_t bytes);
// "850 ns", "12.3 us", "4.56 ms", "1.234 s", "3m12s", "2h05m".
std::string format_duration_ns(std::int64_t ns);
// `ns` exactly, as parse_duration accepts it: "0", "250ms", "1h30m",
// "1s500ms", "2d".
std::string duration_text(std::int64_t ns);
// `bytes` with backslash, control and non-ASCII bytes escaped (\\, \n, \t,
// \r, \xNN), so one value always fits on one output line.
std::string escape_value(std::string_view bytes);
// The current CLOCK_MONOTONIC time in nanoseconds, the engine's task clock.
std::int64_t monotonic_now_ns();
// The current CLOCK_REALTIME time in nanoseconds.
std::int64_t realtime_now_ns();

}  // namespace taskring::cli
