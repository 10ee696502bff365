// taskring._core: the nanobind extension under the taskring Python package.
// It binds the engine's Client, Worker, admin and recovery calls. Every call
// that may block releases the GIL, in slices of at most kSliceNs, and checks
// for pending signals between slices, so that Ctrl-C interrupts it with
// KeyboardInterrupt. The package's Python modules build the public API on top
// (handles, codecs, asyncio, the task decorator); the names here that start
// with an underscore are theirs.
//
// Thread safety: a Client may be used from many Python threads at once (the
// engine's Client is thread-safe). A Worker runs on one thread at a time;
// stop() may be called from any thread. Completions has one collecting
// thread and any number of watching threads.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>  // _Watchdog.attach returns one
#include <nanobind/stl/vector.h>

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/ipc/futex.h"
#include "taskring/recovery.h"
#include "taskring/worker.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace taskring::python {
namespace {

// The longest a blocking call runs without the GIL before it looks for a
// pending signal (Ctrl-C) and re-checks its deadline.
constexpr std::int64_t kSliceNs = 100'000'000;

// ---- Errors ------------------------------------------------------------------
// taskring._errors (pure Python) defines the exception classes, so that they
// pickle and print like any Python exception. Looked up once; the references
// are kept for the life of the process.
PyObject* error_class(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument: return PyExc_ValueError;
    case StatusCode::kDeadlineExceeded: return PyExc_TimeoutError;
    default: break;
  }
  static PyObject* classes[static_cast<int>(StatusCode::kInternal) + 1] = {};
  const int index = static_cast<int>(code);
  if (index < 0 || index > static_cast<int>(StatusCode::kInternal)) return PyExc_RuntimeError;
  if (classes[index] == nullptr) {
    static const char* const names[] = {
        "Error",                    // kOk: never raised
        "Error",                    // kInvalidArgument: ValueError above
        "NotFoundError",            // kNotFound
        "AlreadyExistsError",       // kAlreadyExists
        "FailedPreconditionError",  // kFailedPrecondition
        "PermissionDeniedError",    // kPermissionDenied
        "FullError",                // kResourceExhausted
        "Error",                    // kDeadlineExceeded: TimeoutError above
        "UnavailableError",         // kUnavailable
        "DataLossError",            // kDataLoss
        "CancelledError",           // kCancelled
        "InternalError",            // kInternal
    };
    nb::object module = nb::module_::import_("taskring._errors");
    classes[index] = nb::object(module.attr(names[index])).release().ptr();
  }
  return classes[index];
}

[[noreturn]] void raise_status(const Status& s) {
  PyErr_SetString(error_class(s.code()), s.message().c_str());
  throw nb::python_error();
}

template <typename T>
T take(Result<T>&& r) {
  if (!r) raise_status(r.status());
  return std::move(r).value();
}

void check(const Status& s) {
  if (!s.is_ok()) raise_status(s);
}

// Runs the signal handlers of pending signals; a KeyboardInterrupt (or what
// a handler raised) propagates. Call with the GIL held.
void check_signals() {
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
}

// SubmitOptions::interrupted for a durable submit, which waits inside the
// engine with the GIL released: runs Python's signal handlers; true, with
// the exception set (KeyboardInterrupt), if one raised.
bool python_interrupted(void*) {
  nb::gil_scoped_acquire locked;
  return PyErr_CheckSignals() != 0;
}

// Raises what a failed submit returned: the exception python_interrupted
// left set, or the engine's error.
[[noreturn]] void raise_submit_error(const Status& s) {
  if (s.code() == StatusCode::kCancelled && PyErr_Occurred() != nullptr) throw nb::python_error();
  raise_status(s);
}

std::int64_t deadline_after(std::int64_t timeout_ns) {
  return timeout_ns < 0 ? INT64_MAX : ipc::monotonic_ns() + timeout_ns;
}

// Raises TimeoutError for a batch wait: `left` of `n` tasks unfinished when
// the `timeout_ns` passed; `first` names the first of them.
[[noreturn]] void raise_unfinished(std::size_t left, std::size_t n, std::int64_t timeout_ns, const std::string& first) {
  raise_status(Status(StatusCode::kDeadlineExceeded,
                      std::to_string(left) + " of " + std::to_string(n) + " tasks have not finished after " +
                          std::to_string(timeout_ns / 1'000'000) + " ms (the first is " + first + ")"));
}

