#!/usr/bin/env bash
# Runs the standard load scenarios of docs/performance.md with every baseline
# in the same invocation (taskring-bench --compare), each scenario REPS times,
# and prints a Markdown table of the medians with the ratios to taskring.
# Then the durability scenarios (taskring-bench durability: the sidecar's
# cost, durable acknowledgements, recovery time), REPS times each, and a
# second table of their medians against their targets. Then the Python round
# trip (bench/python/roundtrip.py: taskring from Python to a C++ and to a
# Python worker, against multiprocessing.Queue in the same run) and its table.
# The raw JSON of every run stays in the output directory.
#
# Usage: scripts/bench.sh [--reps N] [--tasks N] [--durable-tasks N] [--records N]
#                         [--py-duration S] [--python PATH] [--no-python] [--quick]
#                         [--log-dir DIR] [--out DIR] [--only NAME]
#   --reps N           runs per scenario; the tables show medians (default 3)
#   --tasks N          tasks per load run, the sidecar throughput scenario's too (default 1000000)
#   --durable-tasks N  tasks of the durable-acknowledgement scenario (default 200000)
#   --records N        records of the recovery scenario's log (default 10000000)
#   --py-duration S    seconds per run of each Python round-trip scenario (default 3)
#   --python PATH      the Python with the taskring package installed (default
#                      $TASKRING_PYTHON, else build/venv/bin/python, else python3)
#   --no-python        leave the Python round trip out
#   --quick            a smoke run: 1 rep and small counts, unless given explicitly
#                      (--tasks 20000, --durable-tasks 20000, --records 100000, --py-duration 0.3)
#   --log-dir DIR      where the durability scenarios write their logs, so the disk they
#                      measure (default /var/tmp; tmpfs makes fdatasync free)
#   --out DIR          where the JSON files go (default build/bench-results)
#   --only NAME        run just the scenario NAME (see the lists below)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

reps=3
tasks=1000000
durable_tasks=200000
records=10000000
py_duration=3
python=${TASKRING_PYTHON:-}
no_python=0
quick=0
given=" "
log_dir=/var/tmp
out=build/bench-results
only=""
usage="scripts/bench.sh [--reps N] [--tasks N] [--durable-tasks N] [--records N] [--py-duration S] [--python PATH] [--no-python] [--quick] [--log-dir DIR] [--out DIR] [--only NAME]"
while (($#)); do
  case "$1" in
    --reps) reps=${2:?--reps needs a number}; given+="reps "; shift 2 ;;
    --tasks) tasks=${2:?--tasks needs a number}; given+="tasks "; shift 2 ;;
    --durable-tasks) durable_tasks=${2:?--durable-tasks needs a number}; given+="durable_tasks "; shift 2 ;;
    --records) records=${2:?--records needs a number}; given+="records "; shift 2 ;;
    --py-duration) py_duration=${2:?--py-duration needs a number of seconds}; given+="py_duration "; shift 2 ;;
    --python) python=${2:?--python needs a path}; shift 2 ;;
    --no-python) no_python=1; shift ;;
    --quick) quick=1; shift ;;
    --log-dir) log_dir=${2:?--log-dir needs a directory}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --only) only=${2:?--only needs a scenario name}; shift 2 ;;
    *) echo "error: unknown argument '$1'" >&2
       echo "hint: $usage" >&2
       exit 2 ;;
  esac
done
if ((quick)); then
  for kv in reps=1 tasks=20000 durable_tasks=20000 records=100000 py_duration=0.3; do
    [[ "$given" == *" ${kv%%=*} "* ]] || printf -v "${kv%%=*}" '%s' "${kv#*=}"
  done
fi
for v in reps tasks durable_tasks records; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] ||
    { echo "error: --${v//_/-} '${!v}': must be a whole number above 0" >&2; exit 2; }
