// Micro-benchmarks of the engine in one process and one thread: the whole
// task life (submit, claim, run a no-op, complete, read the result) one at a
// time and in batches, and the slot allocation path alone (detached submits
// drained by the worker). Cross-process figures are the load harness's job.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "taskring/admin.h"
#include "taskring/client.h"
#include "taskring/ipc/segment.h"
#include "taskring/worker.h"

namespace {

using namespace taskring;

// A segment with a client and a worker (no thread: the benchmark drives the
// worker with run_tasks), removed when the benchmark ends.
class Rig {
 public:
  Rig() : name_("trbench-" + std::to_string(getpid())) {
    EngineConfig c;
    c.slots = 4096;
    c.ring_capacity = 4096;
    c.max_payload = 4096;
    c.payload_area = 8 << 20;
    ok_ = create_segment(name_, c, /*replace=*/true).is_ok();
    if (!ok_) return;
    auto client = Client::attach(name_);
    WorkerOptions wo;
    wo.claim_batch = 64;
    auto worker = Worker::attach(name_, wo);
    ok_ = client.is_ok() && worker.is_ok();
    if (!ok_) return;
    client_.emplace(std::move(client).value());
    worker_ = std::move(worker).value();
    worker_->register_builtins();
  }
  ~Rig() {
    worker_.reset();
    client_.reset();
    (void)destroy_segment(name_);
  }
  bool ok() const { return ok_; }
  Client& client() { return *client_; }
  Worker& worker() { return *worker_; }

 private:
  std::string name_;
  bool ok_ = false;
  std::optional<Client> client_;
  std::unique_ptr<Worker> worker_;
};

void BM_Engine_RoundTrip_Single(benchmark::State& state) {
  Rig rig;
  if (!rig.ok()) return state.SkipWithError("cannot create the segment");
  const std::string payload(static_cast<std::size_t>(state.range(0)), 'p');
  for (auto _ : state) {
    auto id = rig.client().submit("noop", payload);
    if (!id) return state.SkipWithError(id.status().to_string().c_str());
    if (!rig.worker().run_tasks(1).is_ok()) return state.SkipWithError("run_tasks failed");
    auto out = rig.client().try_get(*id);
    if (!out || !out->has_value()) return state.SkipWithError("no result");
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Engine_RoundTrip_Single)->Arg(32)->Arg(4096);

void BM_Engine_RoundTrip_Batch(benchmark::State& state) {
  Rig rig;
  if (!rig.ok()) return state.SkipWithError("cannot create the segment");
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<TaskSpec> specs(n, TaskSpec{"noop", std::string_view("0123456789abcdef0123456789abcdef")});
  std::vector<TaskId> ids(n);
  for (auto _ : state) {
    auto k = rig.client().submit_batch(specs, ids);
    if (!k || *k != n) return state.SkipWithError("submit_batch fell short");
    if (!rig.worker().run_tasks(n).is_ok()) return state.SkipWithError("run_tasks failed");
    for (TaskId id : ids) {
      auto out = rig.client().try_get(id);
      if (!out || !out->has_value()) return state.SkipWithError("no result");
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}
BENCHMARK(BM_Engine_RoundTrip_Batch)->Arg(64);

// Detached submits: slot allocation, fill, publish, push; the worker frees
// the slots as it runs them (claim, complete straight to free).
void BM_Engine_SubmitDetached_Batch(benchmark::State& state) {
  Rig rig;
  if (!rig.ok()) return state.SkipWithError("cannot create the segment");
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<TaskSpec> specs(n, TaskSpec{"noop", std::string_view()});
  std::vector<TaskId> ids(n);
  SubmitOptions detached;
  detached.detached = true;
  for (auto _ : state) {
    auto k = rig.client().submit_batch(specs, ids, detached);
    if (!k || *k != n) return state.SkipWithError("submit_batch fell short");
    if (!rig.worker().run_tasks(n).is_ok()) return state.SkipWithError("run_tasks failed");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}
BENCHMARK(BM_Engine_SubmitDetached_Batch)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
