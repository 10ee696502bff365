#include "worker_command.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "taskring/options.h"
#include "taskring/recovery.h"
#include "taskring/status.h"
#include "taskring/task.h"
#include "taskring/worker.h"

namespace taskring::cli {
namespace {

// The largest --processes: the most worker registry entries a segment can
// have (EngineConfig::max_workers).
constexpr std::uint64_t kMaxProcesses = 254;
// The largest --max-rss, in MiB (4 TiB).
constexpr std::uint64_t kMaxRssMib = std::uint64_t{1} << 22;

struct WorkerCommand {
  std::string segment;
  std::vector<std::string> queues;
  std::vector<std::string> plugins;
  WorkerOptions options;
  // --cpu: empty (no pinning), one CPU, or with --processes a list that the
  // children take in turn (child i: cpus[i % size]).
  std::vector<int> cpus;
  std::string cpu_text;     // --cpu as given, for messages
  std::uint64_t tasks = 0;  // --tasks; 0: run until stopped
  bool no_steal = false;
  std::uint32_t processes = 0;            // --processes; 0: one worker in this process, no supervisor
  std::uint64_t max_tasks_per_child = 0;  // --max-tasks-per-child; 0: children are not recycled
  std::uint64_t max_rss_mib = 0;          // --max-rss; 0: no limit
  bool no_watchdog = false;               // --no-watchdog
};

// ---- the worker (one process) ------------------------------------------------

// The worker the signal handlers stop. Set once the worker exists.
std::atomic<Worker*> g_worker{nullptr};
static_assert(std::atomic<Worker*>::is_always_lock_free, "used from a signal handler");
// The signal that asked us to stop, 0 if none; read after run() returns.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
  // acquire: pairs with the release in run_worker that publishes the fully
  // constructed Worker, so stop() never sees a half-built one.
  if (Worker* w = g_worker.load(std::memory_order_acquire)) w->stop();
}

// SIGINT and SIGTERM call Worker::stop(). SA_RESETHAND: a second signal of
// the same kind kills the process as usual, for a handler that never returns.
void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void restore_default_handlers() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

// What a supervised child tells its supervisor, through a pipe both share.
// The last event before a child's exit says why it exited; a child that
// exits without one (or with a status other than 0) died.
enum class ChildEvent : std::uint32_t {
  kNone = 0,
  kReady = 1,     // attached and handlers registered; about to run
  kRecycled = 2,  // processed --max-tasks-per-child tasks; exits 0
  kDrained = 3,   // run() returned because of `taskring drain`; exits 0
  kStopped = 4,   // stopped by SIGINT/SIGTERM; exits 0
  kClosing = 5,   // the segment is closing; exits 0
};
struct ChildMessage {
  std::int32_t pid = 0;
  ChildEvent event = ChildEvent::kNone;
};
// One write(2) of at most PIPE_BUF bytes to a pipe is atomic: messages of
// several children never interleave.
static_assert(sizeof(ChildMessage) <= PIPE_BUF);

// How a supervised child reaches its supervisor.
struct ChildLink {
  int event_fd = -1;  // the write end of the event pipe
};

void send_event(const ChildLink& link, ChildEvent event) {
  const ChildMessage m{static_cast<std::int32_t>(getpid()), event};
  ssize_t n = 0;
  do {
    n = write(link.event_fd, &m, sizeof m);
  } while (n < 0 && errno == EINTR);
  // A failed write (the supervisor is gone) changes nothing for the worker:
  // the supervisor that would read it cannot act on it any more.
}

// Forwards a plugin's registrations to the worker and remembers the names
// and the first failure, which plugins tend to ignore.
class PluginRegistry final : public HandlerRegistry {
 public:
  explicit PluginRegistry(Worker& worker) : worker_(worker) {}
  Status register_handler(std::string_view task, Handler handler) override {
    return register_handler(task, std::move(handler), HandlerOptions{});
  }
  Status register_handler(std::string_view task, Handler handler, const HandlerOptions& options) override {
    Status s = worker_.register_handler(task, std::move(handler), options);
    if (s.is_ok()) {
      names_.emplace_back(task);
    } else if (first_error_.is_ok()) {
      first_error_ = s;
    }
    return s;
  }
  const std::vector<std::string>& names() const { return names_; }
  const Status& first_error() const { return first_error_; }

