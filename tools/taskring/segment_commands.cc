#include "segment_commands.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sidecar.h"
#include "table.h"
#include "taskring/admin.h"
#include "taskring/options.h"
#include "taskring/recovery.h"
#include "taskring/status.h"

namespace taskring::cli {
namespace {

constexpr std::uint64_t kU32Max = std::numeric_limits<std::uint32_t>::max();
// The longest --result-ttl: a year. Longer is surely a slip (0 keeps results
// until they are read).
constexpr std::int64_t kMaxResultTtlNs = 365 * 86'400'000'000'000;

struct InitOptions {
  std::string segment;
  EngineConfig config;
  std::vector<std::string> queues;
  std::uint64_t max_payload = EngineConfig{}.max_payload;
  std::uint64_t payload_area = EngineConfig{}.payload_area;
  std::uint64_t mode = EngineConfig{}.mode;
  std::int64_t result_ttl_ns = static_cast<std::int64_t>(EngineConfig{}.result_ttl_ns);
  bool force = false;
};

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i != 0) out.append(sep);
    out.append(items[i]);
  }
  return out;
}

std::string octal(unsigned mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", mode);
  return buf;
}

std::string describe_config(const EngineConfig& c) {
  return "journal " + std::string(journal_mode_name(c.journal)) +
         (c.journal == JournalMode::kOff ? std::string() : " (" + std::to_string(c.journal_capacity) + " events)") +
         ", slots " + std::to_string(c.slots) + ", ring capacity " + std::to_string(c.ring_capacity) +
         ", max payload " + format_bytes(c.max_payload) + ", payload area " + format_bytes(c.payload_area) +
         ", max workers " + std::to_string(c.max_workers) + ", deque capacity " +
         std::to_string(c.deque_capacity) + ", mode " + octal(c.mode) + ", result ttl " +
         (c.result_ttl_ns == 0 ? std::string("0 (kept until read)")
                               : duration_text(static_cast<std::int64_t>(
                                     std::min<std::uint64_t>(c.result_ttl_ns, INT64_MAX))));
}

int run_init(InitOptions& o) {
  EngineConfig& c = o.config;
  if (!o.queues.empty()) c.queues = o.queues;
  c.max_payload = static_cast<std::uint32_t>(o.max_payload);  // bounded by the option's check
  c.payload_area = o.payload_area;
  c.mode = static_cast<unsigned>(o.mode);
  c.result_ttl_ns = static_cast<std::uint64_t>(o.result_ttl_ns);  // 0 .. kMaxResultTtlNs
  if (const Status s = c.validate(); !s.is_ok()) {
    // validate() names the field ("ring_capacity 3: ..."); name the flag too.
    const std::string_view flag = flag_for_message(s.message(),
                                                   {{"slots", "--slots"},
                                                    {"queues", "--queues"},
                                                    {"queue name", "--queues"},
                                                    {"ring_capacity", "--ring-capacity"},
                                                    {"max_payload", "--max-payload"},
                                                    {"payload_area", "--payload-area"},
                                                    {"max_workers", "--max-workers"},
                                                    {"deque_capacity", "--deque-capacity"},
                                                    {"mode", "--mode"},
                                                    {"journal_capacity", "--journal-capacity"},
                                                    {"journal", "--journal"}},
                                                   "init");
    return report(s, flag, "run 'taskring init --help' for the defaults");
  }
  if (const Status s = create_segment(o.segment, c, o.force); !s.is_ok()) {
    return report(s, "init");
  }
  std::string line = "created segment '" + o.segment + "'";
  if (auto snap = read_snapshot(o.segment); snap.is_ok()) {
    line += " (" + format_bytes(snap->size_bytes) + ")";
  }
  line += ": queues " + join(c.queues, ",") + "; " + describe_config(c) + "\n";
  std::fputs(line.c_str(), stdout);
  return kExitOk;
}

int run_destroy(const std::string& segment) {
  if (const Status s = destroy_segment(segment); !s.is_ok()) return report(s, "destroy");
  std::printf("destroyed segment '%s'\n", segment.c_str());
  return kExitOk;
}