done
[[ "$py_duration" =~ ^[0-9]*\.?[0-9]+$ && ! "$py_duration" =~ ^[0.]*$ ]] ||
  { echo "error: --py-duration '$py_duration': must be a number of seconds above 0" >&2; exit 2; }
[[ -d "$log_dir" ]] || { echo "error: --log-dir '$log_dir': not a directory" >&2; exit 2; }

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
# The durability scenarios: name | taskring-bench durability arguments
# (besides --log-dir and --json). docs/benchmarking.md explains them.
durability=(
  "sidecar-never-1p1w-b1|throughput --tasks $tasks -p 1 -w 1 --pin --batch 1 --payload 32 --fsync never"
  "durable-ack-4p1w-b512|ack --tasks $durable_tasks -p 4 -w 1 --batch 512 --inflight 1024 --payload 32 --fsync always --probes 1000"
  "recovery|recovery --records $records --live 2048 --restore"
)
# The Python round trip: one scenario here, eight inside roundtrip.py.
python_scenario=python-roundtrip
if [[ -n "$only" ]]; then
  found=0
  for s in "${scenarios[@]}" "${durability[@]}" "$python_scenario|"; do [[ "${s%%|*}" == "$only" ]] && found=1; done
  if ((found == 0)); then
    echo "error: --only '$only': no such scenario; the scenarios are:" >&2
    for s in "${scenarios[@]}" "${durability[@]}" "$python_scenario|"; do echo "  ${s%%|*}" >&2; done
    exit 2
  fi
fi
if [[ "$only" == "$python_scenario" ]] && ((no_python)); then
  echo "error: --only $python_scenario and --no-python contradict each other" >&2; exit 2
fi
run_python=1
if ((no_python)) || [[ -n "$only" && "$only" != "$python_scenario" ]]; then run_python=0; fi
run_cpp=1
[[ "$only" == "$python_scenario" ]] && run_cpp=0
if ((run_python)); then
  # Checked before anything runs, not after the C++ scenarios' minutes.
  if [[ -z "$python" ]]; then
    if [[ -x build/venv/bin/python ]]; then python=build/venv/bin/python; else python=python3; fi
  fi
  "$python" -c 'import taskring' 2>/dev/null || {
    echo "error: --python '$python': cannot import the taskring package with it" >&2
    echo "hint: python3 -m venv build/venv && build/venv/bin/pip install . (docs/python.md), give --python, or --no-python" >&2
    exit 2
  }
fi

scripts/bootstrap.sh >&2
cmake -S "$root" -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DTASKRING_BUILD_BENCH=ON \
  -DTASKRING_BUILD_TESTS=OFF >/dev/null
targets=(taskring_cli)
((run_cpp)) && targets+=(taskring_bench)
cmake --build build/bench --target "${targets[@]}" >/dev/null
bench=build/bench/bench/load/taskring-bench
cli=build/bench/tools/taskring
mkdir -p "$out"