 private:
  Worker& worker_;
  std::vector<std::string> names_;
  Status first_error_;
};

using RegisterFn = void (*)(HandlerRegistry&);
constexpr const char* kRegisterSymbol = "taskring_register_handlers";

// Loads the plugin at `path` and lets it register its handlers with
// `worker`. The library is never closed: its handlers' code must outlive the
// worker. Appends the names it registered to `names`.
Status load_plugin(const std::string& path, Worker& worker, std::vector<std::string>& names) {
  // dlopen searches the library path for a bare name; a file named on the
  // command line is meant relative to the current directory.
  const std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return failed_precondition("plugin '" + path + "' could not be loaded: " + (why ? why : "unknown error"));
  }
  dlerror();  // clear, so a null symbol can be told from an error
  void* symbol = dlsym(handle, kRegisterSymbol);
  if (symbol == nullptr) {
    return not_found("plugin '" + path + "' does not export " + kRegisterSymbol +
                     "; define it as: extern \"C\" void taskring_register_handlers(taskring::HandlerRegistry&)");
  }
  RegisterFn register_fn = nullptr;
  static_assert(sizeof register_fn == sizeof symbol);
  std::memcpy(&register_fn, &symbol, sizeof register_fn);  // POSIX: data and function pointers agree
  PluginRegistry registry(worker);
  try {
    register_fn(registry);
  } catch (const std::exception& e) {
    return internal_error("plugin '" + path + "': " + kRegisterSymbol + " threw: " + e.what());
  } catch (...) {
    return internal_error("plugin '" + path + "': " + kRegisterSymbol + " threw a non-standard exception");
  }
  if (!registry.first_error().is_ok()) {
    return Status(registry.first_error().code(),
                  "plugin '" + path + "': registering a handler failed: " + registry.first_error().message());
  }
  if (registry.names().empty()) {
    std::fprintf(stderr, "warning: plugin '%s' registered no handlers\n", path.c_str());
  }
  names.insert(names.end(), registry.names().begin(), registry.names().end());
  return Status::ok();
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

// What this worker did between two stats(): a registry entry's counters
// carry on from its earlier owners, so a worker's own share is a difference.
WorkerStats since(const WorkerStats& now, const WorkerStats& before) {
  WorkerStats d = now;
  d.claimed -= before.claimed;
  d.succeeded -= before.succeeded;
  d.failed -= before.failed;
  d.cancelled -= before.cancelled;
  d.retried -= before.retried;
  d.stolen -= before.stolen;
  d.parks -= before.parks;
  return d;
}

std::string join_cpus(const std::vector<int>& cpus) {
  std::string out;
  for (int c : cpus) out += (out.empty() ? "" : ",") + std::to_string(c);
  return out;
}

// Runs one worker in this process: attach, built-ins, plugins, run. With
// `child`, this process is a supervised child: it tells the supervisor when
// it is ready and why it exits, runs --max-tasks-per-child tasks instead of
// --tasks, and keeps its stop handlers until it exits (a stop signal after
// run() returned must not kill it while it deregisters).
int run_worker(WorkerCommand& o, const ChildLink* child = nullptr) {
  o.options.queues = o.queues;
  o.options.steal = !o.no_steal;
  o.options.cpu = o.cpus.empty() ? -1 : o.cpus.front();
  const std::uint64_t limit = child != nullptr ? o.max_tasks_per_child : o.tasks;
  const char* limit_flag = child != nullptr ? "--max-tasks-per-child" : "--tasks";
  // Installed before attach so that a signal during start-up still ends
  // with a clean deregistration rather than a killed process.
  install_stop_handlers();
  Result<std::unique_ptr<Worker>> attached = Worker::attach(o.segment, o.options);
  if (!attached) {
    if (child == nullptr) restore_default_handlers();
    const Status& s = attached.status();
    return report(s, flag_for_message(s.message(),
                                      {{"cpu", "--cpu"}, {"queue", "--queues"}, {"claim_batch", "--batch"}}, "worker"));
  }
  std::unique_ptr<Worker> worker = std::move(*attached);
  worker->register_builtins();
  std::vector<std::string> plugin_handlers;
  for (const std::string& path : o.plugins) {
    if (const Status s = load_plugin(path, *worker, plugin_handlers); !s.is_ok()) {
      if (child == nullptr) restore_default_handlers();
      return report(s, "worker");
    }
  }
  // release: publishes the constructed Worker to on_stop_signal; pairs with
  // the acquire there.
  g_worker.store(worker.get(), std::memory_order_release);
  if (child != nullptr) send_event(*child, ChildEvent::kReady);

  std::fprintf(stderr,
               "worker %d (pid %d) attached to segment '%s': queues %s, cpu %s, claim batch %u, stealing %s; "
               "handlers: %s\n",
               worker->index(), static_cast<int>(getpid()), o.segment.c_str(),
               o.queues.empty() ? "(all)" : join(o.queues).c_str(),
               o.options.cpu < 0 ? "-" : std::to_string(o.options.cpu).c_str(), o.options.claim_batch,
               o.options.steal ? "on" : "off", join(worker->handler_names()).c_str());

  const WorkerStats before = worker->stats();
  const std::int64_t start_ns = monotonic_now_ns();
  Status run_status;
  // A signal before this point set g_stop_signal; one after it reaches
  // run() through Worker::stop(), which run() honours even if it came first.
  if (g_stop_signal == 0) run_status = limit == 0 ? worker->run() : worker->run_tasks(limit);
  const std::int64_t elapsed_ns = monotonic_now_ns() - start_ns;

  g_worker.store(nullptr, std::memory_order_release);  // release: pairs with the handler's acquire
  if (child == nullptr) restore_default_handlers();

  const WorkerStats st = since(worker->stats(), before);
  std::string why;
  ChildEvent event = ChildEvent::kNone;
  if (!run_status.is_ok()) {
    why = "failed";
  } else if (worker->drained()) {
    why = "the segment was drained";
    event = ChildEvent::kDrained;
  } else if (g_stop_signal != 0) {
    why = std::string("stopped by ") + (g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    event = ChildEvent::kStopped;
  } else if (limit != 0 && st.succeeded + st.failed + st.cancelled + st.retried >= limit) {
    why = std::string("processed ") + limit_flag + " " + std::to_string(limit);
    event = ChildEvent::kRecycled;
  } else {
    why = "the segment is closing";
    event = ChildEvent::kClosing;
  }
  std::fprintf(stderr,
               "worker %d: claimed %llu, succeeded %llu, failed %llu, retried %llu, cancelled %llu, stolen %llu, "
               "parks %llu in %s; %s\n",
               st.index, static_cast<unsigned long long>(st.claimed), static_cast<unsigned long long>(st.succeeded),
               static_cast<unsigned long long>(st.failed), static_cast<unsigned long long>(st.retried),
               static_cast<unsigned long long>(st.cancelled),
               static_cast<unsigned long long>(st.stolen), static_cast<unsigned long long>(st.parks),
               format_duration_ns(elapsed_ns).c_str(), why.c_str());
  // Deregister (handing back the claimed tasks) before telling the
  // supervisor that this exit is a clean one.
  worker.reset();
  if (!run_status.is_ok()) return report(run_status, "worker");
  if (child != nullptr) send_event(*child, event);
  return kExitOk;
}

// ---- the supervisor (--processes) --------------------------------------------

// A child that dies before it was ready, or exits with a non-zero status or
// is stopped over --max-rss within this long of being started, failed at
// start-up.
constexpr std::int64_t kStartupWindowNs = 1'000'000'000;
// Start-up failures in a row after which the supervisor gives up.
constexpr int kMaxStartupFailures = 5;
// The wait before replacing a child that failed at start-up: this, doubled
// for each further failure in a row (0.1, 0.2, 0.4, 0.8 s).
constexpr std::int64_t kStartupBackoffNs = 100'000'000;
// How often --max-rss reads the children's memory.
constexpr std::int64_t kRssCheckIntervalNs = 100'000'000;
// How often the supervisor's watchdog looks at the running tasks' time
// limits and cancel flags.
constexpr std::int64_t kWatchdogIntervalNs = 100'000'000;
// After a drain, how long the other children have to see it themselves
// before they get SIGTERM (which has the same effect; this only keeps the
// reason each one prints true). Children that attached after the drain run
// on until then.
constexpr std::int64_t kDrainGraceNs = 1'000'000'000;

// The private resident memory of process `pid` in bytes: resident minus
// shared pages in /proc/PID/statm, i.e. its anonymous memory. The segment's
// shared memory and mapped files do not count: every worker maps all of the
// segment, and that is not a leak. -1 if it cannot be read.
std::int64_t private_rss_bytes(pid_t pid, long page_size) {
  char path[40];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[256];
  ssize_t n = 0;
  do {
    n = read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  unsigned long long size = 0, resident = 0, shared = 0;
  if (std::sscanf(buf, "%llu %llu %llu", &size, &resident, &shared) != 3) return -1;
  return static_cast<std::int64_t>(resident > shared ? resident - shared : 0) * page_size;
}

std::string mib_text(std::int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// What worker_exited reported, for the line about a child's death.
std::string recovery_text(const Result<RecoveryReport>& r) {
  if (!r) return "recovering its tasks failed: " + r.status().message();
  const RecoveryReport& rep = *r;
  if (rep.tasks_requeued == 0 && rep.tasks_failed == 0 && rep.deque_tasks_returned == 0) {
    return rep.workers_recovered == 0 ? "nothing to recover (no task, or another process recovered it first)"
                                      : "it was running no task";
  }
  std::string out = plural(rep.tasks_requeued, "task", "tasks") + " requeued, " +
                    std::to_string(rep.tasks_failed) + " failed for good";
  if (rep.deque_tasks_returned != 0) {
    out += ", " + plural(rep.deque_tasks_returned, "claimed task", "claimed tasks") + " returned to the queues";
  }
  return out;
}

// The name of a stop signal, for the supervisor's lines.
const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

class Supervisor {
 public:
  explicit Supervisor(WorkerCommand& o) : o_(o), children_(o.processes) {}
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;
  ~Supervisor() {
    for (int fd : {sigfd_, event_read_, event_write_}) {
      if (fd >= 0) close(fd);
    }
    if (mask_saved_) sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
  }

  int run();

 private:
  enum class Mode {
    kStarting,  // the first child is starting; the others start once it is ready
    kRunning,   // keeping --processes children running
    kStopping,  // SIGINT/SIGTERM: the children were told to stop
    kDraining,  // a child was drained: none is replaced; those left get SIGTERM after kDrainGraceNs
    kClosing,   // the segment is closing: the children stop by themselves
    kGivingUp,  // children kept failing at start-up: the others were told to stop
  };
  // Why the supervisor sent a child SIGTERM.
  enum class StopCause { kNone, kRss, kStop, kDrain, kGiveUp };
  struct Child {
    pid_t pid = -1;  // -1: no child in this place
    std::int64_t started_ns = 0;
    bool ready = false;    // it reported kReady
    bool settled = false;  // it was ready and lived through the start-up window
    ChildEvent event = ChildEvent::kNone;
    StopCause stop = StopCause::kNone;
    std::int64_t respawn_at_ns = -1;  // an empty place: when to start a child in it; -1: never
  };

  Status setup();
  void spawn(std::size_t place, std::int64_t now);
  [[noreturn]] void run_child(std::size_t place, pid_t supervisor);
  void read_events();
  void read_signals();
  void reap(std::int64_t now);
  void on_exit(std::size_t place, const Child& c, int status, std::int64_t now);
  void check_children(std::int64_t now);
  int poll_timeout_ms(std::int64_t now) const;
  void stop_children(StopCause cause);
  void give_up(int code, const std::string& message, const std::string& hint);
  void on_stop_request(int sig);
  std::size_t live() const;
  bool respawn_pending() const;
  std::string place_text(std::size_t place) const {
    return std::to_string(place + 1) + " of " + std::to_string(children_.size());
  }

  WorkerCommand& o_;
  std::vector<Child> children_;
  Mode mode_ = Mode::kStarting;
  int sigfd_ = -1;
  int event_read_ = -1;
  int event_write_ = -1;
  sigset_t old_mask_{};
  bool mask_saved_ = false;
  long page_size_ = 4096;
  int stop_requests_ = 0;
  int stop_signal_ = 0;    // the first SIGINT/SIGTERM
  int forced_signal_ = 0;  // the second: the children were killed
  int startup_failures_ = 0;  // in a row
  int exit_code_ = kExitOk;
  std::int64_t next_rss_check_ns_ = 0;
  std::unique_ptr<Watchdog> watchdog_;  // null with --no-watchdog
  std::int64_t next_watch_ns_ = 0;
  std::int64_t drain_sweep_at_ns_ = -1;  // kDraining: when to SIGTERM the children still running
  std::uint64_t started_ = 0, died_ = 0, recycled_ = 0, over_rss_ = 0;
};

Status Supervisor::setup() {
  page_size_ = sysconf(_SC_PAGESIZE);
  // The signals come through a signalfd, read in the poll loop: no handler
  // runs at an arbitrary point, and nothing is lost between polls.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &mask, &old_mask_) != 0) {
    return internal_error(std::string("blocking signals failed: ") + std::strerror(errno));
  }
  mask_saved_ = true;
  sigfd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigfd_ < 0) return internal_error(std::string("signalfd failed: ") + std::strerror(errno));
  // The event pipe: children write (blocking) to one end, the supervisor
  // reads the other without blocking. The two ends are separate open file
  // descriptions, so O_NONBLOCK on the read end leaves the write end alone.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return internal_error(std::string("pipe failed: ") + std::strerror(errno));
  event_read_ = fds[0];
  event_write_ = fds[1];
  if (fcntl(event_read_, F_SETFL, fcntl(event_read_, F_GETFL) | O_NONBLOCK) != 0) {
    return internal_error(std::string("fcntl failed: ") + std::strerror(errno));
  }
  return Status::ok();
}

void Supervisor::run_child(std::size_t place, pid_t supervisor) {
  close(sigfd_);
  close(event_read_);
  // Signals are still blocked here (inherited), so a SIGTERM sent before the
  // handlers exist waits for them instead of killing the child.
  install_stop_handlers();
  // If the supervisor dies (even by SIGKILL), its children stop like on
  // SIGTERM rather than running on unsupervised. A supervisor that died
  // before this call is seen through getppid().
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != supervisor) g_stop_signal = SIGTERM;
  sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
  WorkerCommand child = o_;
  if (!o_.cpus.empty()) child.cpus = {o_.cpus[place % o_.cpus.size()]};
  const ChildLink link{event_write_};
  int code = kExitFailure;
  try {
    code = run_worker(child, &link);
  } catch (const std::exception& e) {
    print_error({}, std::string("unexpected failure: ") + e.what());
  }
  std::fflush(nullptr);
  // _exit: the child leaves the supervisor's stack and atexit state alone.
  _exit(code);
}

void Supervisor::spawn(std::size_t place, std::int64_t now) {
  Child& c = children_[place];
  c = Child{};
  // Nothing buffered may be written twice, by the supervisor and the child.
  std::fflush(nullptr);
  const pid_t supervisor = getpid();
  const pid_t pid = fork();
  if (pid == 0) run_child(place, supervisor);
  if (pid < 0) {
    // Out of processes or memory: like a child that failed at start-up.
    const int err = errno;
    ++startup_failures_;
    if (mode_ == Mode::kStarting || startup_failures_ >= kMaxStartupFailures) {
      give_up(kExitFailure, std::string("starting a worker process failed: fork: ") + std::strerror(err), {});
      return;
    }
    c.respawn_at_ns = now + (kStartupBackoffNs << (startup_failures_ - 1));
    std::fprintf(stderr, "supervisor: starting worker process %s failed: fork: %s; retrying in %s\n",
                 place_text(place).c_str(), std::strerror(err),
                 format_duration_ns(c.respawn_at_ns - now).c_str());
    return;
  }
  c.pid = pid;
  c.started_ns = now;
  ++started_;
}

void Supervisor::read_events() {
  ChildMessage buf[64];
  for (;;) {
    const ssize_t n = read(event_read_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EAGAIN: nothing more
    // Writes of one message are atomic, so reads return whole messages.
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof(ChildMessage); ++i) {
      for (std::size_t place = 0; place < children_.size(); ++place) {
        Child& c = children_[place];
        if (c.pid != buf[i].pid) continue;
        if (buf[i].event == ChildEvent::kReady) {
          c.ready = true;
          if (mode_ == Mode::kStarting) {
            // The first child works: start the others.
            mode_ = Mode::kRunning;
            for (Child& other : children_) {
              if (other.pid < 0) other.respawn_at_ns = 0;
            }
          }
        } else {
          c.event = buf[i].event;
        }
      }
    }
  }
}

void Supervisor::read_signals() {
  signalfd_siginfo infos[16];
  for (;;) {
    const ssize_t n = read(sigfd_, infos, sizeof infos);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof(signalfd_siginfo); ++i) {
      const int sig = static_cast<int>(infos[i].ssi_signo);
      if (sig == SIGINT || sig == SIGTERM) on_stop_request(sig);
      // SIGCHLD needs nothing here: reap() runs after every wake-up.
    }
  }
}