// ---- Byte views ------------------------------------------------------------
// A read-only view of any object with the buffer protocol (bytes,
// bytearray, memoryview, array, numpy): no copy. The exporter keeps the
// memory fixed until release, also while the GIL is released.
class Bytes {
 public:
  Bytes(nb::handle obj, const char* field) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      const std::string type = nb::type_name(obj.type()).c_str();
      PyErr_Format(PyExc_TypeError,
                   "%s: expected a bytes-like object (bytes, bytearray, memoryview or any C-contiguous "
                   "buffer), got %s; encode it first, or give the client or task a codec",
                   field, type.c_str());
      throw nb::python_error();
    }
    held_ = true;
  }
  Bytes(Bytes&& o) noexcept : view_(o.view_), held_(o.held_) { o.held_ = false; }
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;
  Bytes& operator=(Bytes&&) = delete;
  ~Bytes() {
    if (held_) PyBuffer_Release(&view_);  // with the GIL: every Bytes dies where it was made
  }
  std::string_view view() const noexcept {
    return {static_cast<const char*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

nb::bytes to_bytes(std::string_view s) { return nb::bytes(s.data(), s.size()); }

// The tasks of a batch call: a view of each payload (held while the GIL is
// released) and its name. `names` has one entry (for every task) or one per
// payload; anything else is a ValueError naming both counts.
struct Batch {
  std::vector<Bytes> held;
  std::vector<TaskSpec> specs;

  Batch(const std::vector<std::string>& names, nb::handle payloads) {
    nb::sequence seq = nb::borrow<nb::sequence>(payloads);
    const std::size_t n = nb::len(seq);
    if (names.size() != 1 && names.size() != n) {
      raise_status(Status(StatusCode::kInvalidArgument,
                          "tasks: " + std::to_string(names.size()) + " names for " + std::to_string(n) +
                              " payloads: give one name, or one per payload"));
    }
    held.reserve(n);
    specs.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      held.emplace_back(seq[i], "payloads[i]");
      specs[i] = TaskSpec{names.size() == 1 ? names[0] : names[i], held.back().view()};
    }
  }
};

// ---- Values handed to Python ---------------------------------------------------
// A finished task, as Client.wait returns it (taskring.Outcome).
struct Outcome {
  TaskOutcome o;
  std::uint64_t id() const { return o.id.value; }
  std::string_view state() const { return state_name(o.state); }
  nb::bytes value() const { return to_bytes(o.value); }
  bool ok() const { return o.ok(); }
};

// A snapshot of a task (taskring.TaskStatus).
struct Info {
  TaskInfo i;
};

std::string_view cancel_outcome_name(CancelOutcome c) {
  switch (c) {
    case CancelOutcome::kCancelled: return "cancelled";
    case CancelOutcome::kRequested: return "requested";
    case CancelOutcome::kAlreadyFinished: return "finished";
  }
  return "finished";
}

Priority to_priority(int p) {
  if (p < 0 || p >= kPriorityCount) {
    raise_status(Status(StatusCode::kInvalidArgument,
                        "priority " + std::to_string(p) + ": must be 0..3 (critical, high, normal, low)"));
  }
  return static_cast<Priority>(p);
}

// ---- Client --------------------------------------------------------------------
class PyClient {
 public:
  explicit PyClient(std::string_view segment) : client_(take(Client::attach(segment))) {}

  Client& client() { return client_; }

  // One task. The non-blocking path keeps the GIL (a submit takes well under
  // a microsecond); a full structure under a wait policy, and a durable
  // submit, release it.
  std::uint64_t submit(std::string_view task, nb::handle payload, std::string_view queue, int priority,
                       std::int64_t delay_ns, std::uint32_t max_attempts, std::uint32_t max_crashes,
                       std::int64_t time_limit_ns, std::int64_t timeout_ns, bool durable, bool detached) {
    Bytes bytes(payload, "payload");
    SubmitOptions o = options(queue, priority, delay_ns, max_attempts, max_crashes, time_limit_ns, durable, detached);
    if (!durable) {
      o.on_full = FullPolicy::kFail;
      auto r = client_.submit(task, bytes.view(), o);
      if (r || r.status().code() != StatusCode::kResourceExhausted || timeout_ns == 0) return take(std::move(r)).value;
      o.on_full = FullPolicy::kWait;
    }
    const std::int64_t deadline = deadline_after(timeout_ns);
    for (;;) {
      const std::int64_t now = ipc::monotonic_ns();
      // A durable submit waits for the sidecar inside the engine: its whole
      // timeout is one call (a retry would submit the task twice).
      o.timeout_ns = durable ? timeout_ns : std::clamp<std::int64_t>(deadline - now, 0, kSliceNs);
      std::optional<Result<TaskId>> attempt;
      {
        nb::gil_scoped_release unlocked;
        attempt.emplace(client_.submit(task, bytes.view(), o));
      }
      Result<TaskId>& r = *attempt;
      if (r) return r->value;
      if (durable || r.status().code() != StatusCode::kResourceExhausted || ipc::monotonic_ns() >= deadline) {
        raise_submit_error(r.status());
      }
      check_signals();
    }
  }

  // A batch: names has one entry (for every task) or one per payload.
  std::vector<std::uint64_t> submit_many(const std::vector<std::string>& names, nb::handle payloads,
                                         std::string_view queue, int priority, std::int64_t delay_ns,
                                         std::uint32_t max_attempts, std::uint32_t max_crashes,
                                         std::int64_t time_limit_ns, std::int64_t timeout_ns, bool durable,
                                         bool detached) {
    const Batch batch(names, payloads);
    const std::vector<TaskSpec>& specs = batch.specs;
    const std::size_t n = specs.size();
    SubmitOptions o = options(queue, priority, delay_ns, max_attempts, max_crashes, time_limit_ns, durable, detached);
    o.on_full = FullPolicy::kWait;
    std::vector<TaskId> ids(n);
    const std::int64_t deadline = deadline_after(timeout_ns);
    std::size_t done = 0;
    while (done < n) {
      const std::int64_t now = ipc::monotonic_ns();
      o.timeout_ns = durable ? timeout_ns : std::clamp<std::int64_t>(deadline - now, 0, kSliceNs);
      std::optional<Result<std::size_t>> attempt;
      {
        nb::gil_scoped_release unlocked;
        attempt.emplace(client_.submit_batch(std::span(specs).subspan(done), std::span(ids).subspan(done), o));
      }
      Result<std::size_t>& r = *attempt;
      if (r) {
        done += *r;
        if (done == n) break;
      } else if (r.status().code() != StatusCode::kResourceExhausted || durable) {
        if (done == 0 || PyErr_Occurred() != nullptr) raise_submit_error(r.status());
        break;  // report what was submitted; the message is lost only if some went in
      }
      if (ipc::monotonic_ns() >= deadline) {
        if (done == 0) raise_status(r ? Status(StatusCode::kResourceExhausted, "queue full") : r.status());
        break;
      }
      check_signals();
    }
    std::vector<std::uint64_t> out(done);
    for (std::size_t i = 0; i < done; ++i) out[i] = ids[i].value;
    return out;
  }

  // Waits for every handle in `handles` whose `_outcome` is None and stores
  // each outcome there as soon as it is read, so that an interrupt or a
  // timeout loses none (a result is read once). Raises TimeoutError if the
  // deadline passes first.
  void wait_into(nb::handle handles, std::int64_t timeout_ns) {
    nb::sequence seq = nb::borrow<nb::sequence>(handles);
    const std::size_t n = nb::len(seq);
    const std::int64_t deadline = deadline_after(timeout_ns);
    std::vector<std::pair<std::size_t, TaskId>> todo;
    for (std::size_t i = 0; i < n; ++i) {
      nb::object h = seq[i];
      if (h.attr("_outcome").is_none()) todo.emplace_back(i, TaskId{nb::cast<std::uint64_t>(h.attr("id"))});
    }
    std::size_t next = 0;
    while (next < todo.size()) {
      std::vector<Outcome> got;
      Status error;
      {
        nb::gil_scoped_release unlocked;
        const std::int64_t slice_end = std::min(deadline, ipc::monotonic_ns() + kSliceNs);
        while (next + got.size() < todo.size()) {
          const std::int64_t left = std::max<std::int64_t>(slice_end - ipc::monotonic_ns(), 0);
          auto r = client_.wait(todo[next + got.size()].second, left);
          if (!r) {
            error = r.status();
            break;
          }
          got.push_back(Outcome{std::move(r).value()});
        }
      }
      for (Outcome& o : got) seq[todo[next++].first].attr("_outcome") = nb::cast(std::move(o));
      if (next == todo.size()) break;
      if (error.code() != StatusCode::kDeadlineExceeded) raise_status(error);
      check_signals();
      if (ipc::monotonic_ns() >= deadline) {
        raise_unfinished(todo.size() - next, n, timeout_ns, "task " + to_string(todo[next].second));
      }
    }
  }

  // One task: the outcome, or TimeoutError. A task that finished already
  // costs no GIL release; the waits in between consume nothing, so an
  // interrupt loses no result.
  Outcome wait(std::uint64_t id, std::int64_t timeout_ns) {
    const TaskId task{id};
    const std::int64_t deadline = deadline_after(timeout_ns);
    for (;;) {
      auto done = take(client_.try_get(task));
      if (done) return Outcome{std::move(*done)};
      const std::int64_t left = deadline - ipc::monotonic_ns();
      if (left <= 0) {
        raise_status(Status(StatusCode::kDeadlineExceeded, "task " + to_string(task) + " has not finished after " +
                                                               std::to_string(timeout_ns / 1'000'000) + " ms"));
      }
      std::optional<Result<TaskOutcome>> r;
      {
        nb::gil_scoped_release unlocked;
        r.emplace(client_.wait(task, std::min(left, kSliceNs)));
      }
      if (*r) return Outcome{std::move(*r).value()};
      if (r->status().code() != StatusCode::kDeadlineExceeded) raise_status(r->status());
      check_signals();
    }
  }

  // submit and wait in one call, within one timeout. On a timeout or an
  // interrupt the task is released: it still runs, and its outcome is
  // freed unread.
  Outcome call(std::string_view task, nb::handle payload, std::string_view queue, int priority,
               std::int64_t delay_ns, std::uint32_t max_attempts, std::uint32_t max_crashes,
               std::int64_t time_limit_ns, std::int64_t timeout_ns, bool durable) {
    const std::int64_t deadline = deadline_after(timeout_ns);
    const std::uint64_t id = submit(task, payload, queue, priority, delay_ns, max_attempts, max_crashes,
                                    time_limit_ns, timeout_ns, durable, false);
    try {
      return wait(id, timeout_ns < 0 ? -1 : std::max<std::int64_t>(deadline - ipc::monotonic_ns(), 0));
    } catch (nb::python_error&) {
      (void)client_.release(TaskId{id});  // not found: it was read or freed meanwhile, nothing to give up
      throw;
    }
  }

  // A batch of calls: submits as many tasks as there is room for, waits
  // for those in order, and repeats, each round in one GIL release. Every
  // task submitted is read, also on an error: a timeout or an interrupt
  // releases those still unread (they run; their outcomes are freed) and
  // submits no more. Returns (results, None) when every task succeeded,
  // else (None, the Outcome of the first that did not). Not durable: a
  // durable batch that fails its wait for the disk went in with ids the
  // engine does not return, so they could not be read or released.
  nb::tuple call_many(const std::vector<std::string>& names, nb::handle payloads, std::string_view queue,
                      int priority, std::int64_t delay_ns, std::uint32_t max_attempts, std::uint32_t max_crashes,
                      std::int64_t time_limit_ns, std::int64_t timeout_ns) {
    const Batch batch(names, payloads);
    const std::size_t n = batch.specs.size();
    SubmitOptions o = options(queue, priority, delay_ns, max_attempts, max_crashes, time_limit_ns, false, false);
    std::vector<TaskId> ids(n);
    std::vector<TaskOutcome> outcomes(n);
    const std::int64_t deadline = deadline_after(timeout_ns);
    std::size_t submitted = 0;  // ids[0, submitted) went in
    std::size_t read = 0;       // outcomes[0, read) are read
    try {
      while (read < n) {
        Status submit_error, wait_error;
        {
          nb::gil_scoped_release unlocked;
          const std::int64_t slice_end = std::min(deadline, ipc::monotonic_ns() + kSliceNs);
          if (submitted == read) {
            // Nothing of ours in flight: take what fits at once, or wait
            // (within the slice) for room made by others, for one task only,
            // so that the wait ends as soon as any room comes.
            const auto specs = std::span(batch.specs).subspan(submitted);
            const auto out = std::span(ids).subspan(submitted);
            o.on_full = FullPolicy::kFail;
            o.timeout_ns = 0;
            auto r = client_.submit_batch(specs, out, o);
            if (!r && r.status().code() == StatusCode::kResourceExhausted) {
              o.on_full = FullPolicy::kWait;
              o.timeout_ns = std::max<std::int64_t>(slice_end - ipc::monotonic_ns(), 0);
              r = client_.submit_batch(specs.first(1), out.first(1), o);
            }
            if (r) {
              submitted += *r;
            } else {
              submit_error = r.status();
            }
          }
          while (read < submitted) {
            const std::int64_t left = std::max<std::int64_t>(slice_end - ipc::monotonic_ns(), 0);
            auto r = client_.wait(ids[read], left);
            if (!r) {
              wait_error = r.status();
              break;
            }
            outcomes[read++] = std::move(r).value();
          }
        }
        if (read == n) break;
        // Room that did not come within the slice is tried again; any other
        // submit error, and a wait error other than the slice ending, raise.
        const bool full = submit_error.code() == StatusCode::kResourceExhausted;
        if (!submit_error.is_ok() && !full) raise_submit_error(submit_error);
        if (!wait_error.is_ok() && wait_error.code() != StatusCode::kDeadlineExceeded) raise_status(wait_error);
        check_signals();
        if (ipc::monotonic_ns() >= deadline) {
          if (full) raise_status(submit_error);
          raise_unfinished(n - read, n, timeout_ns,
                           read < submitted ? "task " + to_string(ids[read]) : std::string("not submitted yet"));
        }
      }
    } catch (nb::python_error&) {
      for (std::size_t i = read; i < submitted; ++i) (void)client_.release(ids[i]);  // not found: freed meanwhile
      throw;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!outcomes[i].ok()) return nb::make_tuple(nb::none(), Outcome{std::move(outcomes[i])});
    }
    nb::list values;
    for (const TaskOutcome& t : outcomes) values.append(to_bytes(t.value));
    return nb::make_tuple(values, nb::none());
  }

  std::optional<Outcome> try_get(std::uint64_t id) {
    auto r = take(client_.try_get(TaskId{id}));
    if (!r) return std::nullopt;
    return Outcome{std::move(*r)};
  }

  Info peek(std::uint64_t id) { return Info{take(client_.peek(TaskId{id}))}; }
  std::string_view cancel(std::uint64_t id) { return cancel_outcome_name(take(client_.cancel(TaskId{id}))); }
  void release(std::uint64_t id) { check(client_.release(TaskId{id})); }
  void requeue(std::uint64_t id) { check(client_.requeue(TaskId{id})); }
  void purge(std::uint64_t id) { check(client_.purge(TaskId{id})); }

  std::vector<Info> dead_letters(std::size_t limit) {
    std::vector<TaskInfo> v = take(client_.dead_letters(limit));
    std::vector<Info> out;
    out.reserve(v.size());
    for (TaskInfo& i : v) out.push_back(Info{std::move(i)});
    return out;
  }

 private:
  SubmitOptions options(std::string_view queue, int priority, std::int64_t delay_ns, std::uint32_t max_attempts,
                        std::uint32_t max_crashes, std::int64_t time_limit_ns, bool durable, bool detached) {
    SubmitOptions o;
    o.queue = queue;
    o.priority = to_priority(priority);
    o.delay_ns = delay_ns;
    o.max_attempts = max_attempts;
    o.max_crashes = max_crashes;
    o.time_limit_ns = time_limit_ns;
    o.durable = durable;
    o.detached = detached;
    if (durable) o.interrupted = python_interrupted;  // the engine's wait for the disk lets Ctrl-C through
    return o;
  }

  Client client_;
};