if ((run_cpp)); then "$bench" floor --json "$out/floor.json" >&2; fi
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
for s in "${durability[@]}"; do
  name=${s%%|*}
  args=${s#*|}
  [[ -n "$only" && "$name" != "$only" ]] && continue
  for ((i = 1; i <= reps; i++)); do
    echo "== $name, run $i of $reps: taskring-bench durability $args --log-dir $log_dir" >&2
    # shellcheck disable=SC2086 # args are words on purpose
    "$bench" durability $args --log-dir "$log_dir" --json "$out/$name-$i.json" >&2
  done
done

if ((run_python)); then
  echo "== $python_scenario: bench/python/roundtrip.py --repeat $reps --duration $py_duration" >&2
  # Its table (Markdown, medians of the runs) is printed with the others below.
  "$python" bench/python/roundtrip.py --cli "$cli" --repeat "$reps" --duration "$py_duration" \
    --json "$out/$python_scenario.json" >"$out/$python_scenario.md"
fi

if ((run_cpp)); then
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

python3 - "$out" "${durability[@]}" <<'EOF'
import glob, json, statistics, sys
out, scenarios = sys.argv[1], sys.argv[2:]
med = statistics.median
def fmt(ns):
    return f"{ns / 1e6:.2f} ms" if ns >= 1e6 else (f"{ns / 1000:.1f} us" if ns >= 1000 else f"{ns:.0f} ns")
rows = []
for s in scenarios:
    name = s.split("|", 1)[0]
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{name}-[0-9]*.json"))]
    if not runs:
        continue
    n = len(runs)
    kind = runs[0]["scenario"]
    if kind == "throughput":
        off = [r["results"][0] for r in runs]
        on = [r["results"][1] for r in runs]
        bad = sum(x["lost"] + x["duplicates"] for x in off + on)
        ratio = med(r["ratio"] for r in runs)
        rows += [
            (name, "throughput, no journal", f"{med(x['throughput_tps'] for x in off) / 1e6:.2f} M tasks/s", "", n, bad),
            (name, "throughput, sidecar (fsync never)", f"{med(x['throughput_tps'] for x in on) / 1e6:.2f} M tasks/s", "", n, bad),
            (name, "sidecar / no journal", f"{ratio:.2f}x", "at least 0.90x: " + ("met" if ratio >= 0.9 else "not met"), n, bad),
            (name, "sidecar CPU per task", f"{med(x['sidecar']['cpu_ns_per_task'] for x in on):.0f} ns", "", n, bad),
        ]
    elif kind == "ack":
        res = [r["results"][0] for r in runs]
        bad = sum(x["lost"] + x["duplicates"] for x in res)
        per_sync = med(r["tasks_per_fdatasync"] for r in runs)
        ratio = med(r["ack_p99_over_fdatasync_p99"] for r in runs)
        probe = lambda q: fmt(med(r["fdatasync_probe"]["latency_ns"][q] for r in runs))
        ack = lambda q: fmt(med(r["durable_ack_ns"][q] for r in runs))
        rows += [
            (name, "durable throughput", f"{med(x['throughput_tps'] for x in res) / 1e3:.1f} k tasks/s", "", n, bad),
            (name, "tasks per fdatasync", f"{per_sync:.0f}", "at least 1000: " + ("met" if per_sync >= 1000 else "not met"), n, bad),
            (name, "durable ack p50 / p99", f"{ack('p50')} / {ack('p99')}", "", n, bad),
            (name, f"fdatasync probe p50 / p99 ({runs[0]['fdatasync_probe']['filesystem']})", f"{probe('p50')} / {probe('p99')}", "", n, bad),
            (name, "durable-ack p99 / fdatasync p99", f"{ratio:.2f}x", "at most 2x: " + ("met" if ratio <= 2 else "not met"), n, bad),
        ]
    elif kind == "recovery":
        bad = sum(0 if r["ok"] else 1 for r in runs)
        total = med(r["recovery_s"] for r in runs)
        log = runs[0]["log"]
        rows += [
            (name, f"recovery of {log['records']} records from disk (read_log + fold + restore)", f"{total:.2f} s",
             "under 2 s: " + ("met" if total < 2 else "not met"), n, bad),
            (name, "warm: read_log / read_log + fold", f"{med(r['warm_read_s'] for r in runs):.2f} s / {med(r['warm_s'] for r in runs):.2f} s", "", n, bad),
            (name, "log", f"{log['bytes'] / 2**20:.0f} MiB in {log['files']} files, {log['tasks']} tasks", "", n, bad),
        ]
if rows:
    print("\n| durability scenario | figure | median | target | runs |")
    print("|---|---|---|---|---|")
    for name, what, value, target, n, bad in rows:
        note = "" if bad == 0 else f" ({bad} lost, duplicated or mismatched)"
        print(f"| {name} | {what}{note} | {value} | {target} | {n} |")
EOF
fi

if ((run_python)); then
  echo
  cat "$out/$python_scenario.md"
fi
