#include "log_commands.h"

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "table.h"
#include "taskring/log.h"
#include "taskring/log_state.h"
#include "taskring/task.h"

namespace taskring::cli {
namespace {

using log::Record;
using log::RecordType;
using json = nlohmann::ordered_json;

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
constexpr long kTailPollNs = 100'000'000;  // tail looks for new records every 100 ms

// What the subcommands share; each uses the fields it has flags for.
struct LogCommand {
  std::string dir;
  std::uint64_t from = 0;   // 0: the start (dump), the end (tail)
  std::uint64_t limit = 0;  // 0: no limit
  std::array<bool, log::kRecordTypeCount> types{};  // all false: every type
  bool any_type_filter = false;
  bool json = false;
  bool bytes = false;
};

std::string json_text(const json& doc, int indent) {
  return doc.dump(indent, ' ', false, json::error_handler_t::replace);
}

// ---- flags ---------------------------------------------------------------------------

std::string type_names_list() {
  std::string out;
  for (int t = 1; t < log::kRecordTypeCount; ++t) {
    if (t != 1) out += ", ";
    out += log::record_type_name(static_cast<RecordType>(t));
  }
  return out;
}

void add_log_dir_option(CLI::App* sub, LogCommand& o) {
  add_parsed_option(
      sub, "-d,--log-dir", "--log-dir",
      [&o](std::string_view text) -> Status {
        if (text.empty()) return invalid_argument("'': must be the path of a log directory");
        o.dir = std::string(text);
        return Status::ok();
      },
      "The log directory (the sidecar's --log-dir)", "DIR")
      ->required();
}

void add_record_filter_options(CLI::App* sub, LogCommand& o, bool tail) {
  add_unsigned_option(sub, "--from", o.from, 1, kU64Max,
                      tail ? "Start at this sequence number (default: after the last record now in the log)"
                           : "Start at this sequence number (default: the first record)")
      ->default_str("");
  add_unsigned_option(sub, "-n,--limit", o.limit, 1, kU64Max,
                      tail ? "Exit after printing N records (default: run until SIGINT or SIGTERM)"
                           : "Print at most N records (default: all)")
      ->default_str("");
  add_parsed_option(
      sub, "-t,--type", "--type",
      [&o](std::string_view text) -> Status {
        std::array<bool, log::kRecordTypeCount> chosen{};
        for (const std::string& name : split_list(text)) {
          int found = 0;
          for (int t = 1; t < log::kRecordTypeCount; ++t) {
            if (log::record_type_name(static_cast<RecordType>(t)) == name) found = t;
          }
          if (found == 0) {
            return invalid_argument("'" + name + "': must be a record type: " + type_names_list() +
                                    " (several separated by commas)");
          }
          chosen[static_cast<std::size_t>(found)] = true;
        }
        o.types = chosen;
        o.any_type_filter = true;
        return Status::ok();
      },
      "Only records of these types, comma-separated (e.g. submitted,failed)", "TYPE,...");
  sub->add_flag("--json", o.json, "One JSON object per record and line");
  sub->add_flag("--bytes", o.bytes,
                "Include payloads and results themselves, escaped (text) or base64 (--json), not just their sizes");
}

// ---- one record, for people and for machines --------------------------------------------

// "2025-01-01T00:00:00.000000123Z" (UTC), or "-" for 0.
std::string wall_text(std::int64_t ns) {
  if (ns == 0) return "-";
  std::int64_t sec = ns / 1'000'000'000;
  std::int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --sec;
  }
  const auto t = static_cast<time_t>(sec);
  tm parts{};
  if (gmtime_r(&t, &parts) == nullptr) return std::to_string(ns) + "ns";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", parts.tm_year + 1900, parts.tm_mon + 1,
                parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, static_cast<long long>(frac));
  return buf;
}

// Types whose task_id and state_word describe a task.
bool about_a_task(RecordType t) {
  return t != RecordType::kSegmentAttached && t != RecordType::kResyncBegin && t != RecordType::kResyncEnd;
}

// The state field of a state word (bits 0..3; 6 is the engine's "reserved").
std::string state_text(std::uint64_t word) {
  const std::uint64_t s = word & 0xF;
  if (s < static_cast<std::uint64_t>(kTaskStateCount)) return std::string(state_name(static_cast<TaskState>(s)));
  if (s == 6) return "reserved";
  return "state" + std::to_string(s);
}
std::uint64_t attempts_of(std::uint64_t word) { return (word >> 16) & 0xFF; }

