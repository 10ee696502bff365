#include "task_commands.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "table.h"
#include "taskring/client.h"
#include "taskring/options.h"
#include "taskring/task.h"

namespace taskring::cli {
namespace {

struct SubmitCommand {
  std::string segment;
  std::string task;
  std::string payload;
  std::string payload_file;  // "-" for stdin
  std::string queue;
  Priority priority = Priority::kNormal;
  std::uint64_t count = 1;
  std::uint32_t batch = 64;
  std::int64_t timeout_ns = -1;  // < 0: no limit
  std::uint32_t max_attempts = 0;  // 0: the handler's default, else kDefaultMaxAttempts
  std::uint32_t max_crashes = 0;   // 0: kDefaultMaxCrashes
  std::int64_t delay_ns = 0;       // 0: claimable at once
  std::int64_t time_limit_ns = 0;  // 0: the handler's limit
  bool wait = false;
  bool no_block = false;
  bool quiet = false;
  bool detach = false;
  bool durable = false;
};

// The longest --delay: a year (a longer one is surely a slip).
constexpr std::int64_t kMaxDelayNs = 365 * 86'400'000'000'000;
// The longest --time-limit: the engine keeps whole milliseconds in 32 bits.
constexpr std::int64_t kMaxTimeLimitNs = std::int64_t{UINT32_MAX} * 1'000'000;

struct TaskCommand {  // get and cancel
  std::string segment;
  TaskId id;
  bool json = false;
  bool keep = false;
};

// Buffered stdout: results are written in large pieces, not one syscall per
// task.
class Output {
 public:
  ~Output() { flush(); }
  void line(const std::string& text) {
    buffer_ += text;
    buffer_ += '\n';
    if (buffer_.size() >= (64u << 10)) flush();
  }
  void flush() {
    if (buffer_.empty()) return;
    std::fwrite(buffer_.data(), 1, buffer_.size(), stdout);
    std::fflush(stdout);
    buffer_.clear();
  }

 private:
  std::string buffer_;
};

// "pid 1234: killed by signal 9 (SIGKILL)".
std::string crash_text(std::uint32_t pid, const ExitReason& reason) {
  return (pid != 0 ? "pid " + std::to_string(pid) : std::string("an unknown process")) + ": " + reason.describe();
}

nlohmann::ordered_json crash_json(std::uint32_t crashes, std::uint32_t pid, const ExitReason& reason) {
  if (crashes == 0) return nullptr;
  const char* kind = reason.kind == ExitReason::Kind::kExited     ? "exited"
                     : reason.kind == ExitReason::Kind::kSignaled ? "signaled"
                                                                  : "unknown";
  return {{"pid", pid}, {"kind", kind}, {"code", reason.code}, {"description", reason.describe()}};
}

std::string rate_text(std::uint64_t tasks, std::int64_t elapsed_ns) {
  char buf[96];
  const double seconds = static_cast<double>(elapsed_ns) / 1e9;
  const double rate = seconds > 0 ? static_cast<double>(tasks) / seconds : 0.0;
  std::snprintf(buf, sizeof buf, "in %.3f s (%.0f tasks/s)", seconds, rate);
  return buf;
}

// Waits for submitted tasks in order and tallies their outcomes.
class ResultCollector {
 public:
  ResultCollector(Client& client, Output& out, bool quiet, std::int64_t deadline_ns)
      : client_(client), out_(out), quiet_(quiet), deadline_ns_(deadline_ns) {}

  void collect(TaskId id) {
    Result<TaskOutcome> r = wait(id);
    if (!r) {
      if (r.status().code() == StatusCode::kDeadlineExceeded) {
        ++timed_out_;
        if (!quiet_) out_.line(to_string(id) + " timeout");
        if (first_timed_out_.empty()) first_timed_out_ = to_string(id);
      } else {
        // The task's fate is unknown to us: say so now, fail at the end.
        out_.flush();
        print_error("waiting for task " + to_string(id), r.status().message());
        if (error_.is_ok()) error_ = r.status();
      }
      return;
    }
    const TaskOutcome& o = *r;
    switch (o.state) {
      case TaskState::kSucceeded: ++succeeded_; break;
      case TaskState::kFailed: ++failed_; break;
      default: ++cancelled_; break;
    }
    if (!quiet_) {
      std::string line = to_string(o.id) + " " + std::string(state_name(o.state));
      if (!o.value.empty()) line += " " + escape_value(o.value);
      out_.line(line);
      // The result line keeps its format; worker crashes the task lived
      // through are told on stderr.
      if (o.crashes != 0) {
        out_.flush();  // the note follows its result line on a shared terminal
        const std::string note = "note: task " + to_string(o.id) + " ran " + std::to_string(o.attempts) +
                                 (o.attempts == 1 ? " time" : " times") + ", through " +
                                 std::to_string(o.crashes) + (o.crashes == 1 ? " worker crash" : " worker crashes") +
                                 " (last: " + crash_text(o.last_crash_pid, o.last_crash) + ")\n";
        std::fputs(note.c_str(), stderr);
      }
    }
  }