// ---- Completions: one thread waits for many tasks (asyncio) -----------------------
// The collecting thread registers as a completion listener, checks the
// watched tasks, and parks until any task of the segment finishes (the
// engine's wake; Client::listen_completions). watch_many() wakes a parked
// collector, so a task that finished before it was watched is seen at once.
class Completions {
 public:
  explicit Completions(std::shared_ptr<PyClient> client) : client_(std::move(client)) {}

  // Adds tasks to the watched set: one lock and at most one wake.
  void watch_many(const std::vector<std::uint64_t>& ids) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (std::uint64_t id : ids) pending_.push_back(TaskId{id});
    }
    // Acquire: pairs with the release store of parked_ in collect.
    if (parked_.load(std::memory_order_acquire)) client_->client().wake_completion_listeners();
  }

  // Waits (GIL released) until at least one watched task finished, the
  // timeout passes or close() was called. Returns (id, outcome or
  // exception) pairs; an exception is for a task that is gone (somebody else
  // read its result).
  nb::list collect(std::int64_t timeout_ns) {
    std::vector<std::pair<TaskId, Result<TaskOutcome>>> got;
    {
      nb::gil_scoped_release unlocked;
      const std::int64_t deadline = deadline_after(timeout_ns);
      Client& c = client_->client();
      // Relaxed: close() is a request seen within one park slice.
      while (got.empty() && !closed_.load(std::memory_order_relaxed)) {
        // [P1] release: a watcher that sees parked_ wakes us; a watcher that
        // does not pushed before our snapshot below (both under mu_).
        parked_.store(true, std::memory_order_release);
        const std::uint32_t seq = c.listen_completions();
        std::vector<TaskId> mine;
        {
          std::lock_guard<std::mutex> lock(mu_);
          mine.swap(pending_);
        }
        std::vector<TaskId> still;
        for (TaskId id : mine) {
          auto r = c.try_get(id);
          if (r && !r->has_value()) {
            still.push_back(id);
          } else if (r) {
            got.emplace_back(id, std::move(**r));
          } else {
            got.emplace_back(id, r.status());
          }
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          pending_.insert(pending_.end(), still.begin(), still.end());
        }
        const std::int64_t now = ipc::monotonic_ns();
        if (got.empty() && now < deadline) c.wait_completions(seq, std::min(deadline - now, kSliceNs));
        c.unlisten_completions();
        parked_.store(false, std::memory_order_relaxed);  // relaxed: only spares watchers a wake
        if (ipc::monotonic_ns() >= deadline) break;
      }
    }
    nb::list out;
    for (auto& [id, r] : got) {
      if (r) {
        out.append(nb::make_tuple(id.value, nb::cast(Outcome{std::move(r).value()})));
      } else {
        nb::object cls = nb::borrow(error_class(r.status().code()));
        out.append(nb::make_tuple(id.value, cls(r.status().message())));
      }
    }
    return out;
  }

  // Makes a collect() in progress return within one park slice.
  void close() {
    closed_.store(true, std::memory_order_relaxed);  // relaxed: a request, see collect
    client_->client().wake_completion_listeners();
  }

  std::size_t pending() {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_.size();
  }

 private:
  std::shared_ptr<PyClient> client_;
  std::mutex mu_;  // guards pending_ (process-local: no shared-memory lock)
  std::vector<TaskId> pending_;
  std::atomic<bool> parked_{false};
  std::atomic<bool> closed_{false};
};