void Supervisor::on_stop_request(int sig) {
  ++stop_requests_;
  if (stop_requests_ == 1) {
    stop_signal_ = sig;
    if (mode_ != Mode::kGivingUp) mode_ = Mode::kStopping;
    std::fprintf(stderr, "supervisor: %s: stopping %s (each finishes its running task)\n", signal_name(sig),
                 plural(live(), "worker process", "worker processes").c_str());
    stop_children(StopCause::kStop);
    return;
  }
  if (forced_signal_ != 0) return;
  forced_signal_ = sig;
  std::fprintf(stderr, "supervisor: second stop signal (%s): killing %s (running tasks are requeued)\n",
               signal_name(sig), plural(live(), "worker process", "worker processes").c_str());
  for (const Child& c : children_) {
    if (c.pid > 0) kill(c.pid, SIGKILL);
  }
}

void Supervisor::stop_children(StopCause cause) {
  for (Child& c : children_) {
    c.respawn_at_ns = -1;
    // One SIGTERM per child: the worker's handler is SA_RESETHAND, so a
    // second one would kill it.
    if (c.pid > 0 && c.stop == StopCause::kNone) {
      kill(c.pid, SIGTERM);
      c.stop = cause;
    }
  }
}

void Supervisor::give_up(int code, const std::string& message, const std::string& hint) {
  print_error("worker", message, hint);
  if (mode_ != Mode::kGivingUp) exit_code_ = code;
  mode_ = Mode::kGivingUp;
  stop_children(StopCause::kGiveUp);
}

