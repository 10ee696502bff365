#!/usr/bin/env bash
# Runs the standard load scenarios of docs/performance.md with every baseline
# in the same invocation (taskring-bench --compare), each scenario REPS times,
# and prints a Markdown table of the medians with the ratios to taskring.
# The raw JSON of every run stays in the output directory.
#
# Usage: scripts/bench.sh [--reps N] [--tasks N] [--out DIR] [--only NAME]
#   --reps N    runs per scenario; the table shows medians (default 3)
#   --tasks N   tasks per run (default 1000000)
#   --out DIR   where the JSON files go (default build/bench-results)
#   --only NAME run just the scenario NAME (see the list below)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

reps=3
tasks=1000000
out=build/bench-results
only=""
while (($#)); do
  case "$1" in
    --reps) reps=${2:?--reps needs a number}; shift 2 ;;
    --tasks) tasks=${2:?--tasks needs a number}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --only) only=${2:?--only needs a scenario name}; shift 2 ;;
    *) echo "error: unknown argument '$1'" >&2
       echo "hint: scripts/bench.sh [--reps N] [--tasks N] [--out DIR] [--only NAME]" >&2
       exit 2 ;;
  esac
done
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || { echo "error: --reps '$reps': must be a whole number above 0" >&2; exit 2; }
[[ "$tasks" =~ ^[1-9][0-9]*$ ]] || { echo "error: --tasks '$tasks': must be a whole number above 0" >&2; exit 2; }

# name | flags (besides --tasks, --compare and --json)
scenarios=(
  "1p1w-b1-32B|-p 1 -w 1 --pin --batch 1 --payload 32"
  "1p1w-b64-32B|-p 1 -w 1 --pin --batch 64 --inflight 256 --payload 32"
  "1p1w-b1-4K|-p 1 -w 1 --pin --batch 1 --payload 4K"
  "1p1w-b64-4K|-p 1 -w 1 --pin --batch 64 --inflight 256 --payload 4K"
  "2p4w-b1-32B|-p 2 -w 4 --batch 1 --payload 32"
  "2p4w-b64-32B|-p 2 -w 4 --batch 64 --inflight 256 --payload 32"
  "1p1w-spin-latency|-p 1 -w 1 --pin --batch 1 --inflight 1 --spin-rounds 1000000000 --payload 32"
)
if [[ -n "$only" ]]; then
  found=0
  for s in "${scenarios[@]}"; do [[ "${s%%|*}" == "$only" ]] && found=1; done
  if ((found == 0)); then
    echo "error: --only '$only': no such scenario; the scenarios are:" >&2
    for s in "${scenarios[@]}"; do echo "  ${s%%|*}" >&2; done
    exit 2
  fi
fi

scripts/bootstrap.sh >&2
cmake -S "$root" -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DTASKRING_BUILD_BENCH=ON \
  -DTASKRING_BUILD_TESTS=OFF >/dev/null
cmake --build build/bench --target taskring_bench >/dev/null
bench=build/bench/bench/load/taskring-bench
mkdir -p "$out"

"$bench" floor --json "$out/floor.json" >&2
for s in "${scenarios[@]}"; do
  name=${s%%|*}
  flags=${s#*|}
  [[ -n "$only" && "$name" != "$only" ]] && continue
  for ((i = 1; i <= reps; i++)); do
    echo "== $name, run $i of $reps: taskring-bench --compare --tasks $tasks $flags" >&2
    # shellcheck disable=SC2086 # flags are words on purpose
    "$bench" --compare --tasks "$tasks" $flags --json "$out/$name-$i.json" >&2
  done
done

python3 - "$out" "$tasks" "${scenarios[@]}" <<'EOF'
import glob, json, statistics, sys
out, tasks, scenarios = sys.argv[1], sys.argv[2], sys.argv[3:]
floor = json.load(open(f"{out}/floor.json"))["floor"]
print(f"Latency floor: cache-line round trip p50 {floor['cache_line_round_trip_ns']['p50']} ns, "
      f"futex wake round trip p50 {floor['futex_wake_round_trip_ns']['p50'] / 1000:.1f} us\n")
print("| scenario | system | throughput (M tasks/s) | taskring / system | CPU per task (ns) | round trip p50 | p99 | runs |")
print("|---|---|---|---|---|---|---|---|")
for s in scenarios:
    name, flags = s.split("|", 1)
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{name}-*.json"))]
    if not runs:
        continue
    med = {}
    for system in ["taskring", "bip_mq", "moodycamel", "tbb"]:
        rs = [r for run in runs for r in run["results"] if r["system"] == system]
        med[system] = {
            "tps": statistics.median(r["throughput_tps"] for r in rs),
            "cpu": statistics.median(r["cpu_ns_per_task"] for r in rs),
            "p50": statistics.median(r["latency_ns"]["round_trip"]["p50"] for r in rs),
            "p99": statistics.median(r["latency_ns"]["round_trip"]["p99"] for r in rs),
            "bad": sum(r["lost"] + r["duplicates"] for r in rs),
        }
    for system, m in med.items():
        ratio = med["taskring"]["tps"] / m["tps"] if m["tps"] else float("nan")
        note = "" if m["bad"] == 0 else f" ({m['bad']} lost or duplicated)"
        fmt = lambda ns: f"{ns / 1000:.1f} us" if ns >= 1000 else f"{ns:.0f} ns"
        print(f"| {name} | {system}{note} | {m['tps'] / 1e6:.2f} | {ratio:.2f}x | {m['cpu']:.0f} | "
              f"{fmt(m['p50'])} | {fmt(m['p99'])} | {len(runs)} |")
EOF