// ---- Worker --------------------------------------------------------------------
// What a handler sees (taskring.Context). Valid only while the handler runs:
// afterwards every method raises FailedPreconditionError.
class Context {
 public:
  explicit Context(TaskContext* ctx) : ctx_(ctx) {}
  void invalidate() { ctx_ = nullptr; }
  TaskContext& get() const {
    if (ctx_ == nullptr) {
      raise_status(Status(StatusCode::kFailedPrecondition, "this task context is used after its handler returned"));
    }
    return *ctx_;
  }
  // The engine's set_result after a fail makes the task succeed, and the
  // package's wrapper returns b"" for a handler that returned None; so
  // ctx.fail is remembered here and the handler's return value ignored.
  void fail(std::string_view message) {
    get().fail(message);
    failed_ = true;
  }
  bool failed() const { return failed_; }

 private:
  TaskContext* ctx_;
  bool failed_ = false;
};

// The worker whose stop() the signal handler calls while run() runs on the
// main thread; one at a time.
std::atomic<Worker*> g_signal_worker{nullptr};
volatile sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_signal = sig;
  // Acquire: pairs with the release store in run(), so the worker is whole.
  if (Worker* w = g_signal_worker.load(std::memory_order_acquire)) w->stop();
}

class PyWorker {
 public:
  PyWorker(std::string_view segment, std::vector<std::string> queues, int cpu, std::uint32_t claim_batch, bool steal) {
    WorkerOptions o;
    o.queues = std::move(queues);
    o.cpu = cpu;
    o.claim_batch = claim_batch;
    o.steal = steal;
    worker_ = take(Worker::attach(segment, o));
  }

