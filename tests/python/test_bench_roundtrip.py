"""Smoke tests of bench/python/roundtrip.py, so that the benchmark cannot rot.

They run the script as a subprocess with tiny counts and check what it
reports: every scenario present with a positive rate, every run's task count,
and each echo process's count of what it handled against what was sent.
They never check speed (that is the benchmark's job, not a test's).

Self-contained: no fixture of conftest.py is used. The C++ worker is the CLI
(TASKRING_CLI, else build/release/tools/taskring); the tests that need it
are skipped, saying why, when it is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("taskring")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "python" / "roundtrip.py"
ALL = ["mpq-1", "mpq-batch", "cpp-1", "cpp-call", "cpp-batch", "cpp-many", "cpp-async", "cpp-async-results",
       "py-1", "py-call", "py-batch", "py-many", "py-async", "py-async-results"]


def one_per_call(scenario: str) -> bool:
    return scenario.endswith("-1") or scenario.endswith("-call")
LIMIT = 100  # seconds for one invocation; tiny runs take a few


def find_cli() -> str:
    for c in (os.environ.get("TASKRING_CLI"), REPO / "build" / "release" / "tools" / "taskring",
              REPO / "build" / "release" / "tools" / "taskring" / "taskring"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return str(c)
    pytest.skip("the taskring CLI (the C++ worker) is not built: set TASKRING_CLI or build "
                "build/release/tools/taskring (cmake --build build/release --target taskring_cli)")


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TASKRING_SEGMENT")}
    e.pop("TASKRING_CLI", None)  # the tests pass --cli themselves
    return e


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=LIMIT,
                          env=env(), cwd=str(REPO))


def leftover_segments(pid: int) -> list:
    return sorted(p.name for p in Path("/dev/shm").glob(f"taskring-bench-rt-{pid}-*"))


def processes_naming(text: str) -> list:
    """PIDs of live processes whose command line contains `text`."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if text.encode() in (d / "cmdline").read_bytes():
                found.append(int(d.name))
        except OSError:
            pass
    return found