std::size_t Supervisor::live() const {
  return static_cast<std::size_t>(std::count_if(children_.begin(), children_.end(), [](const Child& c) {
    return c.pid > 0;
  }));
}

bool Supervisor::respawn_pending() const {
  return std::any_of(children_.begin(), children_.end(),
                     [](const Child& c) { return c.pid < 0 && c.respawn_at_ns >= 0; });
}

// The waitpid() status that `info` (from waitid) describes.
int wait_status_of(const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED: return (info.si_status & 0xff) << 8;
    case CLD_KILLED: return info.si_status & 0x7f;
    case CLD_DUMPED: return (info.si_status & 0x7f) | 0x80;  // WCOREFLAG
    default: return 0;
  }
}

void Supervisor::reap(std::int64_t now) {
  for (;;) {
    // WNOWAIT: look at the exit but leave the child a zombie while
    // worker_exited runs, so its pid cannot be reused meanwhile and any
    // process checking it sees it dead with its exit status in /proc.
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      return;  // ECHILD: no children
    }
    const pid_t pid = info.si_pid;
    if (pid == 0) return;  // the others still run
    const int status = wait_status_of(info);
    for (std::size_t place = 0; place < children_.size(); ++place) {
      if (children_[place].pid != pid) continue;
      // The child wrote its last event before it exited: it is in the pipe.
      read_events();
      const Child c = children_[place];
      children_[place] = Child{};
      on_exit(place, c, status, now);
      break;
    }
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

void Supervisor::on_exit(std::size_t place, const Child& c, int status, std::int64_t now) {
  const bool running = mode_ == Mode::kRunning || mode_ == Mode::kStarting;
  const bool exited_zero = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  const bool clean = exited_zero && c.event != ChildEvent::kNone;
  Child& next = children_[place];
  if (clean) {
    switch (c.event) {
      case ChildEvent::kRecycled:
        ++recycled_;
        if (running) {
          std::fprintf(stderr, "supervisor: worker pid %d processed --max-tasks-per-child %llu; starting a new one\n",
                       static_cast<int>(c.pid), static_cast<unsigned long long>(o_.max_tasks_per_child));
          next.respawn_at_ns = now;
        }
        return;
      case ChildEvent::kDrained:
        if (running) {
          mode_ = Mode::kDraining;
          for (Child& other : children_) other.respawn_at_ns = -1;
          drain_sweep_at_ns_ = now + kDrainGraceNs;
          std::fprintf(stderr,
                       "supervisor: segment '%s' was drained: not replacing worker processes; any still running "
                       "in %s get SIGTERM\n",
                       o_.segment.c_str(), format_duration_ns(kDrainGraceNs).c_str());
        }
        return;
      case ChildEvent::kClosing:
        if (running) {
          mode_ = Mode::kClosing;
          std::fprintf(stderr, "supervisor: segment '%s' is closing: not replacing worker processes\n",
                       o_.segment.c_str());
          for (Child& other : children_) other.respawn_at_ns = -1;
        }
        return;
      case ChildEvent::kStopped:
        if (c.stop == StopCause::kRss) {
          ++over_rss_;
          break;  // replaced below, like a death
        }
        if (c.stop == StopCause::kNone && running) {
          std::fprintf(stderr,
                       "supervisor: worker pid %d was stopped by a signal from outside the supervisor; not replacing "
                       "it (%s left)\n",
                       static_cast<int>(c.pid), plural(live(), "worker process", "worker processes").c_str());
        }
        return;
      default:
        break;
    }
  }

  std::string line = "supervisor: worker pid " + std::to_string(c.pid) + " (process " + place_text(place) + ") ";
  if (clean) {
    line += "stopped over --max-rss " + std::to_string(o_.max_rss_mib) + " MiB";
  } else {
    // It died: put back what it held, with how it ended recorded on its
    // tasks, before anything else (a replacement included) can see them.
    ++died_;
    const Result<RecoveryReport> recovered =
        worker_exited(o_.segment, static_cast<std::uint32_t>(c.pid), status);
    line += ExitReason::from_wait_status(status).describe();
    if (exited_zero) line += " without stopping cleanly";
    line += ": " + recovery_text(recovered);
  }

  if (mode_ == Mode::kStarting && !c.ready) {
    // The very first child could not start: the next one would fail the same
    // way (a bad --queues, a plugin that does not load, a full registry).
    std::fputs((line + "\n").c_str(), stderr);
    const int code = WIFEXITED(status) && (WEXITSTATUS(status) == kExitUsage || WEXITSTATUS(status) == kExitFailure)
                         ? WEXITSTATUS(status)
                         : kExitFailure;
    give_up(code, "the first worker process (pid " + std::to_string(c.pid) + ") " +
                      ExitReason::from_wait_status(status).describe() + " before it was ready; not starting more",
            "its own error is above");
    return;
  }
  if (!running) {
    std::fputs((line + "; not replacing it\n").c_str(), stderr);
    return;
  }
  // A start-up failure: dying before being ready, or soon after with an
  // exit status (run() failed, e.g. pinning) or over --max-rss. A signal
  // after ready is a crash in a handler: a poison task ends after its
  // attempts, and must not make the supervisor give up on the others.
  const bool soon = now - c.started_ns < kStartupWindowNs;
  const bool at_startup = !c.ready || (soon && (clean || WIFEXITED(status)));
  if (!at_startup) {
    startup_failures_ = 0;
    next.respawn_at_ns = now;
    std::fputs((line + "; starting a replacement\n").c_str(), stderr);
    return;
  }
  ++startup_failures_;
  if (startup_failures_ >= kMaxStartupFailures) {
    std::fputs((line + "\n").c_str(), stderr);
    give_up(kExitFailure,
            "worker processes keep failing at start-up: " + std::to_string(startup_failures_) +
                " in a row ended within " + format_duration_ns(kStartupWindowNs) +
                (clean ? " (stopped over --max-rss)" : "") + "; not starting more",
            clean ? "raise --max-rss above what an idle worker uses" : "their errors are above");
    return;
  }
  next.respawn_at_ns = now + (kStartupBackoffNs << (startup_failures_ - 1));
  std::fprintf(stderr, "%s; start-up failure %d of %d in a row: replacing it in %s\n", line.c_str(),
               startup_failures_, kMaxStartupFailures, format_duration_ns(next.respawn_at_ns - now).c_str());
}

void Supervisor::check_children(std::int64_t now) {
  for (Child& c : children_) {
    if (c.pid > 0 && c.ready && !c.settled && now - c.started_ns >= kStartupWindowNs) {
      c.settled = true;
      startup_failures_ = 0;
    }
  }
  if (mode_ == Mode::kDraining && drain_sweep_at_ns_ >= 0 && now >= drain_sweep_at_ns_) {
    drain_sweep_at_ns_ = -1;
    stop_children(StopCause::kDrain);
  }
  if (watchdog_ != nullptr && live() != 0 && now >= next_watch_ns_) {
    next_watch_ns_ = now + kWatchdogIntervalNs;
    // A worker it kills dies by SIGKILL: reap() then reports it and
    // recovery retries or fails its task.
    const WatchdogReport w = watchdog_->check();
    if (w.timed_out != 0) {
      std::fprintf(stderr, "supervisor: watchdog: %s past its time limit: cancel flag raised\n",
                   plural(w.timed_out, "task", "tasks").c_str());
    }
    if (w.killed != 0) {
      std::fprintf(stderr,
                   "supervisor: watchdog: killed %s whose timed-out or cancelled task outlived its kill grace\n",
                   plural(w.killed, "worker", "workers").c_str());
    }
  }
  if (o_.max_rss_mib == 0 || mode_ != Mode::kRunning || now < next_rss_check_ns_) return;
  next_rss_check_ns_ = now + kRssCheckIntervalNs;
  const std::int64_t limit = static_cast<std::int64_t>(o_.max_rss_mib) << 20;
  for (Child& c : children_) {
    if (c.pid <= 0 || c.stop != StopCause::kNone) continue;
    const std::int64_t rss = private_rss_bytes(c.pid, page_size_);
    if (rss <= limit) continue;
    std::fprintf(stderr,
                 "supervisor: worker pid %d uses %s of private memory, over --max-rss %llu MiB: stopping it (it "
                 "finishes its running task) to replace it\n",
                 static_cast<int>(c.pid), mib_text(rss).c_str(), static_cast<unsigned long long>(o_.max_rss_mib));
    kill(c.pid, SIGTERM);
    c.stop = StopCause::kRss;
  }
}

int Supervisor::poll_timeout_ms(std::int64_t now) const {
  std::int64_t next = std::numeric_limits<std::int64_t>::max();
  for (const Child& c : children_) {
    if (c.pid < 0 && c.respawn_at_ns >= 0 && mode_ == Mode::kRunning) next = std::min(next, c.respawn_at_ns);
    if (c.pid > 0 && c.ready && !c.settled) next = std::min(next, c.started_ns + kStartupWindowNs);
  }
  if (o_.max_rss_mib != 0 && mode_ == Mode::kRunning && live() != 0) next = std::min(next, next_rss_check_ns_);
  if (mode_ == Mode::kDraining && drain_sweep_at_ns_ >= 0) next = std::min(next, drain_sweep_at_ns_);
  if (watchdog_ != nullptr && live() != 0) next = std::min(next, next_watch_ns_);
  if (next == std::numeric_limits<std::int64_t>::max()) return -1;  // idle: wait for a signal or an event
  const std::int64_t ms = (next - now + 999'999) / 1'000'000;
  return static_cast<int>(std::clamp<std::int64_t>(ms, 0, INT_MAX));
}

int Supervisor::run() {
  // What can be checked before forking is checked here, once, rather than
  // by every child.
  Result<SegmentSnapshot> snap = read_snapshot(o_.segment);
  if (!snap) return report(snap.status(), "worker");
  if (o_.processes > snap->config.max_workers) {
    return report(invalid_argument("'" + std::to_string(o_.processes) + "': segment '" + o_.segment + "' has " +
                                   std::to_string(snap->config.max_workers) + " worker registry entries, fewer than "
                                   "the processes asked for"),
                  "--processes", "create the segment with more --max-workers");
  }
  const long ncpu = sysconf(_SC_NPROCESSORS_CONF);
  for (int cpu : o_.cpus) {
    if (cpu >= ncpu) {
      return report(invalid_argument("'" + o_.cpu_text + "': cpu " + std::to_string(cpu) + ": must be 0.." +
                                     std::to_string(ncpu - 1) + " (the CPUs of this machine)"),
                    "--cpu");
    }
  }
  if (!o_.no_watchdog) {
    // Workers watch each other, but a lone one, or all of them stuck at
    // once, only the supervisor watches.
    Result<std::unique_ptr<Watchdog>> w = Watchdog::attach(o_.segment);
    if (!w) return report(w.status(), "worker");
    watchdog_ = std::move(*w);
  }
  if (const Status s = setup(); !s.is_ok()) return report(s, "worker");

  std::string limits;
  limits += o_.cpus.empty() ? "cpus -" : "cpus " + join_cpus(o_.cpus);
  limits += o_.max_tasks_per_child == 0 ? ", no recycling"
                                        : ", recycled after " + std::to_string(o_.max_tasks_per_child) + " tasks";
  limits += o_.max_rss_mib == 0 ? ", no memory limit"
                                : ", max private memory " + std::to_string(o_.max_rss_mib) + " MiB";
  limits += o_.no_watchdog ? ", no watchdog" : ", watchdog on";
  std::fprintf(stderr, "supervisor (pid %d) for segment '%s': %s; %s\n", static_cast<int>(getpid()),
               o_.segment.c_str(), plural(o_.processes, "worker process", "worker processes").c_str(),
               limits.c_str());

  spawn(0, monotonic_now_ns());
  for (;;) {
    std::int64_t now = monotonic_now_ns();
    if (mode_ == Mode::kRunning) {
      for (std::size_t place = 0; place < children_.size(); ++place) {
        Child& c = children_[place];
        if (c.pid < 0 && c.respawn_at_ns >= 0 && c.respawn_at_ns <= now) spawn(place, now);
        if (mode_ != Mode::kRunning) break;  // spawn gave up
      }
    }
    if (live() == 0 && (mode_ != Mode::kRunning || !respawn_pending())) break;
    pollfd fds[2] = {{sigfd_, POLLIN, 0}, {event_read_, POLLIN, 0}};
    if (poll(fds, 2, poll_timeout_ms(now)) < 0 && errno != EINTR) {
      const int err = errno;
      give_up(kExitFailure, std::string("poll failed: ") + std::strerror(err), {});
      // Without poll, wait for the children the plain way.
      while (live() != 0) {
        int status = 0;
        const pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno != EINTR) break;
        for (Child& c : children_) {
          if (c.pid == pid) c = Child{};
        }
      }
      break;
    }
    now = monotonic_now_ns();
    read_events();
    read_signals();
    reap(now);
    check_children(now);
  }

  std::string why;
  switch (mode_) {
    case Mode::kStopping:
      why = forced_signal_ != 0 ? std::string("killed its workers after a second stop signal")
                                : std::string("stopped by ") + signal_name(stop_signal_);
      break;
    case Mode::kDraining: why = "the segment was drained"; break;
    case Mode::kClosing: why = "the segment is closing"; break;
    case Mode::kGivingUp: why = "gave up"; break;
    default: why = "every worker process was stopped from outside"; break;
  }
  std::fprintf(stderr,
               "supervisor: %s; started %s: %llu died, %llu recycled after --max-tasks-per-child, %llu stopped "
               "over --max-rss\n",
               why.c_str(), plural(started_, "worker process", "worker processes").c_str(),
               static_cast<unsigned long long>(died_), static_cast<unsigned long long>(recycled_),
               static_cast<unsigned long long>(over_rss_));
  if (forced_signal_ != 0) return 128 + forced_signal_;
  return exit_code_;
}

int run_worker_command(WorkerCommand& o) {
  if (o.processes == 0) {
    if (o.cpus.size() > 1) {
      print_error("--cpu", "'" + o.cpu_text + "': a list of CPUs needs --processes (one worker pins to one CPU)",
                  "run 'taskring worker --help' for its flags");
      return kExitUsage;
    }
    return run_worker(o);
  }
  Supervisor supervisor(o);
  return supervisor.run();
}

}  // namespace