int run_drain(const std::string& segment) {
  // Counted first, for the message: the workers a drain reaches are those
  // attached when it is made.
  Result<SegmentSnapshot> before = read_snapshot(segment);
  if (const Status s = drain_segment(segment); !s.is_ok()) return report(s, "drain");
  std::string who = "the workers attached now";
  if (before.is_ok()) {
    std::size_t n = 0;
    for (const WorkerSnapshot& w : before->workers) {
      if (w.alive && w.state != WorkerState::kStopped) ++n;
    }
    who = std::to_string(n) + (n == 1 ? " worker attached now" : " workers attached now");
  }
  std::printf("drained segment '%s': %s stop claiming, finish their running task and exit; pending tasks stay "
              "queued, and workers that attach later run normally\n",
              segment.c_str(), who.c_str());
  return kExitOk;
}

struct RecoverCommand {
  std::string segment;
  std::string log_dir;
  bool no_audit = false;
  bool json = false;
};

// `recover --log-dir`: puts the live tasks that the log holds for earlier
// segments back into this one (the sidecar does the same at start).
int run_log_recover(const RecoverCommand& o) {
  sidecar::SidecarOptions options;
  options.segment = o.segment;
  options.log_dir = o.log_dir;
  sidecar::StartReport started;
  auto restored = sidecar::recover_from_log(options, &started);
  if (!restored) {
    return report(restored.status(), "recover --log-dir",
                  "the segment needs a journal (taskring init --journal durable), and no sidecar may be running on it");
  }
  const LogRestoreReport& r = *restored;
  if (o.json) {
    nlohmann::ordered_json mapping = nlohmann::ordered_json::array();
    for (const auto& [from, to] : r.mapping) mapping.push_back({{"old_id", from}, {"new_id", to}});
    nlohmann::ordered_json doc = {{"segment", o.segment},
                                  {"log_dir", o.log_dir},
                                  {"log_records", started.read.records},
                                  {"torn_tail_bytes_cut", started.repair.truncated ? started.repair.bytes_dropped : 0},
                                  {"resubmitted", r.resubmitted},
                                  {"results_restored", r.results_restored},
                                  {"expired", r.expired},
                                  {"skipped", r.skipped},
                                  {"problems", r.problems},
                                  {"tasks", mapping}};
    std::fputs((doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n").c_str(), stdout);
    return kExitOk;
  }
  std::string out = "replayed log " + o.log_dir + " (" + std::to_string(started.read.records) + " records) into segment '" +
                    o.segment + "': " + std::to_string(r.resubmitted) + " tasks resubmitted, " +
                    std::to_string(r.results_restored) + " results restored, " + std::to_string(r.expired) +
                    " expired, " + std::to_string(r.skipped) + " skipped\n";
  if (started.repair.truncated) {
    out += "repaired: cut " + std::to_string(started.repair.bytes_dropped) + " bytes of a torn tail from " +
           started.repair.file + " at offset " + std::to_string(started.repair.offset) + ": " + started.repair.reason +
           "\n";
  }
  for (const std::string& p : r.problems) out += "skipped: " + p + "\n";
  for (const auto& [from, to] : r.mapping) out += std::to_string(from) + " -> " + std::to_string(to) + "\n";
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

int run_recover(const RecoverCommand& o) {
  if (!o.log_dir.empty()) return run_log_recover(o);
  RecoverOptions options;
  options.audit = !o.no_audit;
  options.relink_free_slots = !o.no_audit;
  Result<RecoveryReport> recovered = recover(o.segment, options);
  if (!recovered) return report(recovered.status(), "recover");
  const RecoveryReport& r = *recovered;
  struct Row {
    const char* key;    // the JSON key, the RecoveryReport field
    const char* label;  // the text table's
    std::uint64_t value;
    bool audit;         // found only by the audits
  };
  const Row rows[] = {
      {"workers_recovered", "dead workers settled", r.workers_recovered, false},
      {"tasks_requeued", "running tasks requeued", r.tasks_requeued, false},
      {"tasks_failed", "running tasks failed for good", r.tasks_failed, false},
      {"deque_tasks_returned", "claimed tasks returned to their queues", r.deque_tasks_returned, false},
      {"reserved_slots_freed", "half-submitted slots freed", r.reserved_slots_freed, false},
      {"results_expired", "unread results expired", r.results_expired, false},
      {"lost_tasks_requeued", "lost pending tasks requeued (audit)", r.lost_tasks_requeued, true},
      {"lost_refs_dropped", "lost ring references dropped (audit)", r.lost_refs_dropped, true},
      {"free_slots_relinked", "free slots relinked (audit)", r.free_slots_relinked, true},
  };
  if (o.json) {
    nlohmann::ordered_json doc = {{"segment", o.segment}, {"audit", !o.no_audit}};
    for (const Row& row : rows) doc[row.key] = row.value;
    doc["total"] = r.total();
    const std::string text = doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    std::fputs(text.c_str(), stdout);
    return kExitOk;
  }
  std::string out = "recovered segment '" + o.segment + "': ";
  out += r.total() == 0 ? std::string("nothing to do") : std::to_string(r.total()) + " repairs";
  out += o.no_audit ? " (audits skipped: --no-audit)\n\n" : "\n\n";
  Table table({"WHAT", "COUNT"}, "lr");
  for (const Row& row : rows) {
    table.add({row.label, row.audit && o.no_audit ? "-" : std::to_string(row.value)});
  }
  out += table.render();
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

std::string cpu_text(int cpu) { return cpu < 0 ? "-" : std::to_string(cpu); }

nlohmann::ordered_json snapshot_json(const SegmentSnapshot& s) {
  using json = nlohmann::ordered_json;
  const EngineConfig& c = s.config;
  json tasks = json::object();
  for (int i = 0; i < kTaskStateCount; ++i) {
    tasks[std::string(state_name(static_cast<TaskState>(i)))] = s.tasks_by_state[i];
  }
  json queues = json::array();
  for (const QueueSnapshot& q : s.queues) {
    json depth = json::object();
    for (int p = 0; p < kPriorityCount; ++p) {
      depth[std::string(priority_name(static_cast<Priority>(p)))] = q.depth[p];
    }
    queues.push_back({{"name", q.name},
                      {"depth", depth},
                      {"submitted", q.submitted},
                      {"claimed", q.claimed},
                      {"succeeded", q.succeeded},
                      {"failed", q.failed},
                      {"cancelled", q.cancelled},
                      {"retried", q.retried}});
  }
  json workers = json::array();
  for (const WorkerSnapshot& w : s.workers) {
    workers.push_back({{"index", w.index},
                       {"pid", w.pid},
                       {"cpu", w.cpu},
                       {"state", std::string(worker_state_name(w.state))},
                       {"alive", w.alive},
                       {"heartbeat_age_ns", w.heartbeat_age_ns},
                       {"deque_depth", w.deque_depth},
                       {"queues", w.queues},
                       {"claimed", w.claimed},
                       {"succeeded", w.succeeded},
                       {"failed", w.failed},
                       {"cancelled", w.cancelled},
                       {"retried", w.retried},
                       {"stolen", w.stolen},
                       {"parks", w.parks}});
  }
  return {{"segment", s.name},
          {"layout_version", s.layout_version},
          {"size_bytes", s.size_bytes},
          {"creator_uid", s.creator_uid},
          {"creator_pid", s.creator_pid},
          {"created_unix_ns", s.created_unix_ns},
          {"closing", s.closing},
          {"config",
           {{"slots", c.slots},
            {"queues", c.queues},
            {"ring_capacity", c.ring_capacity},
            {"max_payload", c.max_payload},
            {"payload_area", c.payload_area},
            {"max_workers", c.max_workers},
            {"deque_capacity", c.deque_capacity},
            {"mode", octal(c.mode)},
            {"result_ttl_ns", c.result_ttl_ns},
            {"journal", std::string(journal_mode_name(c.journal))},
            {"journal_capacity", c.journal_capacity}}},
          {"journal",
           {{"written", s.journal.written},
            {"read", s.journal.read},
            {"durable", s.journal.durable},
            {"dropped", s.journal.dropped},
            {"lost", s.journal.lost},
            {"sidecar_pid", s.journal.sidecar_pid},
            {"sidecar_alive", s.journal.sidecar_alive},
            {"sidecar_heartbeat_age_ns", s.journal.sidecar_heartbeat_age_ns}}},
          {"tasks", tasks},
          {"free_slots", s.free_slots},
          {"payload_area_used_bytes", s.payload_area_used_bytes},
          {"recovery",
           {{"workers_recovered", s.workers_recovered},
            {"tasks_recovered", s.tasks_recovered},
            {"lost_tasks_found", s.lost_tasks_found}}},
          {"queues", queues},
          {"workers", workers}};
}

void print_snapshot(const SegmentSnapshot& s) {
  std::string out;
  const std::int64_t age = realtime_now_ns() - s.created_unix_ns;
  out += "segment    " + s.name + " (layout " + std::to_string(s.layout_version) + ", " +
         format_bytes(s.size_bytes) + ", created " + format_duration_ns(age) + " ago by pid " +
         std::to_string(s.creator_pid) + ", uid " + std::to_string(s.creator_uid) + ")\n";
  out += std::string("state      ") + (s.closing ? "closing" : "open") + "\n";
  out += "config     queues " + join(s.config.queues, ",") + "; " + describe_config(s.config) + "\n";
  out += "tasks     ";
  for (int i = 1; i < kTaskStateCount; ++i) {
    out += std::string(i == 1 ? " " : ", ") + std::string(state_name(static_cast<TaskState>(i))) + " " +
           std::to_string(s.tasks_by_state[i]);
  }
  out += "; free slots " + std::to_string(s.free_slots) + "\n";
  out += "payloads   " + format_bytes(s.payload_area_used_bytes) + " of " + format_bytes(s.config.payload_area) +
         " in use\n";
  out += "recovery   dead workers " + std::to_string(s.workers_recovered) +
         ", their running tasks requeued or failed " + std::to_string(s.tasks_recovered) +
         ", lost tasks found by the audit " + std::to_string(s.lost_tasks_found) + "\n";
  if (s.config.journal != JournalMode::kOff) {
    const auto& j = s.journal;
    out += "journal    " + std::to_string(j.written) + " events, " + std::to_string(j.written - std::min(j.read, j.written)) +
           " not yet read, " + std::to_string(j.read - std::min(j.durable, j.read)) + " read but not durable; dropped " +
           std::to_string(j.dropped) + ", lost " + std::to_string(j.lost) + "; sidecar " +
           (j.sidecar_pid == 0 ? std::string("none")
                               : "pid " + std::to_string(j.sidecar_pid) + (j.sidecar_alive ? "" : " (dead)") +
                                     ", heartbeat " + format_duration_ns(j.sidecar_heartbeat_age_ns) + " ago") +
           "\n";
  }
  out += "\n";

  Table queues({"QUEUE", "CRITICAL", "HIGH", "NORMAL", "LOW", "SUBMITTED", "CLAIMED", "SUCCEEDED", "FAILED",
                "CANCELLED", "RETRIED"},
               "lrrrrrrrrrr");
  for (const QueueSnapshot& q : s.queues) {
    queues.add({q.name, std::to_string(q.depth[0]), std::to_string(q.depth[1]), std::to_string(q.depth[2]),
                std::to_string(q.depth[3]), std::to_string(q.submitted), std::to_string(q.claimed),
                std::to_string(q.succeeded), std::to_string(q.failed), std::to_string(q.cancelled),
                std::to_string(q.retried)});
  }
  out += queues.render();
  out += "\n";

  if (s.workers.empty()) {
    out += "no workers attached\n";
  } else {
    Table workers({"WORKER", "PID", "CPU", "STATE", "ALIVE", "HEARTBEAT", "DEQUE", "CLAIMED", "SUCCEEDED",
                   "FAILED", "CANCELLED", "RETRIED", "STOLEN", "PARKS", "QUEUES"},
                  "rrrllrrrrrrrrrl");
    for (const WorkerSnapshot& w : s.workers) {
      workers.add({std::to_string(w.index), std::to_string(w.pid), cpu_text(w.cpu),
                   std::string(worker_state_name(w.state)), w.alive ? "yes" : "no",
                   format_duration_ns(w.heartbeat_age_ns), std::to_string(w.deque_depth),
                   std::to_string(w.claimed), std::to_string(w.succeeded), std::to_string(w.failed),
                   std::to_string(w.cancelled), std::to_string(w.retried), std::to_string(w.stolen),
                   std::to_string(w.parks),
                   w.queues.empty() ? "(all)" : join(w.queues, ",")});
    }
    out += workers.render();
  }
  std::fputs(out.c_str(), stdout);
}

int run_status(const std::string& segment, bool json) {
  auto snap = read_snapshot(segment);
  if (!snap) return report(snap.status(), "status");
  if (json) {
    const std::string text =
        snapshot_json(*snap).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    std::fputs(text.c_str(), stdout);
  } else {
    print_snapshot(*snap);
  }
  return kExitOk;
}

}  // namespace

void add_segment_commands(CLI::App& app, Action& action) {
  {
    auto o = std::make_shared<InitOptions>();
    CLI::App* sub = app.add_subcommand("init", "Create a segment (validates every size first)");
    add_segment_option(sub, o->segment);
    add_unsigned_option(sub, "--slots", o->config.slots, 0, kU32Max,
                        "Task slots: tasks in flight plus unread results");
    add_list_option(sub, "-q,--queues", o->queues, "Comma-separated queue names, in order; the first is the default")
        ->default_str(join(o->config.queues, ","));
    add_unsigned_option(sub, "--ring-capacity", o->config.ring_capacity, 0, kU32Max,
                        "Ring entries per queue and priority (a power of two)");
    add_byte_size_option(sub, "--max-payload", o->max_payload, kU32Max,
                         "Largest payload or result (bytes; K, M, G suffixes)");
    add_byte_size_option(sub, "--payload-area", o->payload_area, std::numeric_limits<std::uint64_t>::max(),
                         "Shared payload arena (bytes, a multiple of 4096; K, M, G suffixes)");
    add_unsigned_option(sub, "--max-workers", o->config.max_workers, 0, kU32Max, "Worker registry entries");
    add_unsigned_option(sub, "--deque-capacity", o->config.deque_capacity, 0, kU32Max,
                        "Per-worker deque of claimed tasks (a power of two)");
    add_parsed_option(
        sub, "--mode", "--mode",
        [o](std::string_view text) -> Status {
          auto v = parse_octal_mode(text);
          if (!v) return v.status();
          o->mode = *v;
          return Status::ok();
        },
        "File mode of the segment, octal", "OCTAL", octal(o->config.mode));
    add_duration_option(sub, "--result-ttl", o->result_ttl_ns, 0, kMaxResultTtlNs,
                        "How long a finished task's outcome (a dead letter's too) is kept for a reader before its "
                        "slot is freed anyway, e.g. 30m, 24h; 0: until it is read");
    add_parsed_option(
        sub, "--journal", "--journal",
        [o](std::string_view text) -> Status {
          auto m = parse_journal_mode(text);
          if (!m) return m.status();
          o->config.journal = *m;
          return Status::ok();
        },
        "Journal of state changes for 'taskring sidecar' (docs/durability.md): off, best-effort (drops when "
        "full, the sidecar resyncs) or durable (a full journal makes producers and workers wait)",
        "MODE", "off");
    add_unsigned_option(sub, "--journal-capacity", o->config.journal_capacity, 0, kU32Max,
                        "Journal entries (a power of two, 64 bytes each)");
    sub->add_flag("-f,--force", o->force, "Replace an existing segment of the same name");
    sub->callback([&action, o] { action = [o] { return run_init(*o); }; });
  }
  {
    auto segment = std::make_shared<std::string>();
    CLI::App* sub = app.add_subcommand(
        "destroy", "Close a segment (running workers return, waiting producers fail) and remove it");
    add_segment_option(sub, *segment);
    sub->callback([&action, segment] { action = [segment] { return run_destroy(*segment); }; });
  }
  {
    auto segment = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    CLI::App* sub = app.add_subcommand(
        "status", "Show a segment's configuration, task counts, queues and workers (read-only)");
    add_segment_option(sub, *segment);
    sub->add_flag("--json", *json, "Print one JSON document instead of tables");
    sub->callback([&action, segment, json] { action = [segment, json] { return run_status(*segment, *json); }; });
  }
  {
    auto segment = std::make_shared<std::string>();
    CLI::App* sub = app.add_subcommand(
        "drain",
        "Tell the workers attached now to stop claiming, finish their running task and exit (those attached later "
        "run normally)");
    add_segment_option(sub, *segment);
    sub->callback([&action, segment] { action = [segment] { return run_drain(*segment); }; });
  }
  {
    auto o = std::make_shared<RecoverCommand>();
    CLI::App* sub = app.add_subcommand(
        "recover",
        "Put back what dead processes held: requeue their tasks, free half-submitted slots; audit for lost tasks");
    add_segment_option(sub, o->segment);
    sub->add_option("--log-dir", o->log_dir,
                    "Replay the durable log in this directory instead: resubmit the tasks earlier segments left "
                    "unfinished and restore their unread results (the sidecar does this at start)");
    sub->add_flag("--no-audit", o->no_audit,
                  "Skip the audits of every slot and ring (lost tasks, lost references, unlinked free slots)");
    sub->add_flag("--json", o->json, "Print one JSON document instead of a table");
    sub->callback([&action, o] { action = [o] { return run_recover(*o); }; });
  }
}

}  // namespace taskring::cli