  std::uint64_t collected() const { return succeeded_ + failed_ + cancelled_ + timed_out_; }
  bool all_succeeded() const { return failed_ == 0 && cancelled_ == 0 && timed_out_ == 0; }
  const Status& error() const { return error_; }
  std::uint64_t timed_out() const { return timed_out_; }
  const std::string& first_timed_out() const { return first_timed_out_; }

  std::string summary(std::int64_t elapsed_ns) const {
    return std::to_string(collected()) + " tasks: " + std::to_string(succeeded_) + " succeeded, " +
           std::to_string(failed_) + " failed, " + std::to_string(cancelled_) + " cancelled, " +
           std::to_string(timed_out_) + " timed out " + rate_text(collected(), elapsed_ns);
  }

 private:
  Result<TaskOutcome> wait(TaskId id) {
    if (deadline_ns_ < 0) return client_.wait(id, -1);
    const std::int64_t left = deadline_ns_ - monotonic_now_ns();
    if (left > 0) return client_.wait(id, left);
    // Past the deadline: take what has finished, do not block.
    Result<std::optional<TaskOutcome>> r = client_.try_get(id);
    if (!r) return r.status();
    if (!r->has_value()) return deadline_exceeded("task " + to_string(id) + " has not finished");
    return std::move(**r);
  }

