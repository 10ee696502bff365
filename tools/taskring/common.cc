#include "common.h"

#include <time.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

namespace taskring::cli {

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, std::string_view program) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive as "errors" that exit 0.
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    // The chosen command, nested ones included ("dead list").
    std::string command;
    for (const CLI::App* at = &app;;) {
      const std::vector<CLI::App*> chosen = at->get_subcommands();
      if (chosen.empty()) break;
      at = chosen.back();
      if (!command.empty()) command += ' ';
      command += at->get_name();
    }
    const std::string prog(program);
    print_error({}, e.what(),
                command.empty() ? "run '" + prog + " --help' for the commands and flags"
                                : "run '" + prog + " " + command + " --help' for its flags");
    return kExitUsage;
  }
  return std::nullopt;
}

int exit_status_for(const Status& status) {
  if (status.is_ok()) return kExitOk;
  return status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
}

void print_error(std::string_view context, std::string_view message, std::string_view hint) {
  std::string line = "error: ";
  if (!context.empty()) {
    line.append(context);
    line.append(": ");
  }
  line.append(message);
  line.push_back('\n');
  if (!hint.empty()) {
    line.append("hint: ");
    line.append(hint);
    line.push_back('\n');
  }
  std::fputs(line.c_str(), stderr);
}

int report(const Status& status, std::string_view context, std::string_view hint) {
  print_error(context, status.message(), hint);
  return exit_status_for(status);
}

std::string_view flag_for_message(std::string_view message, std::initializer_list<FieldFlag> fields,
                                  std::string_view fallback) {
  for (const FieldFlag& f : fields) {
    if (message.size() > f.field.size() && message.substr(0, f.field.size()) == f.field &&
        (message[f.field.size()] == ' ' || message[f.field.size()] == ':')) {
      return f.flag;
    }
  }
  return fallback;
}

namespace {

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Parses a non-empty run of decimal digits; false on overflow.
bool parse_digits(std::string_view digits, std::uint64_t& out) {
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out, 10);
  return ec == std::errc() && end == digits.data() + digits.size();
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Result<std::uint64_t> parse_unsigned(std::string_view text, std::uint64_t min, std::uint64_t max) {
  const std::string accepted =
      "must be a whole decimal number between " + std::to_string(min) + " and " + std::to_string(max);
  std::uint64_t v = 0;
  if (!all_digits(text) || !parse_digits(text, v) || v < min || v > max) {
    return invalid_argument(quoted(text) + ": " + accepted);
  }
  return v;
}

Result<std::uint64_t> parse_byte_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string suffix = lower(text.substr(digits));
  std::uint64_t unit = 0;
  if (suffix.empty()) {
    unit = 1;
  } else if (suffix == "k" || suffix == "kib") {
    unit = std::uint64_t{1} << 10;
  } else if (suffix == "m" || suffix == "mib") {
    unit = std::uint64_t{1} << 20;
  } else if (suffix == "g" || suffix == "gib") {
    unit = std::uint64_t{1} << 30;
  }
  if (digits == 0 || unit == 0) {
    return invalid_argument(quoted(text) +
                            ": must be a byte count: a whole number, optionally followed by K, M or G "
                            "(KiB, MiB, GiB), e.g. 65536 or 64K");
  }
  std::uint64_t v = 0;
  if (!parse_digits(text.substr(0, digits), v) || v > std::numeric_limits<std::uint64_t>::max() / unit) {
    return invalid_argument(quoted(text) + ": too large (the limit is 2^64 - 1 bytes)");
  }
  return v * unit;
}

Result<std::int64_t> parse_seconds(std::string_view text) {
  constexpr double kMaxSeconds = 1e9;
  const auto bad = [&] {
    return invalid_argument(quoted(text) +
                            ": must be a non-negative decimal number of seconds, at most 1e9 (e.g. 0.5 or 30)");
  };
  // Only digits with at most one '.': no sign, exponent, inf or nan.
  int dots = 0;
  bool digit = false;
  for (char c : text) {
    if (c == '.') {
      ++dots;
    } else if (c >= '0' && c <= '9') {
      digit = true;
    } else {
      return bad();
    }
  }
  if (!digit || dots > 1) return bad();
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != text.data() + text.size() || !(v <= kMaxSeconds)) return bad();
  return static_cast<std::int64_t>(std::llround(v * 1e9));
}

Result<std::uint64_t> parse_octal_mode(std::string_view text) {
  bool ok = !text.empty() && text.size() <= 4;
  for (char c : text) ok = ok && c >= '0' && c <= '7';
  if (!ok) return invalid_argument(quoted(text) + ": must be an octal file mode such as 0600 or 0660");
  std::uint64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v, 8);
  return v;
}