  ~PyWorker() {
    Worker* me = worker_.get();
    g_signal_worker.compare_exchange_strong(me, nullptr, std::memory_order_acq_rel);  // acq_rel: as in run()
  }

  // `fn` is called with a Context, or, when `finish` is given (a handler of
  // bytes without bind), straight with the payload: see call_direct.
  void register_handler(std::string_view task, nb::object fn, std::uint32_t max_attempts, std::int64_t time_limit_ns,
                        std::int64_t kill_grace_ns, std::int64_t retry_backoff_ns, std::int64_t retry_backoff_max_ns,
                        nb::object finish, nb::object describe) {
    HandlerOptions o;
    o.max_attempts = max_attempts;
    o.time_limit_ns = time_limit_ns;
    o.kill_grace_ns = kill_grace_ns;
    o.retry_backoff_ns = retry_backoff_ns;
    o.retry_backoff_max_ns = retry_backoff_max_ns;
    // The handler runs on the thread of run(), which holds no GIL there.
    Handler handler;
    if (finish.is_none()) {
      handler = [this, fn = std::make_shared<nb::object>(fn)](TaskContext& ctx) { call(*fn, ctx); };
    } else {
      auto direct = std::make_shared<Direct>(Direct{fn, finish, describe});
      handler = [this, direct](TaskContext& ctx) { call_direct(*direct, ctx); };
    }
    check(worker_->register_handler(task, std::move(handler), o));
    handlers_.push_back(std::move(fn));
  }

  void register_builtins() { worker_->register_builtins(); }

  // Runs until stop(), a drain, the segment closing, or max_tasks tasks
  // (< 0: no limit). On the main thread, SIGINT and SIGTERM stop it after
  // the running task; SIGINT then raises KeyboardInterrupt. Returns
  // "stopped", "drained" or "signal".
  std::string run(std::int64_t max_tasks, bool handle_signals) {
    struct sigaction old_int {}, old_term {};
    if (handle_signals) {
      g_signal = 0;
      // [W1] release: publishes the worker to the signal handler.
      g_signal_worker.store(worker_.get(), std::memory_order_release);
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C ends the process at once
      sigaction(SIGINT, &sa, &old_int);
      sigaction(SIGTERM, &sa, &old_term);
    }
    Status s;
    {
      nb::gil_scoped_release unlocked;
      s = max_tasks < 0 ? worker_->run() : worker_->run_tasks(static_cast<std::uint64_t>(max_tasks));
    }
    int sig = 0;
    if (handle_signals) {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      g_signal_worker.store(nullptr, std::memory_order_release);  // release: as [W1]
      sig = g_signal;
    }
    if (interrupt_) {  // a handler raised KeyboardInterrupt or SystemExit
      std::unique_ptr<nb::python_error> e = std::move(interrupt_);
      e->restore();
      throw nb::python_error();
    }
    check(s);
    if (sig == SIGINT) {
      PyErr_SetNone(PyExc_KeyboardInterrupt);
      throw nb::python_error();
    }
    if (sig != 0) return "signal";
    return worker_->drained() ? "drained" : "stopped";
  }