void add_worker_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<WorkerCommand>();
  CLI::App* sub = app.add_subcommand(
      "worker",
      "Run a worker (or with --processes, a supervisor of worker processes): built-in handlers plus plugins, until "
      "SIGINT/SIGTERM, a drain, or the segment closes");
  add_segment_option(sub, o->segment);
  add_list_option(sub, "-q,--queues", o->queues, "Comma-separated queues to serve (default: all)");
  add_parsed_option(
      sub, "--cpu", "--cpu",
      [o](std::string_view text) -> Status {
        o->cpu_text = std::string(text);
        o->cpus.clear();
        const std::vector<std::string> items = split_list(text);
        for (const std::string& item : items) {
          Result<std::uint64_t> cpu = parse_unsigned(item, 0, INT_MAX);
          if (!cpu) {
            if (items.size() == 1) return cpu.status();
            return invalid_argument("'" + std::string(text) + "': entry '" + item +
                                    "' is not a CPU number (a whole decimal number from 0; entries are separated "
                                    "by commas)");
          }
          o->cpus.push_back(static_cast<int>(*cpu));
        }
        return Status::ok();
      },
      "Pin the worker to this CPU; with --processes, a comma-separated list that the worker processes take in "
      "turn (default: no pinning)",
      "N[,N...]");
  CLI::Validator existing_file = CLI::ExistingFile;
  existing_file.description("");  // keep "FILE.so" as the whole type name in --help
  sub->add_option("--plugin", o->plugins, "Shared object exporting taskring_register_handlers (repeatable)")
      ->type_name("FILE.so")
      ->check(existing_file);
  add_unsigned_option(sub, "--batch", o->options.claim_batch, 1, UINT32_MAX,
                      "Tasks claimed from a queue ring at once (at most the segment's deque capacity)");
  sub->add_flag("--no-steal", o->no_steal, "Never take work from other workers' deques");
  CLI::Option* tasks = add_unsigned_option(sub, "--tasks", o->tasks, 1, UINT64_MAX,
                                           "Exit after processing this many tasks (default: run until stopped)")
                           ->default_str("");
  CLI::Option* processes =
      add_unsigned_option(sub, "--processes", o->processes, 1, kMaxProcesses,
                          "Supervise this many worker processes, replacing those that die (default: run one worker "
                          "in this process)")
          ->default_str("");
  tasks->excludes(processes);
  add_unsigned_option(sub, "--max-tasks-per-child", o->max_tasks_per_child, 1, UINT64_MAX,
                      "With --processes: replace a worker process after it processed this many tasks")
      ->default_str("")
      ->needs(processes);
  add_unsigned_option(sub, "--max-rss", o->max_rss_mib, 1, kMaxRssMib,
                      "With --processes: replace a worker process whose private memory exceeds this many MiB")
      ->type_name("MIB")
      ->default_str("")
      ->needs(processes);
  sub->add_flag("--no-watchdog", o->no_watchdog,
                "With --processes: do not enforce time limits and cancels from the supervisor (it then wakes only "
                "for its workers and --max-rss)")
      ->needs(processes);
  sub->callback([&action, o] { action = [o] { return run_worker_command(*o); }; });
}

}  // namespace taskring::cli