namespace {

// GCC and Clang's 128-bit integer (__extension__: not ISO C++, -Wpedantic).
__extension__ typedef unsigned __int128 Uint128;

struct DurationUnit {
  std::string_view name;
  std::int64_t ns;
};
// Largest first: duration_text walks them in this order.
constexpr DurationUnit kDurationUnits[] = {
    {"d", 86'400'000'000'000}, {"h", 3'600'000'000'000}, {"m", 60'000'000'000}, {"s", 1'000'000'000},
    {"ms", 1'000'000},         {"us", 1'000},            {"ns", 1},
};

}  // namespace

Result<std::int64_t> parse_duration(std::string_view text, std::int64_t max_ns) {
  const auto bad = [&] {
    return invalid_argument(quoted(text) +
                            ": must be a duration: a number and a unit (ms, s, m, h, d; also us, ns), "
                            "e.g. 250ms, 2s, 1.5m or 1h30m");
  };
  const auto too_large = [&] { return invalid_argument(quoted(text) + ": must be at most " + duration_text(max_ns)); };
  if (text == "0") return std::int64_t{0};
  if (text.empty()) return bad();
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  const auto letter = [](char c) { return c >= 'a' && c <= 'z'; };
  // 128 bits: one term is at most (2^64 - 1) * 86400e9 < 2^111, so a sum
  // checked against max_ns after every term cannot wrap.
  Uint128 total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t whole_at = i;
    while (i < text.size() && digit(text[i])) ++i;
    const std::string_view whole = text.substr(whole_at, i - whole_at);
    std::string_view frac;
    if (i < text.size() && text[i] == '.') {
      const std::size_t frac_at = ++i;
      while (i < text.size() && digit(text[i])) ++i;
      frac = text.substr(frac_at, i - frac_at);
    }
    if (whole.empty() && frac.empty()) return bad();
    const std::size_t unit_at = i;
    while (i < text.size() && letter(text[i])) ++i;
    const std::string_view unit_name = text.substr(unit_at, i - unit_at);
    const DurationUnit* unit = nullptr;
    for (const DurationUnit& u : kDurationUnits) {
      if (u.name == unit_name) unit = &u;
    }
    if (unit == nullptr) return bad();
    std::uint64_t w = 0;
    if (!whole.empty() && !parse_digits(whole, w)) return too_large();
    total += static_cast<Uint128>(w) * static_cast<std::uint64_t>(unit->ns);
    while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
    if (!frac.empty()) {
      // f / 10^k of the unit must come to whole nanoseconds; units are at
      // most 86400e9 ns < 10^14, so more than 18 significant digits never do.
      if (frac.size() > 18) return invalid_argument(quoted(text) + ": must be whole nanoseconds");
      std::uint64_t f = 0;
      parse_digits(frac, f);
      std::uint64_t den = 1;
      for (std::size_t k = 0; k < frac.size(); ++k) den *= 10;
      const Uint128 num = static_cast<Uint128>(f) * static_cast<std::uint64_t>(unit->ns);
      if (num % den != 0) return invalid_argument(quoted(text) + ": must be whole nanoseconds");
      total += num / den;
    }
    if (total > static_cast<Uint128>(max_ns)) return too_large();
  }
  return static_cast<std::int64_t>(total);
}

CLI::Option* add_parsed_option(CLI::App* app, const std::string& names, const std::string& flag,
                               std::function<Status(std::string_view)> parse,
                               const std::string& description, const std::string& type_name,
                               const std::string& default_text) {
  CLI::Option* opt = app->add_option_function<std::string>(
      names,
      [flag, parse = std::move(parse)](const std::string& text) {
        const Status s = parse(text);
        if (!s.is_ok()) throw CLI::ValidationError(flag, s.message());
      },
      description);
  opt->type_name(type_name);
  if (!default_text.empty()) opt->default_str(default_text);
  return opt;
}

namespace {

// `bytes` the way a byte-size flag accepts it: "64M", "4K", "1000".
std::string byte_size_text(std::uint64_t bytes) {
  static constexpr std::pair<int, char> kUnits[] = {{30, 'G'}, {20, 'M'}, {10, 'K'}};
  for (const auto& [shift, letter] : kUnits) {
    const std::uint64_t unit = std::uint64_t{1} << shift;
    if (bytes != 0 && bytes % unit == 0) return std::to_string(bytes / unit) + letter;
  }
  return std::to_string(bytes);
}

// The long name ("--slots") out of a CLI11 name list such as "-n,--slots".
std::string long_flag(const std::string& names) {
  const std::size_t at = names.find("--");
  if (at == std::string::npos) return names;
  return names.substr(at, names.find(',', at) - at);
}

template <typename T>
CLI::Option* add_unsigned_impl(CLI::App* app, const std::string& names, T& target, std::uint64_t min,
                               std::uint64_t max, const std::string& description) {
  const std::string flag = long_flag(names);
  return add_parsed_option(
      app, names, flag,
      [&target, min, max](std::string_view text) -> Status {
        auto v = parse_unsigned(text, min, max);
        if (!v) return v.status();
        target = static_cast<T>(*v);
        return Status::ok();
      },
      description, "N", std::to_string(target));
}

}  // namespace

