#include "sidecar_command.h"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "sidecar.h"

namespace taskring::cli {
namespace {

struct SidecarCommand {
  sidecar::SidecarOptions options;
  std::int64_t stats_interval_ns = 0;
  bool json = false;
};

// Set by SIGINT and SIGTERM; the loop polls it at least every 100 ms.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void on_stop_signal(int) { g_stop.store(true, std::memory_order_relaxed); }  // relaxed: a flag, polled

std::string start_text(const sidecar::SidecarOptions& o, const sidecar::StartReport& r) {
  std::string out = "sidecar for segment '" + o.segment + "' (epoch " + std::to_string(r.epoch) + "): log " +
                    o.log_dir + ", fsync " + sidecar::fsync_policy_text(o.fsync) + "\n";
  out += "log        " + std::to_string(r.read.records) + " records in " + std::to_string(r.read.files.size()) +
         " files" +
         (r.read.records == 0 ? std::string()
                              : ", seq " + std::to_string(r.read.first_seq) + ".." + std::to_string(r.read.last_seq)) +
         (r.log_knew_segment ? "; it already mirrored this segment (a restart)" : "") + "\n";
  if (r.repair.truncated) {
    out += "repaired   cut " + std::to_string(r.repair.bytes_dropped) + " bytes of a torn tail from " + r.repair.file +
           " at offset " + std::to_string(r.repair.offset) + ": " + r.repair.reason + "\n";
  }
  if (r.tasks_to_restore != 0) {
    out += "restoring  " + std::to_string(r.tasks_to_restore) + " live tasks of earlier segments\n";
  }
  return out;
}

std::string stats_text(const sidecar::SidecarStats& s) {
  const double per_sync = s.syncs == 0 ? 0.0 : static_cast<double>(s.submits_synced) / static_cast<double>(s.syncs);
  const std::int64_t mean = s.syncs == 0 ? 0 : static_cast<std::int64_t>(s.sync_ns_total / s.syncs);
  char line[512];
  std::snprintf(line, sizeof line,
                "events %llu, records %llu, writes %llu, fdatasyncs %llu (mean %s, max %s, %.1f submits each), "
                "resyncs %llu, holes %llu, dropped %llu, compactions %llu (%llu files removed)",
                static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.records),
                static_cast<unsigned long long>(s.writes), static_cast<unsigned long long>(s.syncs),
                format_duration_ns(mean).c_str(), format_duration_ns(static_cast<std::int64_t>(s.sync_ns_max)).c_str(),
                per_sync, static_cast<unsigned long long>(s.resyncs), static_cast<unsigned long long>(s.holes),
                static_cast<unsigned long long>(s.dropped), static_cast<unsigned long long>(s.compactions),
                static_cast<unsigned long long>(s.files_removed));
  return line;
}

nlohmann::ordered_json stats_json(const sidecar::SidecarStats& s) {
  return {{"events", s.events},         {"records", s.records},
          {"writes", s.writes},         {"fdatasyncs", s.syncs},
          {"sync_ns_total", s.sync_ns_total}, {"sync_ns_max", s.sync_ns_max},
          {"submits_synced", s.submits_synced}, {"resyncs", s.resyncs},
          {"holes", s.holes},           {"dropped", s.dropped},
          {"bad_events", s.bad_events}, {"compactions", s.compactions},
          {"files_removed", s.files_removed}, {"durable_position", s.durable_position}};
}

int run_sidecar(const SidecarCommand& c) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  sidecar::StartReport started;
  auto sc = sidecar::Sidecar::start(c.options, &started);
  if (!sc) return report(sc.status(), "sidecar", "the segment needs a journal: taskring init --journal durable");
  if (!c.json) std::fputs(start_text(c.options, started).c_str(), stdout);
  std::fflush(stdout);
  sidecar::Sidecar& s = **sc;
  std::int64_t next_stats = c.stats_interval_ns > 0 ? monotonic_now_ns() + c.stats_interval_ns : INT64_MAX;
  bool restore_reported = started.tasks_to_restore == 0;
  Status st;
  // Relaxed: a flag set by the signal handler.
  while (!g_stop.load(std::memory_order_relaxed) && !s.closing()) {
    auto n = s.step(100'000'000);
    if (!n) {
      st = n.status();
      break;
    }
    if (!restore_reported && s.restore_done()) {
      restore_reported = true;
      const LogRestoreReport r = s.restore_report();
      std::fprintf(stderr, "restored   %llu resubmitted, %llu results restored, %llu expired, %llu skipped\n",
                   static_cast<unsigned long long>(r.resubmitted), static_cast<unsigned long long>(r.results_restored),
                   static_cast<unsigned long long>(r.expired), static_cast<unsigned long long>(r.skipped));
      for (const std::string& p : r.problems) std::fprintf(stderr, "skipped    %s\n", p.c_str());
    }
    if (monotonic_now_ns() >= next_stats) {
      std::fprintf(stderr, "sidecar    %s\n", stats_text(s.stats()).c_str());
      next_stats += c.stats_interval_ns;
    }
  }
  if (st.is_ok()) st = s.finish();
  if (!st.is_ok()) return report(st, "sidecar");
  if (c.json) {
    nlohmann::ordered_json doc = {{"segment", c.options.segment},
                                  {"log_dir", c.options.log_dir},
                                  {"fsync", sidecar::fsync_policy_text(c.options.fsync)},
                                  {"epoch", started.epoch},
                                  {"stats", stats_json(s.stats())}};
    std::fputs((doc.dump(2) + "\n").c_str(), stdout);
  } else {
    std::printf("stopped    %s\n", stats_text(s.stats()).c_str());
  }
  return kExitOk;
}

}  // namespace

