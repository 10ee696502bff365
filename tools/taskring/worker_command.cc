#include "worker_command.h"

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "taskring/options.h"
#include "taskring/worker.h"

namespace taskring::cli {
namespace {

struct WorkerCommand {
  std::string segment;
  std::vector<std::string> queues;
  std::vector<std::string> plugins;
  WorkerOptions options;
  std::uint64_t tasks = 0;  // 0: run until stopped
  bool no_steal = false;
};

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

// Forwards a plugin's registrations to the worker and remembers the names
// and the first failure, which plugins tend to ignore.
class PluginRegistry final : public HandlerRegistry {
 public:
  explicit PluginRegistry(Worker& worker) : worker_(worker) {}
  Status register_handler(std::string_view task, Handler handler) override {
    Status s = worker_.register_handler(task, std::move(handler));
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

int run_worker(WorkerCommand& o) {
  o.options.queues = o.queues;
  o.options.steal = !o.no_steal;
  // Installed before attach so that a signal during start-up still ends
  // with a clean deregistration rather than a killed process.
  install_stop_handlers();
  Result<std::unique_ptr<Worker>> attached = Worker::attach(o.segment, o.options);
  if (!attached) {
    restore_default_handlers();
    const Status& s = attached.status();
    return report(s, flag_for_message(s.message(), {{"cpu", "--cpu"}, {"queue", "--queues"}, {"claim_batch", "--batch"}},
                                      "worker"));
  }
  std::unique_ptr<Worker> worker = std::move(*attached);
  worker->register_builtins();
  std::vector<std::string> plugin_handlers;
  for (const std::string& path : o.plugins) {
    if (const Status s = load_plugin(path, *worker, plugin_handlers); !s.is_ok()) {
      restore_default_handlers();
      return report(s, "worker");
    }
  }
  // release: publishes the constructed Worker to on_stop_signal; pairs with
  // the acquire there.
  g_worker.store(worker.get(), std::memory_order_release);

  std::fprintf(stderr,
               "worker %d (pid %d) attached to segment '%s': queues %s, cpu %s, claim batch %u, stealing %s; "
               "handlers: %s\n",
               worker->index(), static_cast<int>(getpid()), o.segment.c_str(),
               o.queues.empty() ? "(all)" : join(o.queues).c_str(),
               o.options.cpu < 0 ? "-" : std::to_string(o.options.cpu).c_str(), o.options.claim_batch,
               o.options.steal ? "on" : "off", join(worker->handler_names()).c_str());

  const std::int64_t start_ns = monotonic_now_ns();
  Status run_status;
  // A signal before this point set g_stop_signal; one after it reaches
  // run() through Worker::stop(), which run() honours even if it came first.
  if (g_stop_signal == 0) run_status = o.tasks == 0 ? worker->run() : worker->run_tasks(o.tasks);
  const std::int64_t elapsed_ns = monotonic_now_ns() - start_ns;

  g_worker.store(nullptr, std::memory_order_release);  // release: pairs with the handler's acquire
  restore_default_handlers();

  const WorkerStats st = worker->stats();
  std::string why;
  if (g_stop_signal != 0) {
    why = std::string("stopped by ") + (g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
  } else if (!run_status.is_ok()) {
    why = "failed";
  } else if (o.tasks != 0 && st.succeeded + st.failed + st.cancelled >= o.tasks) {
    why = "processed --tasks " + std::to_string(o.tasks);
  } else {
    why = "the segment is closing";
  }
  std::fprintf(stderr,
               "worker %d: claimed %llu, succeeded %llu, failed %llu, cancelled %llu, stolen %llu, parks %llu "
               "in %s; %s\n",
               st.index, static_cast<unsigned long long>(st.claimed), static_cast<unsigned long long>(st.succeeded),
               static_cast<unsigned long long>(st.failed), static_cast<unsigned long long>(st.cancelled),
               static_cast<unsigned long long>(st.stolen), static_cast<unsigned long long>(st.parks),
               format_duration_ns(elapsed_ns).c_str(), why.c_str());
  if (!run_status.is_ok()) return report(run_status, "worker");
  return kExitOk;
}

}  // namespace

void add_worker_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<WorkerCommand>();
  CLI::App* sub = app.add_subcommand(
      "worker", "Run a worker: built-in handlers plus plugins, until SIGINT/SIGTERM or the segment closes");
  add_segment_option(sub, o->segment);
  add_list_option(sub, "-q,--queues", o->queues, "Comma-separated queues to serve (default: all)");
  add_parsed_option(
      sub, "--cpu", "--cpu",
      [o](std::string_view text) -> Status {
        Result<std::uint64_t> cpu = parse_unsigned(text, 0, INT_MAX);
        if (!cpu) return cpu.status();
        o->options.cpu = static_cast<int>(*cpu);
        return Status::ok();
      },
      "Pin the worker to this CPU (default: no pinning)", "N");
  CLI::Validator existing_file = CLI::ExistingFile;
  existing_file.description("");  // keep "FILE.so" as the whole type name in --help
  sub->add_option("--plugin", o->plugins, "Shared object exporting taskring_register_handlers (repeatable)")
      ->type_name("FILE.so")
      ->check(existing_file);
  add_unsigned_option(sub, "--batch", o->options.claim_batch, 1, UINT32_MAX,
                      "Tasks claimed from a queue ring at once (at most the segment's deque capacity)");
  sub->add_flag("--no-steal", o->no_steal, "Never take work from other workers' deques");
  add_unsigned_option(sub, "--tasks", o->tasks, 1, UINT64_MAX,
                      "Exit after processing this many tasks (default: run until stopped)")
      ->default_str("");
  sub->callback([&action, o] { action = [o] { return run_worker(*o); }; });
}

}  // namespace taskring::cli