CLI::Option* add_unsigned_option(CLI::App* app, const std::string& names, std::uint32_t& target,
                                 std::uint64_t min, std::uint64_t max, const std::string& description) {
  TASKRING_ASSERT(max <= std::numeric_limits<std::uint32_t>::max());
  return add_unsigned_impl(app, names, target, min, max, description);
}

CLI::Option* add_unsigned_option(CLI::App* app, const std::string& names, std::uint64_t& target,
                                 std::uint64_t min, std::uint64_t max, const std::string& description) {
  return add_unsigned_impl(app, names, target, min, max, description);
}

CLI::Option* add_byte_size_option(CLI::App* app, const std::string& names, std::uint64_t& target,
                                  std::uint64_t max, const std::string& description) {
  return add_parsed_option(
      app, names, long_flag(names),
      [&target, max](std::string_view text) -> Status {
        auto v = parse_byte_size(text);
        if (!v) return v.status();
        if (*v > max) {
          return invalid_argument("'" + std::string(text) + "' (" + std::to_string(*v) +
                                  " bytes): must be at most " + std::to_string(max) + " bytes");
        }
        target = *v;
        return Status::ok();
      },
      description, "BYTES", byte_size_text(target));
}

CLI::Option* add_duration_option(CLI::App* app, const std::string& names, std::int64_t& target,
                                 std::int64_t min_ns, std::int64_t max_ns, const std::string& description) {
  return add_parsed_option(
      app, names, long_flag(names),
      [&target, min_ns, max_ns](std::string_view text) -> Status {
        auto v = parse_duration(text, max_ns);
        if (!v) return v.status();
        if (*v < min_ns) {
          return invalid_argument("'" + std::string(text) + "': must be at least " + duration_text(min_ns));
        }
        target = *v;
        return Status::ok();
      },
      description, "DURATION", duration_text(target));
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    out.emplace_back(text.substr(start, comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

CLI::Option* add_list_option(CLI::App* app, const std::string& names, std::vector<std::string>& target,
                             const std::string& description) {
  return app
      ->add_option_function<std::string>(
          names, [&target](const std::string& text) { target = split_list(text); }, description)
      ->type_name("NAME,...");
}

CLI::Option* add_segment_option(CLI::App* app, std::string& target) {
  return app
      ->add_option("-s,--segment", target,
                   "Name of the shared-memory segment (A-Z a-z 0-9 . _ -)")
      ->type_name("NAME")
      ->envname("TASKRING_SEGMENT")
      ->required();
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  std::uint64_t whole = bytes;
  while (whole >= 1024 && unit < 4) {
    whole /= 1024;
    ++unit;
  }
  if (unit == 0) return std::to_string(bytes) + " B";
  const double scaled = static_cast<double>(bytes) / static_cast<double>(std::uint64_t{1} << (10 * unit));
  char buf[32];
  if (scaled == std::floor(scaled)) {
    std::snprintf(buf, sizeof buf, "%.0f %s", scaled, kUnits[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", scaled, kUnits[unit]);
  }
  return buf;
}

std::string format_duration_ns(std::int64_t ns) {
  char buf[48];
  const char* sign = ns < 0 ? "-" : "";
  const double v = std::fabs(static_cast<double>(ns));
  if (v < 1e3) {
    std::snprintf(buf, sizeof buf, "%s%.0f ns", sign, v);
  } else if (v < 1e6) {
    std::snprintf(buf, sizeof buf, "%s%.1f us", sign, v / 1e3);
  } else if (v < 1e9) {
    std::snprintf(buf, sizeof buf, "%s%.2f ms", sign, v / 1e6);
  } else if (v < 60e9) {
    std::snprintf(buf, sizeof buf, "%s%.3f s", sign, v / 1e9);
  } else if (v < 3600e9) {
    const auto s = static_cast<long long>(v / 1e9);
    std::snprintf(buf, sizeof buf, "%s%lldm%02llds", sign, s / 60, s % 60);
  } else {
    const auto m = static_cast<long long>(v / 60e9);
    std::snprintf(buf, sizeof buf, "%s%lldh%02lldm", sign, m / 60, m % 60);
  }
  return buf;
}

std::string duration_text(std::int64_t ns) {
  if (ns == 0) return "0";
  std::string out = ns < 0 ? "-" : "";
  // Magnitude in unsigned: -INT64_MIN does not fit in int64.
  std::uint64_t left = ns < 0 ? 0 - static_cast<std::uint64_t>(ns) : static_cast<std::uint64_t>(ns);
  for (const DurationUnit& u : kDurationUnits) {
    const auto unit = static_cast<std::uint64_t>(u.ns);
    if (left >= unit) {
      out += std::to_string(left / unit);
      out += u.name;
      left %= unit;
    }
  }
  return out;
}

std::string escape_value(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\x";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  return out;
}

namespace {
std::int64_t now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

std::int64_t monotonic_now_ns() { return now_ns(CLOCK_MONOTONIC); }
std::int64_t realtime_now_ns() { return now_ns(CLOCK_REALTIME); }

}  // namespace taskring::cli