// The name of `aux` for the types where it is a reason; empty otherwise.
std::string reason_text(const Record& r) {
  static constexpr std::string_view kRequeue[] = {"", "retry", "crash", "audit", "manual"};
  static constexpr std::string_view kFree[] = {"", "consumed", "released", "expired", "purged", "withdrawn",
                                               "slot_free"};
  static constexpr std::string_view kResync[] = {"", "start", "dropped", "hole", "compaction"};
  auto pick = [&r](const auto& names) {
    const std::size_t n = std::size(names);
    if (r.aux >= 1 && r.aux < n) return std::string(names[r.aux]);
    return "unknown(" + std::to_string(r.aux) + ")";
  };
  switch (r.type) {
    case RecordType::kRequeued: return pick(kRequeue);
    case RecordType::kFreed: return pick(kFree);
    case RecordType::kResyncBegin: return pick(kResync);
    default: return {};
  }
}

std::string priority_text(std::uint8_t p) {
  if (p < kPriorityCount) return std::string(priority_name(static_cast<Priority>(p)));
  return std::to_string(p);
}

// escape_value, with double quotes escaped too, inside double quotes.
std::string quoted_bytes(std::string_view bytes) {
  std::string out = "\"";
  for (const char c : escape_value(bytes)) {
    if (c == '"') {
      out += "\\x22";
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                            static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                            static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (const std::size_t rest = bytes.size() - i; rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// One line: seq, time, type, then key=value fields: epoch, task, state, what
// aux means for the type, and the sizes of what the record carries.
std::string record_line(const Record& r, bool with_bytes) {
  std::string line = std::to_string(r.seq) + " " + wall_text(r.wall_ns) + " " +
                     std::string(log::record_type_name(r.type)) + " epoch=" + std::to_string(r.epoch);
  if (about_a_task(r.type)) {
    line += " task=" + std::to_string(r.task_id) + " state=" + state_text(r.state_word) +
            " attempts=" + std::to_string(attempts_of(r.state_word));
  }
  line += " pid=" + std::to_string(r.pid);
  switch (r.type) {
    case RecordType::kSegmentAttached: line += " slots=" + std::to_string(r.aux); break;
    case RecordType::kStarted: line += " worker=" + std::to_string(r.aux); break;
    case RecordType::kRequeued:
    case RecordType::kFreed: line += " reason=" + reason_text(r); break;
    case RecordType::kResyncBegin:
      line += " reason=" + reason_text(r) + " dropped=" + std::to_string(r.state_word);
      break;
    case RecordType::kResyncEnd: line += " tasks=" + std::to_string(r.aux); break;
    default:
      if (r.aux != 0) line += " aux=" + std::to_string(r.aux);
      break;
  }
  if (r.spec) {
    const log::TaskSpec& s = *r.spec;
    line += " queue=" + quoted_bytes(s.queue) + " name=" + quoted_bytes(s.name) +
            " priority=" + priority_text(s.priority);
    if (s.max_attempts != 0) line += " max_attempts=" + std::to_string(s.max_attempts);
    if (s.max_crashes != 0) line += " max_crashes=" + std::to_string(s.max_crashes);
    if (s.detached) line += " detached";
    if (s.time_limit_ms != 0) line += " time_limit=" + std::to_string(s.time_limit_ms) + "ms";
    if (s.run_at_wall_ns != 0) line += " run_at=" + wall_text(s.run_at_wall_ns);
  }
  if (r.payload_missing) {
    line += " payload=missing";
  } else if (r.spec) {
    line += " payload=" + std::to_string(r.spec->payload.size()) + "B";
    if (with_bytes) line += " " + quoted_bytes(r.spec->payload);
  }
  if (r.result_missing) {
    line += " result=missing";
  } else if (r.result) {
    line += " result=" + std::to_string(r.result->size()) + "B";
    if (with_bytes) line += " " + quoted_bytes(*r.result);
  }
  if (!r.text.empty()) line += " text=" + quoted_bytes(r.text);
  if (r.other_epoch != 0 || r.other_id != 0) {
    line += " from_epoch=" + std::to_string(r.other_epoch) + " from_task=" + std::to_string(r.other_id);
  }
  line.push_back('\n');
  return line;
}

json record_json(const Record& r, bool with_bytes) {
  json j = {{"seq", r.seq},
            {"wall_ns", r.wall_ns},
            {"time", wall_text(r.wall_ns)},
            {"type", std::string(log::record_type_name(r.type))},
            {"epoch", r.epoch},
            {"task_id", std::to_string(r.task_id)},
            {"state_word", r.state_word}};
  if (about_a_task(r.type)) {
    j["state"] = state_text(r.state_word);
    j["attempts"] = attempts_of(r.state_word);
  }
  j["pid"] = r.pid;
  j["aux"] = r.aux;
  if (const std::string reason = reason_text(r); !reason.empty()) j["reason"] = reason;
  if (r.spec) {
    const log::TaskSpec& s = *r.spec;
    json spec = {{"queue", s.queue},
                 {"name", s.name},
                 {"priority", priority_text(s.priority)},
                 {"max_attempts", s.max_attempts},
                 {"max_crashes", s.max_crashes},
                 {"detached", s.detached},
                 {"time_limit_ms", s.time_limit_ms},
                 {"run_at_wall_ns", s.run_at_wall_ns},
                 {"payload_bytes", s.payload.size()}};
    if (with_bytes) spec["payload_base64"] = base64(s.payload);
    j["spec"] = std::move(spec);
  } else {
    j["spec"] = nullptr;
  }
  j["result_bytes"] = r.result ? json(r.result->size()) : json(nullptr);
  if (with_bytes) j["result_base64"] = r.result ? json(base64(*r.result)) : json(nullptr);
  j["payload_missing"] = r.payload_missing;
  j["result_missing"] = r.result_missing;
  j["text"] = r.text;
  j["other_epoch"] = r.other_epoch;
  j["other_id"] = std::to_string(r.other_id);
  return j;
}

// Prints the records that pass the type filter; counts them; false once
// --limit is reached.
class RecordPrinter {
 public:
  explicit RecordPrinter(const LogCommand& o) : o_(o) {}
  bool print(const Record& r) {
    if (o_.any_type_filter && !o_.types[static_cast<std::size_t>(r.type)]) return true;
    const std::string line = o_.json ? json_text(record_json(r, o_.bytes), -1) + "\n" : record_line(r, o_.bytes);
    std::fputs(line.c_str(), stdout);
    ++printed_;
    return o_.limit == 0 || printed_ < o_.limit;
  }
  std::uint64_t printed() const { return printed_; }

 private:
  const LogCommand& o_;
  std::uint64_t printed_ = 0;
};

std::string torn_tail_text(const log::ReadReport& r) {
  return r.tail_file + " ends in a torn record at offset " + std::to_string(r.tail_offset) + " (" +
         std::to_string(r.tail_bytes) + " bytes): " + r.tail_reason;
}

constexpr std::string_view kTornHint =
    "a crash cut the last record short; the sidecar truncates the file there when it next opens the log "
    "(nothing was changed: these tools only read)";

// ---- dump ---------------------------------------------------------------------------

int run_dump(const LogCommand& o) {
  RecordPrinter printer(o);
  Result<log::ReadReport> r = log::read_log(o.dir, [&](const Record& rec) { return printer.print(rec); }, o.from);
  std::fflush(stdout);
  if (!r) return report(r.status(), "log dump");
  if (r->torn_tail && (o.limit == 0 || printer.printed() < o.limit)) {
    std::fputs(("warning: " + torn_tail_text(*r) + "\nhint: " + std::string(kTornHint) + "\n").c_str(), stderr);
  }
  return kExitOk;
}

// ---- tail ---------------------------------------------------------------------------

volatile std::sig_atomic_t g_tail_stop = 0;

extern "C" void on_tail_signal(int sig) { g_tail_stop = sig; }

int run_tail(const LogCommand& o) {
  Result<log::LogFollower> follower = log::LogFollower::open(o.dir, o.from);
  if (!follower) return report(follower.status(), "log tail");
  // No SA_RESTART: the signal cuts the sleep short. SA_RESETHAND: a second
  // one ends the process the usual way.
  struct sigaction sa {};
  sa.sa_handler = on_tail_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const std::uint64_t start = o.from != 0 ? std::max(o.from, follower->next_seq()) : follower->next_seq();
  std::fprintf(stderr, "following %s from seq %llu (SIGINT or SIGTERM stops)\n", o.dir.c_str(),
               static_cast<unsigned long long>(start));
  RecordPrinter printer(o);
  bool done = false;
  while (!done && g_tail_stop == 0) {
    Result<std::uint64_t> n = follower->poll([&](const Record& r) {
      done = !printer.print(r);
      return !done;
    });
    std::fflush(stdout);
    if (!n) return report(n.status(), "log tail");
    if (done) break;
    timespec pause{0, kTailPollNs};
    while (g_tail_stop == 0 && nanosleep(&pause, &pause) != 0 && errno == EINTR) {
    }
  }
  return kExitOk;
}

// ---- verify -------------------------------------------------------------------------

std::uint64_t records_in(const log::FileInfo& f) { return f.last_seq + 1 - f.first_seq; }

std::string file_name_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

json files_json(const std::vector<log::FileInfo>& files) {
  json out = json::array();
  for (const log::FileInfo& f : files) {
    out.push_back({{"path", f.path},
                   {"first_seq", f.first_seq},
                   {"last_seq", f.last_seq},
                   {"records", records_in(f)},
                   {"bytes", f.bytes}});
  }
  return out;
}

std::string files_table(const std::vector<log::FileInfo>& files) {
  Table t({"FILE", "FIRST SEQ", "LAST SEQ", "RECORDS", "BYTES"}, "lrrrr");
  for (const log::FileInfo& f : files) {
    t.add({file_name_of(f.path), std::to_string(f.first_seq), records_in(f) == 0 ? "-" : std::to_string(f.last_seq),
           std::to_string(records_in(f)), format_bytes(f.bytes)});
  }
  return t.render();
}

std::uint64_t total_bytes(const std::vector<log::FileInfo>& files) {
  std::uint64_t n = 0;
  for (const log::FileInfo& f : files) n += f.bytes;
  return n;
}

std::string seq_range(const log::ReadReport& r) {
  if (r.records == 0) return "no records";
  return std::to_string(r.records) + (r.records == 1 ? " record" : " records") + ", seq " +
         std::to_string(r.first_seq) + " .. " + std::to_string(r.last_seq);
}

json torn_json(const log::ReadReport& r) {
  if (!r.torn_tail) return nullptr;
  return {{"file", r.tail_file}, {"offset", r.tail_offset}, {"bytes", r.tail_bytes}, {"reason", r.tail_reason}};
}

int run_verify(const LogCommand& o) {
  std::uint64_t good = 0;
  std::uint64_t last_good = 0;
  Result<log::ReadReport> r = log::read_log(o.dir, [&](const Record& rec) {
    ++good;
    last_good = rec.seq;
    return true;
  });
  if (!r) {
    const Status& s = r.status();
    if (o.json && s.code() == StatusCode::kDataLoss) {
      const json doc = {{"log_dir", o.dir},       {"ok", false},       {"error", s.message()},
                        {"records_before", good}, {"last_good_seq", last_good}};
      std::fputs((json_text(doc, 2) + "\n").c_str(), stdout);
    }
    if (s.code() != StatusCode::kDataLoss) return report(s, "log verify");
    return report(s, "log verify",
                  std::to_string(good) + " records before it check out" +
                      (good == 0 ? std::string() : " (up to seq " + std::to_string(last_good) + ")") +
                      "; the sidecar will not open the log either until it is restored or repaired by hand");
  }
  const log::ReadReport& rep = *r;
  if (o.json) {
    const json doc = {{"log_dir", o.dir},
                      {"ok", !rep.torn_tail},
                      {"files", files_json(rep.files)},
                      {"bytes", total_bytes(rep.files)},
                      {"records", rep.records},
                      {"first_seq", rep.first_seq},
                      {"last_seq", rep.last_seq},
                      {"torn_tail", torn_json(rep)}};
    std::fputs((json_text(doc, 2) + "\n").c_str(), stdout);
  } else {
    std::string out = "log " + o.dir + ": " + std::to_string(rep.files.size()) +
                      (rep.files.size() == 1 ? " file, " : " files, ") + format_bytes(total_bytes(rep.files)) + ", " +
                      seq_range(rep) + "\n";
    if (!rep.files.empty()) out += "\n" + files_table(rep.files) + "\n";
    out += rep.torn_tail ? "every record before the torn tail checks out (CRC and sequence)\n"
                         : "ok: every record's CRC and sequence number check out\n";
    std::fputs(out.c_str(), stdout);
  }
  std::fflush(stdout);
  if (rep.torn_tail) {
    print_error("log verify", "torn tail: " + torn_tail_text(rep), kTornHint);
    return kExitFailure;
  }
  return kExitOk;
}

// ---- stats --------------------------------------------------------------------------

int run_stats(const LogCommand& o) {
  log::LogState state;
  Result<log::ReadReport> r = log::read_log(o.dir, [&](const Record& rec) {
    state.apply(rec);
    return true;
  });
  if (!r) return report(r.status(), "log stats");
  const log::ReadReport& rep = *r;
  const log::StateCounts c = state.counts();
  if (o.json) {
    json by_type = json::object();
    for (int t = 1; t < log::kRecordTypeCount; ++t) {
      by_type[std::string(log::record_type_name(static_cast<RecordType>(t)))] = c.by_type[t];
    }
    const json doc = {{"log_dir", o.dir},
                      {"files", files_json(rep.files)},
                      {"bytes", total_bytes(rep.files)},
                      {"records", rep.records},
                      {"first_seq", rep.first_seq},
                      {"last_seq", rep.last_seq},
                      {"by_type", by_type},
                      {"invalid", c.invalid},
                      {"stale_ignored", c.stale_ignored},
                      {"epochs", c.epochs},
                      {"epochs_unattached", c.epochs_unattached},
                      {"last_epoch", state.last_epoch()},
                      {"last_segment", state.last_segment()},
                      {"live",
                       {{"pending", c.live_pending},
                        {"running", c.live_running},
                        {"succeeded", c.live_succeeded},
                        {"failed", c.live_failed},
                        {"cancelled", c.live_cancelled}}},
                      {"torn_tail", torn_json(rep)}};
    std::fputs((json_text(doc, 2) + "\n").c_str(), stdout);
  } else {
    std::string out = "log        " + o.dir + ": " + std::to_string(rep.files.size()) +
                      (rep.files.size() == 1 ? " file, " : " files, ") + format_bytes(total_bytes(rep.files)) + ", " +
                      seq_range(rep) + "\n";
    out += "segments   ";
    if (state.last_epoch() == 0) {
      out += "none attached";
    } else {
      out += "last '" + escape_value(state.last_segment()) + "' (epoch " + std::to_string(state.last_epoch()) +
             "); " + std::to_string(c.epochs) + (c.epochs == 1 ? " epoch" : " epochs") + " attached";
    }
    if (c.epochs_unattached != 0) {
      out += ", " + std::to_string(c.epochs_unattached) + " with records but no segment_attached";
    }
    out += "\n";
    out += "live tasks pending " + std::to_string(c.live_pending) + ", running " + std::to_string(c.live_running) +
           ", succeeded " + std::to_string(c.live_succeeded) + ", failed " + std::to_string(c.live_failed) +
           ", cancelled " + std::to_string(c.live_cancelled) + "\n";
    out += "ignored    " + std::to_string(c.stale_ignored) + " stale (changed nothing), " + std::to_string(c.invalid) +
           " invalid\n\n";
    Table types({"TYPE", "RECORDS"}, "lr");
    for (int t = 1; t < log::kRecordTypeCount; ++t) {
      types.add({std::string(log::record_type_name(static_cast<RecordType>(t))), std::to_string(c.by_type[t])});
    }
    out += types.render();
    if (!rep.files.empty()) out += "\n" + files_table(rep.files);
    std::fputs(out.c_str(), stdout);
  }
  std::fflush(stdout);
  if (rep.torn_tail) {
    std::fputs(("warning: " + torn_tail_text(rep) + "\nhint: " + std::string(kTornHint) + "\n").c_str(), stderr);
  }
  return kExitOk;
}

}  // namespace

void add_log_commands(CLI::App& app, Action& action) {
  CLI::App* group = app.add_subcommand(
      "log", "Read the durable log the sidecar writes: dump, tail, verify or count its records (read-only)");
  group->require_subcommand(1);
  group->footer("Run 'taskring log COMMAND --help' for a command's flags. Documentation: docs/cli.md\n");
  {
    auto o = std::make_shared<LogCommand>();
    CLI::App* sub = group->add_subcommand("dump", "Print records, one per line, in sequence order");
    add_log_dir_option(sub, *o);
    add_record_filter_options(sub, *o, false);
    sub->callback([&action, o] { action = [o] { return run_dump(*o); }; });
  }
  {
    auto o = std::make_shared<LogCommand>();
    CLI::App* sub = group->add_subcommand(
        "tail", "Print records as the sidecar appends them, across file rotation, until SIGINT or SIGTERM");
    add_log_dir_option(sub, *o);
    add_record_filter_options(sub, *o, true);
    sub->callback([&action, o] { action = [o] { return run_tail(*o); }; });
  }
  {
    auto o = std::make_shared<LogCommand>();
    CLI::App* sub = group->add_subcommand(
        "verify", "Read every record and check its CRC and sequence number; exit 1 on any damage");
    add_log_dir_option(sub, *o);
    sub->add_flag("--json", o->json, "Print one JSON document");
    sub->callback([&action, o] { action = [o] { return run_verify(*o); }; });
  }
  {
    auto o = std::make_shared<LogCommand>();
    CLI::App* sub = group->add_subcommand(
        "stats", "Count files, bytes and records by type, and the tasks the log leaves live, by state");
    add_log_dir_option(sub, *o);
    sub->add_flag("--json", o->json, "Print one JSON document");
    sub->callback([&action, o] { action = [o] { return run_stats(*o); }; });
  }
}

}  // namespace taskring::cli