def test_every_scenario_reports_a_rate_and_every_count_adds_up():
    cli = find_cli()
    tasks, batch, warmup = 200, 50, 10
    p = subprocess.Popen([sys.executable, str(SCRIPT), "--tasks", str(tasks), "--batch", str(batch), "--repeat", "1",
                          "--warmup", str(warmup), "--cli", cli, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=str(REPO))
    out, err = p.communicate(timeout=LIMIT)
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert doc["ok"] is True, doc.get("error")
    assert [r["scenario"] for r in doc["results"]] == ALL
    for r in doc["results"]:
        assert r["rate"] > 0, r
        assert len(r["runs"]) == 1 and r["runs"][0]["tasks"] == tasks and r["tasks"] == tasks, r
        assert r["runs"][0]["seconds"] > 0, r
        assert r["batch"] == (1 if one_per_call(r["scenario"]) else batch), r
        if r["scenario"] == "mpq-1":
            assert r["vs_mpq_1"] == pytest.approx(1.0)
        else:
            assert r["vs_mpq_1"] > 0, r
        if one_per_call(r["scenario"]):
            lat = r["latency_ns"]
            assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
        else:
            assert r["vs_mpq_batch"] > 0, r
    # One target per taskring scenario, judged against mpq-1.
    assert sorted(t["scenario"] for t in doc["targets"]) == sorted(s for s in ALL if not s.startswith("mpq"))
    for t in doc["targets"]:
        assert t["at_least"] == (20 if one_per_call(t["scenario"]) else 100)
        assert t["met"] == (t["ratio"] >= t["at_least"])
    # What each echo process handled is what was sent to it: the warm-up and
    # the measured round trips of each of its scenarios, plus for taskring
    # the readiness probe. Nothing lost, nothing run twice.
    per = warmup + tasks
    assert doc["counts"] == {"mpq": {"sent": 2 * per, "handled": 2 * per},
                             "cpp": {"sent": 1 + 6 * per, "handled": 1 + 6 * per},
                             "py": {"sent": 1 + 6 * per, "handled": 1 + 6 * per}}
    assert leftover_segments(p.pid) == []


def test_repeats_and_a_partial_last_batch():
    # No C++ worker needed: only the Python systems.
    p = subprocess.Popen([sys.executable, str(SCRIPT), "--tasks", "130", "--batch", "50", "--repeat", "2",
                          "--warmup", "0", "--scenarios", "py-batch,mpq-batch,mpq-1", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=str(REPO))
    out, err = p.communicate(timeout=LIMIT)
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert [r["scenario"] for r in doc["results"]] == ["mpq-1", "mpq-batch", "py-batch"]  # canonical order
    for r in doc["results"]:
        assert [run["tasks"] for run in r["runs"]] == [130, 130], r
        assert r["tasks"] == 260 and r["rate"] > 0, r
    assert doc["counts"] == {"mpq": {"sent": 520, "handled": 520}, "py": {"sent": 261, "handled": 261}}
    assert leftover_segments(p.pid) == []


def test_table_output_names_every_scenario_and_target():
    r = run("--tasks", "50", "--batch", "10", "--repeat", "1", "--warmup", "0", "--scenarios", "mpq-1,py-1,py-batch")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("| scenario | system |") for line in lines)
    for s in ("mpq-1", "py-1", "py-batch"):
        assert any(line.startswith(f"| {s} |") for line in lines), r.stdout
    assert any(line.startswith("target py-1: one task per call: at least 20x") for line in lines), r.stdout
    assert any(line.startswith("target py-batch: batches: at least 100x") for line in lines), r.stdout


@pytest.mark.parametrize("args, names", [
    (["--batch", "0"], "--batch 0"),
    (["--tasks", "ten"], "--tasks 'ten'"),
    (["--tasks", "10", "--duration", "1"], "--duration"),
    (["--duration", "-1"], "--duration '-1'"),
    (["--repeat", "0"], "--repeat 0"),
    (["--scenarios", "py-1,nope"], "unknown nope"),
    (["--cpu-worker", "4095"], "--cpu-worker 4095"),
    (["--segment-slots", "64", "--batch", "64"], "--segment-slots 64"),
    (["--ring-capacity", "1000"], "--ring-capacity 1000"),
    (["--cli", "/nonexistent/taskring", "--scenarios", "cpp-1"], "--cli '/nonexistent/taskring'"),
])
def test_a_bad_argument_is_refused_naming_it(args, names):
    if args[0] == "--cpu-worker" and 4095 in os.sched_getaffinity(0):
        pytest.skip("this machine has a CPU 4095")
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "error:" in r.stderr and names in r.stderr, r.stderr
    assert r.stdout == ""


def test_ctrl_c_stops_the_workers_and_removes_the_segments():
    p = subprocess.Popen([sys.executable, str(SCRIPT), "--duration", "60", "--repeat", "1", "--warmup", "0",
                          "--scenarios", "py-1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=str(REPO))
    try:
        deadline = time.monotonic() + 30
        segment = f"taskring-bench-rt-{p.pid}-py"
        # Running: the segment exists and its worker answered (the run's line
        # is only printed at its end, so wait for the worker process instead).
        while not (leftover_segments(p.pid) == [segment] and processes_naming(segment)):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1, err
    assert "error: interrupted" in err, err
    assert leftover_segments(p.pid) == []
    assert processes_naming(segment) == []


def children_of(pid: int) -> dict:
    """{pid: command line} of the live children of process `pid`."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == pid:
                found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            pass
    return found


@pytest.mark.parametrize("scenario, marker, who", [
    ("py-1", "_python-worker", "the Python worker exited mid-run with status -9"),
    ("mpq-1", "--multiprocessing-fork", "the multiprocessing.Queue echo process exited mid-run with status -9"),
])
def test_an_echo_process_that_dies_fails_the_run_instead_of_hanging_it(scenario, marker, who):
    p = subprocess.Popen([sys.executable, str(SCRIPT), "--duration", "60", "--repeat", "1", "--warmup", "0",
                          "--scenarios", scenario],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=str(REPO))
    try:
        deadline = time.monotonic() + 30
        while True:
            victims = [c for c, cmd in children_of(p.pid).items() if marker in cmd and "resource_tracker" not in cmd]
            if victims:
                break
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the echo process never started"
            time.sleep(0.05)
        time.sleep(1.0)  # let the measured run begin: the round trips block on the echo process
        os.kill(victims[0], signal.SIGKILL)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1, err
    assert f"error: {who}" in err, err
    assert leftover_segments(p.pid) == []
