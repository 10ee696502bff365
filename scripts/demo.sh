#!/usr/bin/env bash
# The taskring demo: a real workload on an embedded default configuration.
# Creates a segment with a durable journal, starts the sidecar that mirrors
# every task state change to a log on disk, one worker per core (pinned) and
# producer processes that submit and wait for their tasks (one of them with
# durable acknowledgements), shows live progress, prints the final figures,
# checks the log and removes everything it created.
#
# Environment: DEMO_TASKS (per producer, default 200000), DEMO_SPIN_US
# (busy work per "spin" task, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/bootstrap.sh
echo "== building (build/demo)"
cmake -S "$root" -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTASKRING_BUILD_TESTS=OFF -DTASKRING_BUILD_TOOLS=ON >/dev/null
cmake --build build/demo -j "$(nproc)" --target taskring_cli

tr=build/demo/tools/taskring
seg="taskring-demo-$$"
tasks=${DEMO_TASKS:-200000}
spin_us=${DEMO_SPIN_US:-10}
cores=$(nproc)
logdir="build/demo/log-$$"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$tr" destroy --segment "$seg" 2>/dev/null || true
  rm -rf "$logdir"
}
trap cleanup EXIT INT TERM

echo "== creating segment $seg (queues default,bulk; 65536 slots; durable journal)"
"$tr" init --segment "$seg" --queues default,bulk --slots 65536 --ring-capacity 16384 --journal durable

echo "== starting the sidecar: every state change to $logdir, fdatasync before each acknowledgement"
"$tr" sidecar --segment "$seg" --log-dir "$logdir" --fsync always >build/demo/sidecar.log 2>&1 &
sidecar_pid=$!
pids+=("$sidecar_pid")

echo "== starting $cores workers, pinned to cpus 0..$((cores - 1))"
worker_pids=()
for ((c = 0; c < cores; c++)); do
  "$tr" worker --segment "$seg" --cpu "$c" 2>"build/demo/worker-$c.log" &
  worker_pids+=($!)
  pids+=($!)
done

echo "== starting producers: echo x$tasks (batch 64, durable acks), spin ${spin_us}us x$tasks, critical echo x$((tasks / 10))"
start=$(date +%s.%N)
"$tr" submit --segment "$seg" --task echo --payload "hello from producer 1" --count "$tasks" --batch 64 \
  --durable --wait --quiet >build/demo/producer-1.txt &
p1=$!
"$tr" submit --segment "$seg" --task spin --payload "$spin_us" --queue bulk --priority low --count "$tasks" \
  --batch 16 --wait --quiet >build/demo/producer-2.txt &
p2=$!
"$tr" submit --segment "$seg" --task echo --payload urgent --priority critical --count "$((tasks / 10))" \
  --batch 1 --wait --quiet >build/demo/producer-3.txt &
p3=$!
pids+=("$p1" "$p2" "$p3")

# Live progress from the segment's counters, twice a second.
progress() {
  "$tr" status --segment "$seg" --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
q = s["queues"]
sub = sum(x["submitted"] for x in q)
done = sum(x["succeeded"] + x["failed"] + x["cancelled"] for x in q)
depth = sum(sum(x["depth"].values()) if isinstance(x["depth"], dict) else sum(x["depth"]) for x in q)
ws = s["workers"]
busy = sum(1 for w in ws if w["state"] == "busy")
stolen = sum(w["stolen"] for w in ws)
print(f"  submitted {sub:>9,}  completed {done:>9,}  queued {depth:>7,}  workers busy {busy}/{len(ws)}  stolen {stolen:,}", end="")
' || true
}
while kill -0 "$p1" 2>/dev/null || kill -0 "$p2" 2>/dev/null || kill -0 "$p3" 2>/dev/null; do
  printf '\r\033[K%s' "$(progress)"
  sleep 0.5
done
printf '\r\033[K%s\n' "$(progress)"
status=0
for p in "$p1" "$p2" "$p3"; do wait "$p" || status=1; done
end=$(date +%s.%N)

echo "== producers"
for i in 1 2 3; do echo "  producer $i: $(cat "build/demo/producer-$i.txt")"; done
python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'  {n:,} tasks in {t:.2f} s: {n/t:,.0f} tasks/s end to end')" \
  "$start" "$end" "$((2 * tasks + tasks / 10))"

echo "== stopping workers"
for p in "${worker_pids[@]}"; do kill -TERM "$p"; done
for p in "${worker_pids[@]}"; do wait "$p" || status=1; done
for ((c = 0; c < cores; c++)); do echo "  cpu $c: $(tail -n 1 "build/demo/worker-$c.log")"; done
pids=("$sidecar_pid")

echo "== final status"
"$tr" status --segment "$seg"

echo "== stopping the sidecar; the durable log"
kill -TERM "$sidecar_pid"
wait "$sidecar_pid" || status=1
echo "  $(tail -n 1 build/demo/sidecar.log)"
"$tr" log verify --log-dir "$logdir" | sed 's/^/  /' || status=1
"$tr" log stats --log-dir "$logdir" | sed 's/^/  /' || status=1
exit $status