  void stop() { worker_->stop(); }
  int index() const { return worker_->index(); }
  std::vector<std::string> handler_names() const { return worker_->handler_names(); }

  nb::dict stats() const {
    const WorkerStats s = worker_->stats();
    nb::dict d;
    d["index"] = s.index;
    d["claimed"] = s.claimed;
    d["succeeded"] = s.succeeded;
    d["failed"] = s.failed;
    d["cancelled"] = s.cancelled;
    d["retried"] = s.retried;
    d["stolen"] = s.stolen;
    d["parks"] = s.parks;
    return d;
  }

 private:
  // Calls the Python handler with a Context; its return value (bytes-like
  // or None) is the result. The package's wrapper turns exceptions into
  // ctx.fail itself; one that escapes it fails the task here, and
  // KeyboardInterrupt or SystemExit also stops the worker and is raised
  // again from run().
  void call(nb::object& fn, TaskContext& ctx) {
    nb::gil_scoped_acquire locked;
    nb::object holder = nb::cast(Context(&ctx));
    try {
      nb::object r = fn(holder);
      if (!r.is_none() && !nb::cast<Context&>(holder).failed()) {
        Bytes b(r, "handler result");
        ctx.set_result(b.view());
      }
    } catch (nb::python_error& e) {
      if (!stop_on_interrupt(e, ctx)) ctx.fail(e.what());
    } catch (const std::exception& e) {  // e.g. a failed cast of the return value
      ctx.fail(std::string("handler wrapper: ") + e.what());
    }
    nb::cast<Context&>(holder).invalidate();
  }

  // A handler called with the payload: no Context object and no Python
  // wrapper frame per task, the cheapest call there is. `finish(result)`
  // turns a result that is neither None nor bytes-like into one (it runs
  // an awaitable on the worker's event loop); `describe(exc, id, attempt)`
  // gives the failure message of an exception (and logs it).
  struct Direct {
    nb::object fn, finish, describe;
  };

  // As call, for a Direct handler. A None result ends the task cancelled if
  // a cancel was requested, else succeeded with an empty result; the
  // package's wrapper does the same for the Context form.
  void call_direct(const Direct& h, TaskContext& ctx) {
    nb::gil_scoped_acquire locked;
    try {
      nb::object r = h.fn(to_bytes(ctx.payload()));
      if (!r.is_none() && PyObject_CheckBuffer(r.ptr()) == 0) r = h.finish(r);
      if (r.is_none()) {
        if (!ctx.cancel_requested()) ctx.set_result({});
      } else {
        Bytes b(r, "handler result");
        ctx.set_result(b.view());
      }
    } catch (nb::python_error& e) {
      if (!stop_on_interrupt(e, ctx)) {
        try {
          ctx.fail(nb::cast<std::string>(h.describe(e.value(), ctx.id().value, ctx.attempt())));
        } catch (nb::python_error&) {  // describe itself failed: say what the task raised
          ctx.fail(e.what());
        }
      }
    }
  }

  // For KeyboardInterrupt and SystemExit from a handler: fails the attempt,
  // stops the worker, and keeps the exception for run() to raise again.
  bool stop_on_interrupt(nb::python_error& e, TaskContext& ctx) {
    if (!e.matches(PyExc_KeyboardInterrupt) && !e.matches(PyExc_SystemExit)) return false;
    ctx.fail(std::string("worker interrupted while running the task: ") + e.what());
    if (!interrupt_) interrupt_ = std::make_unique<nb::python_error>(std::move(e));
    worker_->stop();
    return true;
  }

  std::unique_ptr<Worker> worker_;
  std::vector<nb::object> handlers_;
  std::unique_ptr<nb::python_error> interrupt_;
};

// ---- Admin ---------------------------------------------------------------------
void create(std::string_view name, std::uint32_t slots, const std::vector<std::string>& queues,
            std::uint32_t ring_capacity, std::uint32_t max_payload, std::uint64_t payload_area,
            std::uint32_t max_workers, std::uint32_t deque_capacity, std::uint64_t result_ttl_ns,
            std::string_view journal, std::uint32_t journal_capacity, unsigned mode, bool replace) {
  EngineConfig c;
  c.slots = slots;
  c.queues = queues;
  c.ring_capacity = ring_capacity;
  c.max_payload = max_payload;
  c.payload_area = payload_area;
  c.max_workers = max_workers;
  c.deque_capacity = deque_capacity;
  c.result_ttl_ns = result_ttl_ns;
  c.journal = take(parse_journal_mode(journal));
  c.journal_capacity = journal_capacity;
  c.mode = mode;
  check(create_segment(name, c, replace));
}