void add_sidecar_command(CLI::App& app, Action& action) {
  auto c = std::make_shared<SidecarCommand>();
  CLI::App* sub = app.add_subcommand(
      "sidecar",
      "Mirror a segment's task state changes to a durable log (group commit, durable acknowledgements, recovery at "
      "start, compaction); runs until SIGINT/SIGTERM or the segment is destroyed");
  add_segment_option(sub, c->options.segment);
  sub->add_option("--log-dir", c->options.log_dir, "Directory of the log files (created if missing)")->required();
  add_parsed_option(
      sub, "--fsync", "--fsync",
      [c](std::string_view text) -> Status {
        auto p = sidecar::parse_fsync_policy(text);
        if (!p) return p.status();
        c->options.fsync = *p;
        return Status::ok();
      },
      "When to fdatasync: always (before acknowledging each batch), interval:MS, or never (page cache only)",
      "POLICY", "always");
  add_byte_size_option(sub, "--file-size", c->options.file_bytes, 1ull << 40,
                       "Start a new log file at this size (K, M, G suffixes)");
  add_byte_size_option(sub, "--compact-at", c->options.compact_bytes, 1ull << 50,
                       "Compact once the log files add up to this much: snapshot the live tasks into a new file, "
                       "remove the older ones (0: never)");
  sub->add_flag("--no-restore", [c](std::int64_t) { c->options.restore = false; },
                "Do not put the live tasks of earlier segments found in the log back into this one");
  add_duration_option(sub, "--stats-interval", c->stats_interval_ns, 0, 86'400'000'000'000,
                      "Print a line of statistics to stderr this often (0: only at exit)");
  sub->add_flag("--json", c->json, "Print the final statistics as one JSON document");
  sub->callback([&action, c] {
    action = [c] {
      if (c->options.file_bytes < 4096) {
        print_error("--file-size", std::to_string(c->options.file_bytes) + ": must be at least 4096 bytes");
        return kExitUsage;
      }
      return run_sidecar(*c);
    };
  });
}

}  // namespace taskring::cli