  Client& client_;
  Output& out_;
  bool quiet_;
  std::int64_t deadline_ns_;
  std::uint64_t succeeded_ = 0, failed_ = 0, cancelled_ = 0, timed_out_ = 0;
  std::string first_timed_out_;
  Status error_;
};

// Reads all of `path` ("-": stdin) as bytes.
Result<std::string> read_payload_file(const std::string& path) {
  std::FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return invalid_argument("'" + path + "': cannot open: " + std::strerror(errno));
  }
  std::string bytes;
  char buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  if (f != stdin) std::fclose(f);
  if (failed) return invalid_argument("'" + path + "': read failed: " + std::strerror(err));
  return bytes;
}

int run_submit(SubmitCommand& o) {
  if (!o.payload_file.empty()) {
    Result<std::string> bytes = read_payload_file(o.payload_file);
    if (!bytes) return report(bytes.status(), "--payload-file");
    o.payload = std::move(*bytes);
  }
  Result<Client> attached = Client::attach(o.segment);
  if (!attached) return report(attached.status(), "submit");
  Client& client = *attached;

  const std::int64_t start_ns = monotonic_now_ns();
  const std::int64_t deadline_ns = o.timeout_ns < 0 ? -1 : start_ns + o.timeout_ns;
  SubmitOptions options;
  options.queue = o.queue;
  options.priority = o.priority;
  options.on_full = o.no_block ? FullPolicy::kFail : FullPolicy::kWait;
  options.detached = o.detach;
  options.max_attempts = o.max_attempts;
  options.max_crashes = o.max_crashes;
  options.delay_ns = o.delay_ns;
  options.time_limit_ns = o.time_limit_ns;
  options.durable = o.durable;

  // With --wait, results are read while submitting so that this command
  // never holds more than half the slots with unread results: otherwise a
  // count above the slot count would wait for slots only it can free.
  const std::uint64_t window =
      o.wait ? std::max<std::uint64_t>(1, client.config().slots / 2) : std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t chunk = std::min<std::uint64_t>({o.batch, window, o.count});

  Output out;
  ResultCollector results(client, out, o.quiet, deadline_ns);
  std::deque<TaskId> outstanding;
  const std::vector<TaskSpec> specs(chunk, TaskSpec{o.task, o.payload});
  std::vector<TaskId> ids(chunk);
  std::uint64_t submitted = 0;
  Status submit_error;
  while (submitted < o.count) {
    const std::uint64_t n = std::min(chunk, o.count - submitted);
    while (o.wait && outstanding.size() + n > window) {
      results.collect(outstanding.front());
      outstanding.pop_front();
    }
    options.timeout_ns = deadline_ns < 0 ? -1 : std::max<std::int64_t>(0, deadline_ns - monotonic_now_ns());
    std::size_t got = 0;
    if (o.count == 1) {
      Result<TaskId> r = client.submit(o.task, o.payload, options);
      if (!r) {
        submit_error = r.status();
        break;
      }
      ids[0] = *r;
      got = 1;
    } else {
      Result<std::size_t> r = client.submit_batch(std::span(specs.data(), n), std::span(ids.data(), n), options);
      if (!r) {
        submit_error = r.status();
        break;
      }
      got = *r;
    }
    for (std::size_t i = 0; i < got; ++i) {
      if (o.wait) {
        outstanding.push_back(ids[i]);
      } else if (!o.quiet) {
        out.line(to_string(ids[i]));
      }
    }
    submitted += got;
  }
  while (!outstanding.empty()) {
    results.collect(outstanding.front());
    outstanding.pop_front();
  }
  const std::int64_t elapsed_ns = monotonic_now_ns() - start_ns;
  if (o.quiet) {
    out.line(o.wait ? results.summary(elapsed_ns)
                    : "submitted " + std::to_string(submitted) + " tasks " + rate_text(submitted, elapsed_ns));
  }
  out.flush();

  if (!submit_error.is_ok()) {
    if (submit_error.code() == StatusCode::kInvalidArgument && submitted == 0) {
      const std::string_view flag = flag_for_message(
          submit_error.message(),
          {{"task name", "--task"},
           {"payload", "--payload"},
           {"queue", "--queue"},
           {"priority", "--priority"},
           {"max_attempts", "--max-attempts"},
           {"max_crashes", "--max-crashes"},
           {"delay_ns", "--delay"},
           {"time_limit_ns", "--time-limit"}},
          "submit");
      return report(submit_error, flag, "run 'taskring status --segment " + o.segment + "' for its queues and limits");
    }
    std::string hint;
    if (submit_error.code() == StatusCode::kResourceExhausted) {
      hint = std::string("start a worker to drain the queue, ") +
             (o.no_block ? "drop --no-block to wait for space" : "allow a longer --timeout") +
             ", or create the segment with more --slots, --ring-capacity or --payload-area";
    }
    if (o.durable && submit_error.code() == StatusCode::kDeadlineExceeded) {
      // The last call's tasks were submitted; only their durability is unknown.
      return report(submit_error, "submit --durable",
                    "start 'taskring sidecar' for the segment, or allow a longer --timeout");
    }
    return report(submit_error,
                  "submit: submitted " + std::to_string(submitted) + " of " + std::to_string(o.count) + " tasks",
                  hint);
  }
  if (!results.error().is_ok()) return exit_status_for(results.error());
  if (results.timed_out() != 0) {
    print_error("submit", std::to_string(results.timed_out()) + " task(s) had not finished within --timeout",
                "they are still in the engine; read one later with 'taskring get --segment " + o.segment + " " +
                    results.first_timed_out() + "'");
  }
  return results.all_succeeded() ? kExitOk : kExitTaskFailed;
}

std::string clock_text(std::int64_t ns) { return ns == 0 ? "-" : format_duration_ns(ns); }

std::string json_text(const nlohmann::ordered_json& doc) {
  return doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

// "key        value" lines, the format of get and dead show.
class Fields {
 public:
  void add(const char* key, const std::string& value) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%-11s", key);
    out_ += buf + value + "\n";
  }
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

std::string attempts_text(const TaskInfo& info, const char* of) {
  return std::to_string(info.attempts) + (info.max_attempts != 0 ? of + std::to_string(info.max_attempts) : "");
}

// The fields of `info` up to its value, shared by get and dead show. With
// `every_field`, "last crash" and "timed out" are shown even when there is
// none.
void add_task_fields(Fields& f, const TaskInfo& info, std::int64_t now, bool every_field) {
  f.add("id", to_string(info.id));
  f.add("state", std::string(state_name(info.state)));
  f.add("task", info.task_name);
  f.add("queue", info.queue);
  f.add("priority", std::string(priority_name(info.priority)));
  f.add("attempts", attempts_text(info, " of "));
  f.add("crashes", std::to_string(info.crashes));
  if (info.crashes != 0) {
    f.add("last crash", crash_text(info.last_crash_pid, info.last_crash));
  } else if (every_field) {
    f.add("last crash", "none");
  }
  f.add("payload", std::to_string(info.payload_bytes) + " bytes");
  if (info.owner_worker >= 0) f.add("worker", std::to_string(info.owner_worker));
  if (info.cancel_requested) f.add("cancel", "requested");
  if (info.submit_ns != 0) f.add("submitted", format_duration_ns(now - info.submit_ns) + " ago");
  if (info.run_at_ns != 0) {
    // A delayed start, or the wait before a retry.
    const char* why = info.attempts > 0 ? " (retry backoff)" : "";
    f.add("starts", info.run_at_ns > now ? "in " + format_duration_ns(info.run_at_ns - now) + why
                                         : std::string("now: due, waiting for a worker"));
  }
  if (info.deadline_ns != 0) {
    const std::string limit =
        info.start_ns != 0 ? " (time limit " + duration_text(info.deadline_ns - info.start_ns) + ")" : std::string();
    f.add("deadline", (info.deadline_ns > now ? "in " + format_duration_ns(info.deadline_ns - now)
                                              : format_duration_ns(now - info.deadline_ns) + " ago") +
                          limit);
  }
  if (info.timed_out) {
    f.add("timed out", "yes: the attempt outlived its time limit");
  } else if (every_field) {
    f.add("timed out", "no");
  }
  if (info.start_ns != 0 && info.state == TaskState::kPending) {
    // Waiting again (a retry, or a requeued dead letter): the start time is
    // the previous attempt's.
    f.add("last start", format_duration_ns(now - info.start_ns) + " ago (an earlier attempt)");
  } else if (info.start_ns != 0) {
    f.add("queued", clock_text(info.start_ns - info.submit_ns));
    f.add("ran", info.finish_ns != 0 ? format_duration_ns(info.finish_ns - info.start_ns)
                                     : format_duration_ns(now - info.start_ns) + " so far");
  }
  if (!is_terminal(info.state) && !info.last_error.empty()) {
    // A retried task keeps its previous attempt's error until the next ends.
    f.add("last error", escape_value(info.last_error));
  }
}

// What names a task and its attempts, first in both get --json and the
// dead-letter JSON.
nlohmann::ordered_json task_head_json(const TaskInfo& info) {
  return {{"id", to_string(info.id)},
          {"task", info.task_name},
          {"queue", info.queue},
          {"priority", std::string(priority_name(info.priority))},
          {"attempts", info.attempts},
          {"max_attempts",
           info.max_attempts != 0 ? nlohmann::ordered_json(info.max_attempts) : nlohmann::ordered_json(nullptr)},
          {"crashes", info.crashes},
          {"last_crash", crash_json(info.crashes, info.last_crash_pid, info.last_crash)},
          {"timed_out", info.timed_out},
          {"payload_bytes", info.payload_bytes}};
}

// get --json and dead show --json share these keys.
nlohmann::ordered_json task_json(const TaskInfo& info) {
  nlohmann::ordered_json j = task_head_json(info);
  j["state"] = std::string(state_name(info.state));
  j["owner_worker"] = info.owner_worker;
  j["cancel_requested"] = info.cancel_requested;
  j["value"] = info.value;
  j["last_error"] = info.last_error;
  j["submit_ns"] = info.submit_ns;
  j["start_ns"] = info.start_ns;
  j["finish_ns"] = info.finish_ns;
  j["run_at_ns"] = info.run_at_ns;
  j["deadline_ns"] = info.deadline_ns;
  return j;
}

int run_get(const TaskCommand& o) {
  Result<Client> attached = Client::attach(o.segment);
  if (!attached) return report(attached.status(), "get");
  Client& client = *attached;
  Result<TaskInfo> peeked = client.peek(o.id);
  if (!peeked) return report(peeked.status(), "get");
  TaskInfo info = std::move(*peeked);

  bool consumed = false;
  bool read_elsewhere = false;
  if (is_terminal(info.state) && !o.keep) {
    Result<std::optional<TaskOutcome>> taken = client.try_get(o.id);
    if (taken.is_ok() && taken->has_value()) {
      const TaskOutcome& outcome = **taken;
      consumed = true;
      info.state = outcome.state;
      info.value = outcome.value;
      info.attempts = outcome.attempts;
      info.crashes = outcome.crashes;
      info.timed_out = outcome.timed_out;
      info.last_crash_pid = outcome.last_crash_pid;
      info.last_crash = outcome.last_crash;
      info.finish_ns = outcome.finish_ns;
    } else if (!taken.is_ok() && taken.status().code() != StatusCode::kNotFound) {
      return report(taken.status(), "get: reading the result of task " + to_string(o.id));
    } else if (!taken.is_ok()) {
      read_elsewhere = true;
    }
    // Not found here means another reader took the result between peek and
    // try_get: what peek showed is still the task's final state.
  }

  if (o.json) {
    nlohmann::ordered_json doc = task_json(info);
    doc["consumed"] = consumed;
    doc["already_read"] = read_elsewhere;
    std::fputs(json_text(doc).c_str(), stdout);
    return kExitOk;
  }

  Fields f;
  add_task_fields(f, info, monotonic_now_ns(), /*every_field=*/false);
  if (is_terminal(info.state)) {
    const char* key = info.state == TaskState::kSucceeded ? "result"
                      : info.state == TaskState::kFailed  ? "error"
                                                          : "reason";
    f.add(key, info.value.empty() ? "(empty)" : escape_value(info.value));
    f.add("read", consumed         ? "yes: the result is freed; a second get reports not found"
                  : read_elsewhere ? "already: another reader took the result"
                                   : "no: the result is kept until read (--keep)");
  }
  std::fputs(f.text().c_str(), stdout);
  return kExitOk;
}

// ---- dead letters ----

struct DeadCommand {  // dead list, show, requeue and purge
  std::string segment;
  std::vector<TaskId> ids;
  bool all = false;
  bool json = false;
  std::uint64_t limit = 0;  // dead list --limit; 0: all
};

// Widest error shown in the dead list table, in output characters.
constexpr std::size_t kErrorColumnWidth = 60;

// `bytes` escaped as escape_value does, cut to at most `width` characters
// (never inside an escape) with "..." at the end when something was cut.
std::string escape_truncated(std::string_view bytes, std::size_t width) {
  const std::string whole = escape_value(bytes);
  if (whole.size() <= width) return whole;
  std::string out;
  for (const char c : bytes) {
    const std::string one = escape_value(std::string_view(&c, 1));
    if (out.size() + one.size() > width - 3) break;
    out += one;
  }
  return out + "...";
}

// Nanoseconds until dead letter `info` passes the segment's result retention,
// counted from its finish as the engine counts it (<= 0: past it, the next
// audit frees it), or nullopt when results are kept until read.
std::optional<std::int64_t> retention_left(const EngineConfig& c, const TaskInfo& info, std::int64_t now) {
  if (c.result_ttl_ns == 0) return std::nullopt;
  const std::int64_t ttl = static_cast<std::int64_t>(std::min<std::uint64_t>(c.result_ttl_ns, INT64_MAX / 2));
  const std::int64_t since = info.finish_ns != 0 ? info.finish_ns : info.submit_ns;
  return since + ttl - now;
}

nlohmann::ordered_json dead_letter_json(const TaskInfo& info, const EngineConfig& c, std::int64_t now) {
  const std::optional<std::int64_t> left = retention_left(c, info, now);
  nlohmann::ordered_json j = task_head_json(info);
  j["error"] = info.value;
  j["submit_ns"] = info.submit_ns;
  j["start_ns"] = info.start_ns;
  j["finish_ns"] = info.finish_ns;
  j["failed_age_ns"] = info.finish_ns != 0 ? now - info.finish_ns : 0;
  j["expires_in_ns"] =
      left ? nlohmann::ordered_json(std::max<std::int64_t>(*left, 0)) : nlohmann::ordered_json(nullptr);
  return j;
}

int run_dead_list(const DeadCommand& o) {
  Result<Client> attached = Client::attach(o.segment);
  if (!attached) return report(attached.status(), "dead list");
  Client& client = *attached;
  // All of them, to say how many there are; the scan reads every slot
  // whatever the limit.
  Result<std::vector<TaskInfo>> dead = client.dead_letters();
  if (!dead) return report(dead.status(), "dead list");
  const std::size_t total = dead->size();
  const std::size_t shown = o.limit == 0 ? total : std::min<std::size_t>(total, o.limit);
  const std::int64_t now = monotonic_now_ns();
  if (o.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < shown; ++i) list.push_back(dead_letter_json((*dead)[i], client.config(), now));
    const nlohmann::ordered_json doc = {{"segment", o.segment}, {"total", total}, {"dead_letters", list}};
    std::fputs(json_text(doc).c_str(), stdout);
    return kExitOk;
  }
  if (total == 0) {
    std::printf("no dead letters in segment '%s'\n", o.segment.c_str());
    return kExitOk;
  }
  std::string out = "segment '" + o.segment + "': " + std::to_string(total) +
                    (total == 1 ? " dead letter (a task that failed for good)"
                                : " dead letters (tasks that failed for good)");
  out += shown < total ? "; the oldest " + std::to_string(shown) + " (--limit)" : std::string(", oldest first");
  out += "\n\n";
  Table table({"ID", "TASK", "QUEUE", "ATTEMPTS", "CRASHES", "FAILED", "ERROR"}, "lllrrrl");
  for (std::size_t i = 0; i < shown; ++i) {
    const TaskInfo& t = (*dead)[i];
    table.add({to_string(t.id), t.task_name, t.queue, attempts_text(t, "/"), std::to_string(t.crashes),
               t.finish_ns != 0 ? format_duration_ns(now - t.finish_ns) + " ago" : std::string("-"),
               escape_truncated(t.value, kErrorColumnWidth)});
  }
  out += table.render();
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

// peek for the dead commands: the task, or an error when it does not exist
// (kNotFound) or is not a dead letter (kFailedPrecondition, naming its state).
Result<TaskInfo> peek_dead_letter(const Client& client, TaskId id) {
  Result<TaskInfo> info = client.peek(id);
  if (!info) return info.status();
  if (info->state != TaskState::kFailed) {
    return failed_precondition("task " + to_string(id) + " is " + std::string(state_name(info->state)) +
                               ": not a dead letter (only a task that failed for good is one); 'taskring get' "
                               "shows it");
  }
  return info;
}

int run_dead_show(const DeadCommand& o) {
  Result<Client> attached = Client::attach(o.segment);
  if (!attached) return report(attached.status(), "dead show");
  Client& client = *attached;
  const TaskId id = o.ids.front();
  Result<TaskInfo> peeked = peek_dead_letter(client, id);
  if (!peeked) return report(peeked.status(), "dead show");
  const TaskInfo& info = *peeked;
  const std::int64_t now = monotonic_now_ns();
  if (o.json) {
    nlohmann::ordered_json doc = dead_letter_json(info, client.config(), now);
    doc["result_ttl_ns"] = client.config().result_ttl_ns;
    std::fputs(json_text(doc).c_str(), stdout);
    return kExitOk;
  }
  Fields f;
  add_task_fields(f, info, now, /*every_field=*/true);
  if (info.finish_ns != 0) f.add("failed", format_duration_ns(now - info.finish_ns) + " ago");
  const std::optional<std::int64_t> left = retention_left(client.config(), info, now);
  const std::string ttl = duration_text(
      static_cast<std::int64_t>(std::min<std::uint64_t>(client.config().result_ttl_ns, INT64_MAX)));
  f.add("kept", !left      ? std::string("until read, requeued or purged (result ttl 0)")
                : *left > 0 ? "until read, requeued or purged, at most " + format_duration_ns(*left) +
                                  " more (result ttl " + ttl + ")"
                            : "past its result ttl (" + ttl + "): the next audit or 'taskring recover' frees it");
  f.add("error", info.value.empty() ? "(empty)" : escape_value(info.value));
  std::fputs(f.text().c_str(), stdout);
  return kExitOk;
}

// What requeue and purge do to one dead letter.
enum class DeadAction { kRequeue, kPurge };

int run_dead_action(const DeadCommand& o, DeadAction what) {
  const bool requeue = what == DeadAction::kRequeue;
  const std::string command = requeue ? "dead requeue" : "dead purge";
  if (o.ids.empty() && !o.all) {
    print_error(command, std::string("give the ids of the dead letters to ") + (requeue ? "requeue" : "purge") +
                             ", or --all",
                "'taskring dead list --segment " + o.segment + "' lists them");
    return kExitUsage;
  }
  Result<Client> attached = Client::attach(o.segment);
  if (!attached) return report(attached.status(), command);
  Client& client = *attached;

  std::vector<TaskId> ids = o.ids;
  if (o.all) {
    Result<std::vector<TaskInfo>> dead = client.dead_letters();
    if (!dead) return report(dead.status(), command);
    for (const TaskInfo& t : *dead) ids.push_back(t.id);
    if (ids.empty()) {
      std::printf("no dead letters to %s in segment '%s'\n", requeue ? "requeue" : "purge", o.segment.c_str());
      return kExitOk;
    }
  }
  Output out;
  std::size_t done = 0, gone = 0, failed = 0;
  int exit_status = kExitOk;
  for (const TaskId id : ids) {
    Status st;
    if (requeue) {
      st = client.requeue(id);
    } else {
      // purge() frees the task only while it is failed, in one CAS; the
      // peek first gives the usual message for an id that is no dead letter.
      Result<TaskInfo> info = peek_dead_letter(client, id);
      st = info ? client.purge(id) : info.status();
    }
    if (st.is_ok()) {
      ++done;
      out.line(to_string(id) +
               (requeue ? " requeued (pending again, with fresh attempts)" : " purged (its slot is free)"));
      continue;
    }
    // With --all, a dead letter that someone else read, requeued or purged
    // since the scan is no failure: it is simply no longer here.
    if (o.all && (st.code() == StatusCode::kNotFound || st.code() == StatusCode::kFailedPrecondition)) {
      ++gone;
      out.line(to_string(id) + " skipped (no longer a dead letter: read, requeued or purged meanwhile)");
      continue;
    }
    ++failed;
    out.flush();  // the error follows the lines before it on a shared terminal
    print_error(command, st.message());
    if (exit_status == kExitOk) exit_status = exit_status_for(st);
  }
  if (ids.size() > 1 || o.all) {
    std::string summary = std::string(requeue ? "requeued " : "purged ") + std::to_string(done) + " of " +
                          std::to_string(ids.size()) + (ids.size() == 1 ? " dead letter" : " dead letters");
    if (gone != 0) summary += ", " + std::to_string(gone) + " no longer there";
    if (failed != 0) summary += ", " + std::to_string(failed) + " failed";
    out.line(summary);
  }
  return exit_status;
}

int run_cancel(const TaskCommand& o) {
  Result<Client> attached = Client::attach(o.segment);
  if (!attached) return report(attached.status(), "cancel");
  Client& client = *attached;
  Result<CancelOutcome> r = client.cancel(o.id);
  if (!r) return report(r.status(), "cancel");
  const std::string id = to_string(o.id);
  switch (*r) {
    case CancelOutcome::kCancelled:
      std::printf("%s cancelled (it was pending and will never run)\n", id.c_str());
      break;
    case CancelOutcome::kRequested:
      std::printf("%s cancel-requested (it is running; its handler may stop early)\n", id.c_str());
      break;
    case CancelOutcome::kAlreadyFinished: {
      Result<TaskInfo> info = client.peek(o.id);
      const std::string state = info.is_ok() ? std::string(state_name(info->state)) : "unknown";
      std::printf("%s already-finished (%s)\n", id.c_str(), state.c_str());
      break;
    }
  }
  return kExitOk;
}

CLI::Option* add_task_id(CLI::App* sub, TaskId& target) {
  return add_parsed_option(
             sub, "ID", "ID",
             [&target](std::string_view text) -> Status {
               Result<TaskId> id = parse_task_id(text);
               if (!id) return id.status();
               target = *id;
               return Status::ok();
             },
             "Task id as printed by submit", "")
      ->required();
}

// Zero or more task ids, as positional arguments.
CLI::Option* add_task_ids(CLI::App* sub, std::vector<TaskId>& target) {
  return sub
      ->add_option_function<std::vector<std::string>>(
          "ID",
          [&target](const std::vector<std::string>& texts) {
            for (const std::string& text : texts) {
              Result<TaskId> id = parse_task_id(text);
              if (!id) throw CLI::ValidationError("ID", id.status().message());
              target.push_back(*id);
            }
          },
          "Task ids as printed by submit or dead list")
      ->type_name("");
}

}  // namespace

void add_task_commands(CLI::App& app, Action& action) {
  {
    auto o = std::make_shared<SubmitCommand>();
    CLI::App* sub = app.add_subcommand("submit", "Submit tasks; print their ids, or with --wait their results");
    add_segment_option(sub, o->segment);
    sub->add_option("-t,--task", o->task, "Handler name (e.g. noop, echo, sleep, spin, fail)")
        ->type_name("NAME")
        ->required();
    CLI::Option* payload =
        sub->add_option("-p,--payload", o->payload, "Payload bytes, passed to the handler as-is")->type_name("TEXT");
    sub->add_option("--payload-file", o->payload_file, "Read the payload from FILE ('-': standard input)")
        ->type_name("FILE")
        ->excludes(payload);
    sub->add_option("-q,--queue", o->queue, "Queue name (default: the segment's first queue)")->type_name("NAME");
    add_parsed_option(
        sub, "--priority", "--priority",
        [o](std::string_view text) -> Status {
          Result<Priority> p = parse_priority(text);
          if (!p) return p.status();
          o->priority = *p;
          return Status::ok();
        },
        "critical, high, normal or low", "LEVEL", "normal");
    add_unsigned_option(sub, "-n,--count", o->count, 1, std::numeric_limits<std::uint32_t>::max(),
                        "Number of tasks to submit (all with the same payload)");
    add_unsigned_option(sub, "--batch", o->batch, 1, 1u << 20,
                        "Tasks per submit_batch call when --count > 1");
    add_unsigned_option(sub, "--max-attempts", o->max_attempts, 1, kMaxAttemptsLimit,
                        "Most times a task may be started; a crash of its worker uses one up (default: the "
                        "handler's, else " + std::to_string(kDefaultMaxAttempts) + ")")
        ->default_str("");
    add_unsigned_option(sub, "--max-crashes", o->max_crashes, 1, 255,
                        "Worker deaths while running a task after which it is quarantined: it fails for good, "
                        "a dead letter, even with attempts left (default: " +
                            std::to_string(kDefaultMaxCrashes) + ")")
        ->default_str("");
    add_duration_option(sub, "--delay", o->delay_ns, 0, kMaxDelayNs,
                        "Start no earlier than this long after the submit, e.g. 250ms, 2s, 1m30s (at most 365d)")
        ->default_str("");
    add_parsed_option(
        sub, "--time-limit", "--time-limit",
        [o](std::string_view text) -> Status {
          Result<std::int64_t> ns = parse_duration(text, kMaxTimeLimitNs);
          if (!ns) return ns.status();
          if (*ns == 0) {
            return invalid_argument("'" + std::string(text) +
                                    "': must be at least 1ms (leave --time-limit out for the handler's limit)");
          }
          if (*ns % 1'000'000 != 0) {
            return invalid_argument("'" + std::string(text) + "': must be whole milliseconds, e.g. 200ms or 1.5s");
          }
          o->time_limit_ns = *ns;
          return Status::ok();
        },
        "Longest one attempt may run, whole milliseconds, e.g. 200ms, 30s (default: the handler's); past it "
        "the attempt fails with 'time limit of N ms exceeded'",
        "DURATION");
    CLI::Option* wait = sub->add_flag("-w,--wait", o->wait, "Wait for every task and print '<id> <state> <value>'");
    add_parsed_option(
        sub, "--timeout", "--timeout",
        [o](std::string_view text) -> Status {
          Result<std::int64_t> ns = parse_seconds(text);
          if (!ns) return ns.status();
          o->timeout_ns = *ns;
          return Status::ok();
        },
        "Bound on the whole command: waiting for queue space and (with --wait) for results", "SECONDS");
    sub->add_flag("--no-block", o->no_block, "Fail at once when a queue, the slots or the payload area is full");
    sub->add_flag("--quiet", o->quiet, "Print only a summary line instead of ids or results");
    sub->add_flag("--durable", o->durable,
                  "Return only once the sidecar has each task's record on disk (durable acknowledgement; needs a "
                  "segment made with --journal and a running 'taskring sidecar')");
    sub->add_flag("--detach", o->detach, "Fire and forget: nobody reads the results; slots free on completion")
        ->excludes(wait);
    sub->callback([&action, o] { action = [o] { return run_submit(*o); }; });
  }
  {
    auto o = std::make_shared<TaskCommand>();
    CLI::App* sub = app.add_subcommand(
        "get", "Show a task; a finished task's result is read (and freed) unless --keep");
    add_segment_option(sub, o->segment);
    add_task_id(sub, o->id);
    sub->add_flag("--json", o->json, "Print one JSON document");
    sub->add_flag("--keep", o->keep, "Do not consume the result of a finished task");
    sub->callback([&action, o] { action = [o] { return run_get(*o); }; });
  }
  {
    auto o = std::make_shared<TaskCommand>();
    CLI::App* sub = app.add_subcommand(
        "cancel", "Cancel a task: a pending one never runs, a running one gets its cancel flag set");
    add_segment_option(sub, o->segment);
    add_task_id(sub, o->id);
    sub->callback([&action, o] { action = [o] { return run_cancel(*o); }; });
  }
  {
    CLI::App* dead = app.add_subcommand(
        "dead", "Dead letters (tasks that failed for good): list, show, requeue or purge them");
    dead->require_subcommand(1);
    dead->footer("Run 'taskring dead COMMAND --help' for a command's flags. Documentation: docs/cli.md\n");
    {
      auto o = std::make_shared<DeadCommand>();
      CLI::App* sub = dead->add_subcommand("list", "List the dead letters, oldest failure first");
      add_segment_option(sub, o->segment);
      add_unsigned_option(sub, "--limit", o->limit, 1, std::numeric_limits<std::uint64_t>::max(),
                          "Show only the oldest N (default: all)")
          ->default_str("");
      sub->add_flag("--json", o->json, "Print one JSON document (errors whole) instead of a table");
      sub->callback([&action, o] { action = [o] { return run_dead_list(*o); }; });
    }
    {
      auto o = std::make_shared<DeadCommand>();
      o->ids.resize(1);
      CLI::App* sub = dead->add_subcommand("show", "Show everything about one dead letter, its error in full");
      add_segment_option(sub, o->segment);
      add_task_id(sub, o->ids.front());
      sub->add_flag("--json", o->json, "Print one JSON document");
      sub->callback([&action, o] { action = [o] { return run_dead_show(*o); }; });
    }
    for (const DeadAction what : {DeadAction::kRequeue, DeadAction::kPurge}) {
      const bool requeue = what == DeadAction::kRequeue;
      auto o = std::make_shared<DeadCommand>();
      CLI::App* sub = dead->add_subcommand(
          requeue ? "requeue" : "purge",
          requeue ? "Put dead letters back in their queues with fresh attempts, under the same ids"
                  : "Free dead letters (their errors are lost); refuses tasks that are not dead letters");
      add_segment_option(sub, o->segment);
      CLI::Option* ids = add_task_ids(sub, o->ids);
      sub->add_flag("--all", o->all, requeue ? "Requeue every dead letter" : "Purge every dead letter")
          ->excludes(ids);
      sub->callback([&action, o, what] { action = [o, what] { return run_dead_action(*o, what); }; });
    }
  }
}

}  // namespace taskring::cli