nb::dict info_dict(const TaskInfo& i) {
  nb::dict d;
  d["id"] = i.id.value;
  d["state"] = state_name(i.state);
  d["task"] = i.task_name;
  d["queue"] = i.queue;
  d["priority"] = priority_name(i.priority);
  d["attempts"] = i.attempts;
  d["max_attempts"] = i.max_attempts;
  d["crashes"] = i.crashes;
  d["last_crash"] = i.crashes > 0 ? nb::cast(i.last_crash.describe()) : nb::none();
  d["owner_worker"] = i.owner_worker;
  d["cancel_requested"] = i.cancel_requested;
  d["timed_out"] = i.timed_out;
  d["payload_bytes"] = i.payload_bytes;
  d["value"] = to_bytes(i.value);
  d["last_error"] = i.last_error;
  d["progress"] = i.progress_total == 0 && i.progress_done == 0
                      ? nb::none()
                      : nb::cast(std::make_pair(i.progress_done, i.progress_total));
  d["submit_ns"] = i.submit_ns;
  d["start_ns"] = i.start_ns;
  d["finish_ns"] = i.finish_ns;
  d["run_at_ns"] = i.run_at_ns;
  d["deadline_ns"] = i.deadline_ns;
  return d;
}

}  // namespace
}  // namespace taskring::python

