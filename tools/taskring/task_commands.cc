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
  bool wait = false;
  bool no_block = false;
  bool quiet = false;
  bool detach = false;
};

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
           {"max_attempts", "--max-attempts"}},
          "submit");
      return report(submit_error, flag, "run 'taskring status --segment " + o.segment + "' for its queues and limits");
    }
    std::string hint;
    if (submit_error.code() == StatusCode::kResourceExhausted) {
      hint = std::string("start a worker to drain the queue, ") +
             (o.no_block ? "drop --no-block to wait for space" : "allow a longer --timeout") +
             ", or create the segment with more --slots, --ring-capacity or --payload-area";
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
    nlohmann::ordered_json doc = {{"id", to_string(info.id)},
                          {"state", std::string(state_name(info.state))},
                          {"task", info.task_name},
                          {"queue", info.queue},
                          {"priority", std::string(priority_name(info.priority))},
                          {"attempts", info.attempts},
                          {"max_attempts", info.max_attempts != 0 ? nlohmann::ordered_json(info.max_attempts)
                                                                  : nlohmann::ordered_json(nullptr)},
                          {"crashes", info.crashes},
                          {"last_crash", crash_json(info.crashes, info.last_crash_pid, info.last_crash)},
                          {"owner_worker", info.owner_worker},
                          {"cancel_requested", info.cancel_requested},
                          {"payload_bytes", info.payload_bytes},
                          {"value", info.value},
                          {"submit_ns", info.submit_ns},
                          {"start_ns", info.start_ns},
                          {"finish_ns", info.finish_ns},
                          {"run_at_ns", info.run_at_ns},
                          {"deadline_ns", info.deadline_ns},
                          {"timed_out", info.timed_out},
                          {"consumed", consumed},
                          {"already_read", read_elsewhere}};
    const std::string text = doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    std::fputs(text.c_str(), stdout);
    return kExitOk;
  }

  const std::int64_t now = monotonic_now_ns();
  std::string out;
  const auto field = [&out](const char* key, const std::string& value) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%-11s", key);
    out += buf + value + "\n";
  };
  field("id", to_string(info.id));
  field("state", std::string(state_name(info.state)));
  field("task", info.task_name);
  field("queue", info.queue);
  field("priority", std::string(priority_name(info.priority)));
  field("attempts", std::to_string(info.attempts) +
                        (info.max_attempts != 0 ? " of " + std::to_string(info.max_attempts) : std::string()));
  field("crashes", std::to_string(info.crashes));
  if (info.crashes != 0) field("last crash", crash_text(info.last_crash_pid, info.last_crash));
  field("payload", std::to_string(info.payload_bytes) + " bytes");
  if (info.owner_worker >= 0) field("worker", std::to_string(info.owner_worker));
  if (info.cancel_requested) field("cancel", "requested");
  if (info.submit_ns != 0) field("submitted", format_duration_ns(now - info.submit_ns) + " ago");
  if (info.run_at_ns != 0) {
    field("runs", info.run_at_ns > now ? "in " + format_duration_ns(info.run_at_ns - now) : std::string("now (due)"));
  }
  if (info.deadline_ns != 0) {
    field("deadline", info.deadline_ns > now ? "in " + format_duration_ns(info.deadline_ns - now)
                                             : format_duration_ns(now - info.deadline_ns) + " ago");
  }
  if (info.timed_out) field("timed out", "yes: the attempt outlived its time limit");
  if (info.start_ns != 0) {
    field("queued", clock_text(info.start_ns - info.submit_ns));
    field("ran", info.finish_ns != 0 ? format_duration_ns(info.finish_ns - info.start_ns)
                                     : format_duration_ns(now - info.start_ns) + " so far");
  }
  if (is_terminal(info.state)) {
    const char* key = info.state == TaskState::kSucceeded ? "result"
                      : info.state == TaskState::kFailed  ? "error"
                                                          : "reason";
    field(key, info.value.empty() ? "(empty)" : escape_value(info.value));
    field("read", consumed         ? "yes: the result is freed; a second get reports not found"
                  : read_elsewhere ? "already: another reader took the result"
                                   : "no: the result is kept until read (--keep)");
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
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
}

}  // namespace taskring::cli