NB_MODULE(_core, m) {
  using namespace taskring;
  using namespace taskring::python;
  m.doc() = "The taskring engine, bound with nanobind. Use the taskring package, not this module.";
  // nanobind reports instances still alive when the interpreter exits; a
  // script's module-level clients and handles often are, harmlessly. The
  // tests turn the report on (TASKRING_PY_LEAK_CHECK=1) to catch real
  // reference leaks.
  nb::set_leak_warnings(std::getenv("TASKRING_PY_LEAK_CHECK") != nullptr);

  nb::class_<Outcome>(m, "Outcome", "A finished task: its final state and result, as the engine recorded them.")
      .def_prop_ro("id", &Outcome::id, "The task id.")
      .def_prop_ro("state", &Outcome::state, "'succeeded', 'failed' or 'cancelled'.")
      .def_prop_ro("value", &Outcome::value,
                   "The result bytes (succeeded), the error message (failed), or empty or a reason (cancelled).")
      .def_prop_ro("ok", &Outcome::ok, "True if the task succeeded.")
      .def_prop_ro("attempts", [](const Outcome& o) { return o.o.attempts; }, "Times a worker started the task.")
      .def_prop_ro("crashes", [](const Outcome& o) { return o.o.crashes; },
                   "Attempts that ended with the worker process dying.")
      .def_prop_ro("last_crash",
                   [](const Outcome& o) { return o.o.crashes > 0 ? std::optional(o.o.last_crash.describe()) : std::nullopt; },
                   "How the last worker that died running the task ended, or None.")
      .def_prop_ro("timed_out", [](const Outcome& o) { return o.o.timed_out; },
                   "True if the last attempt outlived its time limit.")
      .def_prop_ro("submit_ns", [](const Outcome& o) { return o.o.submit_ns; }, "Submit time (CLOCK_MONOTONIC ns).")
      .def_prop_ro("start_ns", [](const Outcome& o) { return o.o.start_ns; }, "Last start time, 0 if it never ran.")
      .def_prop_ro("finish_ns", [](const Outcome& o) { return o.o.finish_ns; }, "Finish time (CLOCK_MONOTONIC ns).")
      .def("__repr__", [](const Outcome& o) {
        return "Outcome(id=" + std::to_string(o.o.id.value) + ", state='" + std::string(state_name(o.o.state)) +
               "', attempts=" + std::to_string(o.o.attempts) + ", value=" + std::to_string(o.o.value.size()) +
               " bytes)";
      });

  nb::class_<PyClient>(m, "_Client", "The engine's producer side; see taskring.Client.")
      .def(nb::init<std::string_view>(), "segment"_a)
      .def("submit", &PyClient::submit, "task"_a, "payload"_a, "queue"_a, "priority"_a, "delay_ns"_a,
           "max_attempts"_a, "max_crashes"_a, "time_limit_ns"_a, "timeout_ns"_a, "durable"_a, "detached"_a,
           "Submits one task and returns its id. Releases the GIL while it waits for room or for the sidecar.")
      .def("submit_many", &PyClient::submit_many, "names"_a, "payloads"_a, "queue"_a, "priority"_a, "delay_ns"_a,
           "max_attempts"_a, "max_crashes"_a, "time_limit_ns"_a, "timeout_ns"_a, "durable"_a, "detached"_a,
           "Submits a batch and returns the ids of the tasks submitted (all, unless the timeout passed).")
      .def("wait_into", &PyClient::wait_into, "handles"_a, "timeout_ns"_a,
           "Waits for the handles whose _outcome is None and stores each outcome there. GIL released.")
      .def("call", &PyClient::call, "task"_a, "payload"_a, "queue"_a, "priority"_a, "delay_ns"_a, "max_attempts"_a,
           "max_crashes"_a, "time_limit_ns"_a, "timeout_ns"_a, "durable"_a,
           "Submits one task and waits for its Outcome; on a timeout or interrupt the task is released.")
      .def("call_many", &PyClient::call_many, "names"_a, "payloads"_a, "queue"_a, "priority"_a, "delay_ns"_a,
           "max_attempts"_a, "max_crashes"_a, "time_limit_ns"_a, "timeout_ns"_a,
           "Submits a batch and reads every outcome: (results, None), or (None, first Outcome that failed).")
      .def("wait", &PyClient::wait, "id"_a, "timeout_ns"_a,
           "Waits for one task and returns its Outcome (GIL released while it waits); TimeoutError if it does not end.")
      .def("try_get", &PyClient::try_get, "id"_a, "The outcome if the task finished (and frees it), else None.")
      .def("peek", [](PyClient& c, std::uint64_t id) { return info_dict(c.peek(id).i); }, "id"_a,
           "A snapshot of the task as a dict, without reading its result.")
      .def("cancel", &PyClient::cancel, "id"_a, "Cancels the task: 'cancelled', 'requested' or 'finished'.")
      .def("release", &PyClient::release, "id"_a, "Gives up interest in the task's result.")
      .def("requeue", &PyClient::requeue, "id"_a, "Puts a dead letter back in its queue.")
      .def("purge", &PyClient::purge, "id"_a, "Frees a dead letter.")
      .def("dead_letters",
           [](PyClient& c, std::size_t limit) {
             nb::list out;
             for (const Info& i : c.dead_letters(limit)) out.append(info_dict(i.i));
             return out;
           },
           "limit"_a, "Tasks that failed for good, oldest first, as dicts.")
      .def_prop_ro("queues", [](PyClient& c) { return c.client().queues(); }, "The segment's queue names.")
      .def_prop_ro("max_payload", [](PyClient& c) { return c.client().config().max_payload; },
                   "The largest payload or result in bytes.");

  nb::class_<Completions>(m, "_Completions", "Waits for many tasks at once, for the asyncio bridge.")
      .def(nb::init<std::shared_ptr<PyClient>>(), "client"_a)
      .def("watch_many", &Completions::watch_many, "ids"_a, "Adds tasks to the set collect() waits for.")
      .def("collect", &Completions::collect, "timeout_ns"_a,
           "Waits (GIL released) until watched tasks finish; returns (id, Outcome or exception) pairs.")
      .def("close", &Completions::close, "Makes collect() return.")
      .def_prop_ro("pending", &Completions::pending, "Watched tasks not finished yet.");

  nb::class_<Context>(m, "Context",
                      "What a handler sees of the task it runs. Valid only while the handler runs.")
      .def_prop_ro("id", [](const Context& c) { return c.get().id().value; }, "The task id.")
      .def_prop_ro("task", [](const Context& c) { return std::string(c.get().task_name()); }, "The task name.")
      .def_prop_ro("payload", [](const Context& c) { return to_bytes(c.get().payload()); },
                   "The payload bytes (a copy, safe to keep).")
      .def_prop_ro("attempt", [](const Context& c) { return c.get().attempt(); }, "This attempt's number, from 1.")
      .def_prop_ro("priority", [](const Context& c) { return std::string(priority_name(c.get().priority())); },
                   "'critical', 'high', 'normal' or 'low'.")
      .def_prop_ro("cancelled", [](const Context& c) { return c.get().cancel_requested(); },
                   "True once somebody cancelled the task or its time limit passed: return early.")
      .def("progress", [](const Context& c, std::uint32_t done, std::uint32_t total) { c.get().set_progress(done, total); },
           "done"_a, "total"_a, "Reports progress (done of total), seen by TaskHandle.status().")
      .def("fail", &Context::fail, "message"_a,
           "Marks the task failed with `message` (the handler's return value is then ignored).");

  nb::class_<PyWorker>(m, "_Worker", "The engine's worker; see taskring.Worker.")
      .def(nb::init<std::string_view, std::vector<std::string>, int, std::uint32_t, bool>(), "segment"_a, "queues"_a,
           "cpu"_a, "claim_batch"_a, "steal"_a)
      .def("register", &PyWorker::register_handler, "task"_a, "fn"_a, "max_attempts"_a, "time_limit_ns"_a,
           "kill_grace_ns"_a, "retry_backoff_ns"_a, "retry_backoff_max_ns"_a, "finish"_a = nb::none(),
           "describe"_a = nb::none(),
           "Registers fn(Context) -> bytes-like or None as the handler of `task`; with `finish` and "
           "`describe`, fn(payload) instead (see worker.py).")
      .def("register_builtins", &PyWorker::register_builtins, "Registers noop, echo, sleep, spin and fail.")
      .def("run", &PyWorker::run, "max_tasks"_a, "handle_signals"_a,
           "Runs the claim loop with the GIL released; returns 'stopped', 'drained' or 'signal'.")
      .def("stop", &PyWorker::stop, "Asks run() to return after the running task.")
      .def_prop_ro("index", &PyWorker::index, "The worker's registry index.")
      .def_prop_ro("handlers", &PyWorker::handler_names, "Registered task names, sorted.")
      .def("stats", &PyWorker::stats, "The worker's counters as a dict.");

  nb::class_<Watchdog>(m, "_Watchdog", "Enforces time limits on tasks other processes run (for supervisors).")
      .def_static("attach", [](std::string_view segment) { return take(Watchdog::attach(segment)); }, "segment"_a)
      .def("check",
           [](Watchdog& w) {
             const WatchdogReport r = w.check();
             return std::make_pair(r.timed_out, r.killed);
           },
           "One pass; returns (timed_out, killed).");

  m.def("create_segment", &create, "name"_a, "slots"_a, "queues"_a, "ring_capacity"_a, "max_payload"_a,
        "payload_area"_a, "max_workers"_a, "deque_capacity"_a, "result_ttl_ns"_a, "journal"_a, "journal_capacity"_a,
        "mode"_a, "replace"_a, "Creates a segment; see taskring.create_segment.");
  m.def("destroy_segment", [](std::string_view name) { check(destroy_segment(name)); }, "name"_a,
        "Closes and removes a segment.");
  m.def("drain_segment", [](std::string_view name) { check(drain_segment(name)); }, "name"_a,
        "Asks the segment's workers to finish their running task and return.");
  m.def("worker_exited",
        [](std::string_view segment, std::uint32_t pid, int wait_status) {
          const RecoveryReport r = take(worker_exited(segment, pid, wait_status));
          return r.tasks_requeued + r.tasks_failed + r.deque_tasks_returned;
        },
        "segment"_a, "pid"_a, "wait_status"_a,
        "Tells the engine a worker process ended (waitpid status); returns the tasks it put back or failed.");
  m.def("monotonic_ns", &ipc::monotonic_ns, "CLOCK_MONOTONIC in nanoseconds, the clock of the engine's timestamps.");
  m.attr("MAX_TASK_NAME_LENGTH") = kMaxTaskNameLength;
}
