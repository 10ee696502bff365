#!/usr/bin/env python3
"""Round trips per second from Python: taskring against multiprocessing.Queue.

Every scenario sends a small payload (--payload bytes, default 16) to another
process, which echoes it back, and counts round trips per second:

  mpq-1        multiprocessing.Queue: put one request, get its reply (one in flight)
  mpq-batch    multiprocessing.Queue: put --batch requests, then get --batch replies
  cpp-1        taskring, client.submit("echo", p).result(), to a C++ worker (taskring worker)
  cpp-call     taskring, client.call("echo", p): submit and wait in one step (if the package has it)
  cpp-batch    taskring, client.submit_many("echo", [p] * B) then client.results(handles)
  cpp-many     taskring, client.call_many("echo", [p] * B): a batch without handles (if the package has it)
  cpp-async    taskring, submit_many then `await asyncio.gather(*handles)`
  cpp-async-results
               taskring, submit_many then `await client.results_async(handles)`: one future
               per batch (if the package has it)
  py-1, py-call, py-batch, py-many, py-async, py-async-results
               the same to a Python worker (taskring.Worker with a Python echo handler)

Every figure comes from this one invocation: the baselines run beside taskring,
interleaved (each repetition runs every scenario once), and each scenario's
rate is the median of its --repeat runs. Each taskring rate is also given as a
ratio to the multiprocessing.Queue round trip of the same invocation. The
targets of PRODUCT.md ("at least 20x / 100x a multiprocessing.Queue round
trip") are judged against mpq-1, the one-request-in-flight round trip, for
one task per call and for batches alike; batches are also shown against
mpq-batch. Targets are reported, never enforced: the exit status is 0 when
every round trip came back intact and every worker's count adds up, 1 when a
run failed, 2 for a bad argument.

The script makes its own segments (one per worker kind, so the workers cannot
take each other's tasks) and removes them at exit, also on an error or Ctrl-C.
It needs only the standard library and the taskring package; the C++ worker is
the CLI's `taskring worker` (--cli, or $TASKRING_CLI).

    python bench/python/roundtrip.py                      # 2 s per run, 3 runs each
    python bench/python/roundtrip.py --tasks 200 --batch 50 --repeat 1 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# docs/cli.md: the CLI is <build dir>/tools/taskring.
DEFAULT_CLIS = [os.path.join(ROOT, "build", "release", "tools", "taskring"),
                os.path.join(ROOT, "build", "release", "tools", "taskring", "taskring")]

SCENARIOS = ["mpq-1", "mpq-batch", "cpp-1", "cpp-call", "cpp-batch", "cpp-many", "cpp-async", "cpp-async-results",
             "py-1", "py-call", "py-batch", "py-many", "py-async", "py-async-results"]
DESCRIPTION = {
    "mpq-1": ("multiprocessing.Queue", "python", "put + get, one in flight"),
    "mpq-batch": ("multiprocessing.Queue", "python", "put B, then get B"),
    "cpp-1": ("taskring", "C++", "submit().result()"),
    "cpp-call": ("taskring", "C++", "call()"),
    "cpp-batch": ("taskring", "C++", "submit_many + results"),
    "cpp-many": ("taskring", "C++", "call_many"),
    "cpp-async": ("taskring", "C++", "submit_many + asyncio.gather"),
    "cpp-async-results": ("taskring", "C++", "submit_many + await results_async"),
    "py-1": ("taskring", "Python", "submit().result()"),
    "py-call": ("taskring", "Python", "call()"),
    "py-batch": ("taskring", "Python", "submit_many + results"),
    "py-many": ("taskring", "Python", "call_many"),
    "py-async": ("taskring", "Python", "submit_many + asyncio.gather"),
    "py-async-results": ("taskring", "Python", "submit_many + await results_async"),
}
TARGET_ONE = 20.0    # PRODUCT.md: Python round trip, one task per call
TARGET_BATCH = 100.0  # PRODUCT.md: Python, batches
WORKER_MODE = "_python-worker"  # hidden: this script, run as the Python worker


def one_per_call(scenario: str) -> bool:
    """True for the scenarios with one request in flight (no batch)."""
    return scenario.endswith("-1") or scenario.endswith("-call")


class BenchError(Exception):
    """A run that failed: a worker died, a reply was wrong, a count is off."""


# ---- the multiprocessing.Queue echo process ---------------------------------------
def _mpq_child(requests, replies, cpu: Optional[int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    get, put = requests.get, replies.put
    handled = 0
    while True:
        m = get()
        if m is None:
            break
        put(m)
        handled += 1
    put(("handled", handled))


# ---- the Python worker (this script run with WORKER_MODE) ----------------------------
def _python_worker(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog=f"roundtrip.py {WORKER_MODE}")
    p.add_argument("--segment", required=True)
    p.add_argument("--cpu", type=int)
    a = p.parse_args(argv)
    import taskring
    w = taskring.Worker(a.segment, cpu=a.cpu, tasks=[])

    @w.task("echo")
    def echo(payload):
        return payload

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with SIGTERM
    why = w.run()
    print(json.dumps({"stopped": why, **w.stats()}), flush=True)
    return 0


# ---- helpers ----------------------------------------------------------------------
def percentile(sorted_values: List[int], q: float) -> int:
    if not sorted_values:
        return 0
    i = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def fmt_rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.2f} M/s"
    if r >= 1e3:
        return f"{r / 1e3:.1f} k/s"
    return f"{r:.0f} /s"


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} us"
    return f"{ns:.0f} ns"


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "") if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_info(taskring: Any) -> Dict[str, str]:
    """Where the taskring package was imported from and when its extension
    was built: the package is installed, so the commit may not say which
    sources were measured."""
    core = getattr(getattr(taskring, "_core", None), "__file__", None) or ""
    built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(core))) if core else "?"
    return {"path": os.path.dirname(os.path.abspath(taskring.__file__)), "core_built": built}


def positive_int(name: str, low: int = 1, high: int = 1 << 40):
    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r}: must be a whole number") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{name} {v}: must be between {low} and {high}")
        return v
    return parse


def positive_float(name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r}: must be a number of seconds") from None
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{name} {text!r}: must be a number of seconds above 0")
        return v
    return parse


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="roundtrip.py",
        description="Round trips per second from Python through taskring (to a C++ and to a Python worker), "
                    "one task per call and in batches, against a multiprocessing.Queue round trip measured "
                    "in the same run.",
        epilog="scenarios: " + ", ".join(SCENARIOS) + ". Exit status: 0 every round trip came back and every "
               "count adds up (targets met or not), 1 a run failed, 2 a bad argument.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("-n", "--tasks", type=positive_int("--tasks"),
                      help="round trips per run of each scenario (default: --duration 2)")
    size.add_argument("-d", "--duration", type=positive_float("--duration"),
                      help="seconds per run of each scenario (default 2)")
    p.add_argument("-b", "--batch", type=positive_int("--batch", 1, 65536), default=64,
                   help="tasks per batch in the batch scenarios (default 64)")
    p.add_argument("-r", "--repeat", type=positive_int("--repeat", 1, 1000), default=3,
                   help="runs per scenario; the rate reported is their median (default 3)")
    p.add_argument("--warmup", type=positive_int("--warmup", 0), default=2000,
                   help="round trips before each run, not timed (default 2000; 0 for none)")
    p.add_argument("--payload", type=positive_int("--payload", 1, 1 << 20), default=16,
                   help="payload bytes, echoed back (default 16)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated subset to run (default all); taskring ratios need mpq-1")
    p.add_argument("--cli", default=None,
                   help="the taskring CLI, for the C++ worker (default $TASKRING_CLI, else "
                        "build/release/tools/taskring)")
    p.add_argument("--cpu-producer", type=positive_int("--cpu-producer", 0, 4095), default=None,
                   help="pin this process (the producer) to CPU N (default: not pinned)")
    p.add_argument("--cpu-worker", type=positive_int("--cpu-worker", 0, 4095), default=None,
                   help="pin every worker and the multiprocessing.Queue echo process to CPU N (default: not pinned)")
    p.add_argument("--segment-slots", type=positive_int("--segment-slots", 1, 1 << 24), default=None,
                   help="task slots of each segment (default: the next power of two >= 4 * batch, at least 4096)")
    p.add_argument("--ring-capacity", type=positive_int("--ring-capacity", 1, 1 << 24), default=None,
                   help="queue ring capacity, a power of two (default: as --segment-slots)")
    p.add_argument("--timeout", type=positive_float("--timeout"), default=None,
                   help="pass this timeout (seconds) to every taskring wait; default none, like the queue's "
                        "get() (a watchdog ends the run if an echo process dies)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the JSON document to FILE; without FILE (or '-'), print it on stdout instead "
                        "of the table")
    a = p.parse_args(argv)

    chosen = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if not chosen or unknown:
        p.error(f"--scenarios {a.scenarios!r}: {'unknown ' + ', '.join(unknown) if unknown else 'empty'}; "
                f"accepted: {', '.join(SCENARIOS)}")
    a.scenarios = [s for s in SCENARIOS if s in chosen]  # the canonical order
    a.scenarios_given = a.scenarios != SCENARIOS
    if a.tasks is None and a.duration is None:
        a.duration = 2.0
    allowed = sorted(os.sched_getaffinity(0))
    for flag, cpu in (("--cpu-producer", a.cpu_producer), ("--cpu-worker", a.cpu_worker)):
        if cpu is not None and cpu not in allowed:
            p.error(f"{flag} {cpu}: not a CPU this process may run on; accepted: {','.join(map(str, allowed))}")
    if a.segment_slots is None:
        a.segment_slots = max(4096, 1 << (4 * a.batch - 1).bit_length())
    if a.ring_capacity is None:
        a.ring_capacity = 1 << (a.segment_slots - 1).bit_length()
    if a.segment_slots < 2 * a.batch:
        p.error(f"--segment-slots {a.segment_slots}: must be at least twice --batch ({2 * a.batch})")
    if a.ring_capacity & (a.ring_capacity - 1) or a.ring_capacity < a.batch:
        p.error(f"--ring-capacity {a.ring_capacity}: must be a power of two and at least --batch ({a.batch})")
    needs_cli = any(s.startswith("cpp-") for s in a.scenarios)
    if a.cli is None:
        a.cli = os.environ.get("TASKRING_CLI") or next((c for c in DEFAULT_CLIS if os.path.isfile(c)),
                                                       DEFAULT_CLIS[0])
    if needs_cli and not (os.path.isfile(a.cli) and os.access(a.cli, os.X_OK)):
        p.error(f"--cli {a.cli!r}: no executable taskring CLI there; build it (cmake --build build/release "
                f"--target taskring_cli), give --cli or TASKRING_CLI, or leave the cpp-* scenarios out with "
                f"--scenarios")
    return a


# ---- the systems ------------------------------------------------------------------------
class EchoProcessDied(Exception):
    """Raised in the main thread, from SIGUSR1, when an echo process exits mid-run."""


class Watchdog:
    """Ends the run if an echo process dies: its round trips would otherwise
    block for ever (a queue's get(), a result() without a timeout). A thread
    polls the processes and signals this process (SIGUSR1); the handler
    raises EchoProcessDied in the main thread, from inside any blocking call
    (a taskring wait looks for signals every 100 ms, a pipe read is
    interrupted)."""

    def __init__(self, systems: Dict[str, Any]) -> None:
        self.systems = systems
        self.dead: Optional[str] = None
        self._stop = threading.Event()
        self._old = signal.signal(signal.SIGUSR1, self._raise)
        self._thread = threading.Thread(target=self._run, name="echo-watchdog", daemon=True)
        self._thread.start()

    def _raise(self, signum: int, frame: Any) -> None:
        if self.dead is not None and not self._stop.is_set():
            raise EchoProcessDied(self.dead)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for sysm in list(self.systems.values()):
                code = sysm.exit_status()
                if code is not None:
                    self.dead = f"the {sysm.describe()} exited mid-run with status {code}"
                    os.kill(os.getpid(), signal.SIGUSR1)
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        signal.signal(signal.SIGUSR1, self._old)


class MpqSystem:
    """A child process that echoes what it reads from one queue onto another."""

    def __init__(self, cpu: Optional[int]) -> None:
        ctx = multiprocessing.get_context("spawn")  # inherits nothing, e.g. no segment mapping
        self.requests, self.replies = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=_mpq_child, args=(self.requests, self.replies, cpu), daemon=True,
                                name="mpq-echo")
        self.proc.start()
        self.sent = 0
        self.handled: Optional[int] = None

    def describe(self) -> str:
        return "multiprocessing.Queue echo process"

    def exit_status(self) -> Optional[int]:
        return self.proc.exitcode

    def one(self, p: bytes, n: int, deadline_ns: int, lat: List[int]) -> tuple:
        put, get, now = self.requests.put, self.replies.get, time.perf_counter_ns
        done = bad = 0
        t0 = start = now()
        while done < n:
            put(p)
            r = get()
            t1 = now()
            lat.append(t1 - t0)
            t0 = t1
            done += 1
            if r != p:
                bad += 1
                break
            if t1 >= deadline_ns:
                break
        self.sent += done
        return done, t0 - start, bad

    def batch(self, p: bytes, b: int, n: int, deadline_ns: int) -> tuple:
        put, get, now = self.requests.put, self.replies.get, time.perf_counter_ns
        full = [p] * b
        done = bad = 0
        start = now()
        while done < n:
            k = min(b, n - done)
            expect = full if k == b else full[:k]
            for _ in range(k):
                put(p)
            got = [get() for _ in range(k)]
            done += k
            if got != expect:
                bad += sum(1 for r in got if r != p)
                break
            if now() >= deadline_ns:
                break
        self.sent += done
        return done, now() - start, bad

    def close(self) -> None:
        if self.proc.is_alive():
            self.requests.put(None)
            try:
                while True:  # the replies end with the child's count
                    r = self.replies.get(timeout=10)
                    if isinstance(r, tuple) and r and r[0] == "handled":
                        self.handled = r[1]
                        break
            except Exception:  # queue.Empty: the child is stuck; it is killed below
                pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


class TaskringSystem:
    """One segment, one worker process (C++ or Python), one client."""

    def __init__(self, taskring: Any, kind: str, segment: str, args: argparse.Namespace) -> None:
        self.tr = taskring
        self.kind = kind
        self.segment = segment
        self.timeout = args.timeout
        self.sent = 0
        self.handled: Optional[int] = None
        self.worker_report = ""
        self.proc: Optional[subprocess.Popen] = None
        self.client = None
        taskring.create_segment(segment, slots=args.segment_slots, queues=("bench",),
                                ring_capacity=args.ring_capacity,
                                max_payload=max(4096, args.payload), payload_area=max(16 << 20, 4 * args.segment_slots
                                                                                      * max(64, args.payload)),
                                max_workers=4, result_ttl=None)
        self.created = True

    def start(self, args: argparse.Namespace) -> None:
        """Starts the worker process and waits for its first echo."""
        segment, taskring, kind = self.segment, self.tr, self.kind
        if kind == "cpp":
            cmd = [args.cli, "worker", "--segment", segment]
            if args.cpu_worker is not None:
                cmd += ["--cpu", str(args.cpu_worker)]
        else:
            cmd = [sys.executable, os.path.abspath(__file__), WORKER_MODE, "--segment", segment]
            if args.cpu_worker is not None:
                cmd += ["--cpu", str(args.cpu_worker)]
        # A session of its own: a Ctrl-C at the terminal reaches only this
        # script, which then stops the worker itself.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.client = taskring.Client(segment)
        # The first round trip proves the worker attached and has `echo`.
        try:
            r = self.client.submit("echo", b"ready").result(timeout=max(self.timeout or 0, 30.0))
        except Exception as e:
            raise BenchError(f"the {self.describe()} did not answer: {e}{self._exit_note()}") from None
        if r != b"ready":
            raise BenchError(f"the {self.describe()} answered {r!r} to b'ready'")
        self.sent += 1

    def describe(self) -> str:
        return "C++ worker (taskring worker)" if self.kind == "cpp" else "Python worker"

    def exit_status(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def _exit_note(self) -> str:
        if self.proc is None or self.proc.poll() is None:
            return ""
        err = self.proc.stderr.read().strip() if self.proc.stderr else ""
        return f"; it exited with status {self.proc.returncode}" + (f": {err}" if err else "")

    def _fail(self, scenario: str, e: BaseException) -> BenchError:
        return BenchError(f"{scenario}: {type(e).__name__}: {e}{self._exit_note()}")

    def one(self, scenario: str, p: bytes, n: int, deadline_ns: int, lat: List[int]) -> tuple:
        submit, timeout, now = self.client.submit, self.timeout, time.perf_counter_ns
        done = bad = 0
        t0 = start = now()
        try:
            while done < n:
                r = submit("echo", p).result(timeout)
                t1 = now()
                lat.append(t1 - t0)
                t0 = t1
                done += 1
                if r != p:
                    bad += 1
                    break
                if t1 >= deadline_ns:
                    break
        except (KeyboardInterrupt, SystemExit, EchoProcessDied):
            raise
        except Exception as e:
            raise self._fail(scenario, e) from None
        finally:
            self.sent += done
        return done, t0 - start, bad

    def call(self, scenario: str, p: bytes, n: int, deadline_ns: int, lat: List[int]) -> tuple:
        call, timeout, now = self.client.call, self.timeout, time.perf_counter_ns
        done = bad = 0
        t0 = start = now()
        try:
            while done < n:
                r = call("echo", p, timeout=timeout)
                t1 = now()
                lat.append(t1 - t0)
                t0 = t1
                done += 1
                if r != p:
                    bad += 1
                    break
                if t1 >= deadline_ns:
                    break
        except (KeyboardInterrupt, SystemExit, EchoProcessDied):
            raise
        except Exception as e:
            raise self._fail(scenario, e) from None
        finally:
            self.sent += done
        return done, t0 - start, bad

    def batch(self, scenario: str, p: bytes, b: int, n: int, deadline_ns: int, many: bool) -> tuple:
        """submit_many + results per batch, or (`many`) one call_many."""
        c, timeout, now = self.client, self.timeout, time.perf_counter_ns
        submit_many, results = c.submit_many, c.results
        call_many = getattr(c, "call_many", None)
        full = [p] * b
        done = bad = 0
        start = now()
        try:
            while done < n:
                k = min(b, n - done)
                expect = full if k == b else full[:k]
                if many:
                    self.sent += k  # call_many submits them all or raises
                    got = call_many("echo", expect, timeout=timeout)
                else:
                    handles = submit_many("echo", expect)
                    self.sent += len(handles)
                    got = results(handles, timeout)
                done += k
                if got != expect:
                    bad += sum(1 for r in got if r != p)
                    break
                if now() >= deadline_ns:
                    break
        except (KeyboardInterrupt, SystemExit, EchoProcessDied):
            raise
        except Exception as e:
            raise self._fail(scenario, e) from None
        return done, now() - start, bad

    def asyncio_batch(self, scenario: str, p: bytes, b: int, n: int, deadline_ns: int, one_future: bool) -> tuple:
        # A client of its own, closed after the run: its completion thread
        # listens for every completion of the segment while it lives, which
        # would cost the other scenarios a wake-up per task.
        client = self.tr.Client(self.segment)
        now = time.perf_counter_ns
        full = [p] * b
        counts = [0, 0]  # done, bad

        async def run() -> None:
            submit_many, gather, wait_for, timeout = client.submit_many, asyncio.gather, asyncio.wait_for, self.timeout
            done = 0
            while done < n:
                k = min(b, n - done)
                expect = full if k == b else full[:k]
                handles = submit_many("echo", expect)
                self.sent += len(handles)
                if one_future:
                    got = await client.results_async(handles, timeout)
                else:
                    got = await (gather(*handles) if timeout is None else wait_for(gather(*handles), timeout))
                done += k
                counts[0] = done
                if got != expect:
                    counts[1] = sum(1 for r in got if r != p)
                    return
                if now() >= deadline_ns:
                    return

        start = now()
        try:
            asyncio.run(run())
        except (KeyboardInterrupt, SystemExit, EchoProcessDied):
            raise
        except Exception as e:
            raise self._fail(scenario, e) from None
        finally:
            client.close()
        return counts[0], now() - start, counts[1]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()  # SIGTERM: the worker finishes its task and reports its counts
            try:
                out, err = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
            self.worker_report = (err or "").strip()
            if self.kind == "cpp":
                # "worker 0: claimed N, succeeded N, failed F, ..." (docs/cli.md)
                m = re.search(r"claimed (\d+), succeeded (\d+), failed (\d+)", err or "")
                if m:
                    self.handled = int(m.group(2)) + int(m.group(3))
            else:
                try:
                    stats = json.loads((out or "").strip().splitlines()[-1])
                    self.handled = stats["succeeded"] + stats["failed"]
                    self.worker_report = json.dumps(stats)
                except (ValueError, IndexError, KeyError):
                    pass
        if self.created:
            self.created = False
            try:
                self.tr.destroy_segment(self.segment)
            except self.tr.NotFoundError:
                pass


# ---- the run -------------------------------------------------------------------------------
def main(argv: List[str]) -> int:
    if argv and argv[0] == WORKER_MODE:
        return _python_worker(argv[1:])
    args = parse_args(argv)
    try:
        import taskring
    except ImportError as e:
        print(f"error: cannot import the taskring package ({e})", file=sys.stderr)
        print("hint: pip install . in the repository (docs/python.md), or run with the venv's python",
              file=sys.stderr)
        return 2

    # SIGTERM ends the run like Ctrl-C: the finally clauses stop the workers
    # and remove the segments.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    prefix = f"taskring-bench-rt-{os.getpid()}"
    payload = bytes((i * 7 + 1) & 0xFF for i in range(args.payload))
    n = args.tasks if args.tasks is not None else 1 << 62
    meta = {"commit": git_commit(), "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "taskring": getattr(taskring, "__version__", "?"), "taskring_package": package_info(taskring),
            "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg()}
    config = {"tasks": args.tasks, "duration_s": args.duration if args.tasks is None else None,
              "batch": args.batch, "repeat": args.repeat, "warmup": args.warmup, "payload": args.payload,
              "scenarios": args.scenarios, "cpu_producer": args.cpu_producer, "cpu_worker": args.cpu_worker,
              "segment_slots": args.segment_slots, "ring_capacity": args.ring_capacity, "cli": args.cli}
    runs: Dict[str, List[Dict[str, Any]]] = {s: [] for s in args.scenarios}
    for method, mode in (("call", "-call"), ("call_many", "-many"), ("results_async", "-async-results")):  # scenarios older packages cannot run
        if hasattr(taskring.Client, method):
            continue
        missing = [s for s in args.scenarios if s.endswith(mode)]
        if missing and args.scenarios_given:
            print(f"error: --scenarios {','.join(missing)}: this taskring package has no Client.{method}",
                  file=sys.stderr)
            return 2
        args.scenarios = [s for s in args.scenarios if s not in missing]
        config["scenarios"] = args.scenarios
    lats: Dict[str, List[int]] = {s: [] for s in args.scenarios if one_per_call(s)}
    systems: Dict[str, Any] = {}
    watchdog: Optional[Watchdog] = None
    error: Optional[str] = None
    try:
        # Every child starts before the producer is pinned, so none inherits its CPU.
        if any(s.startswith("mpq-") for s in args.scenarios):
            systems["mpq"] = MpqSystem(args.cpu_worker)
        for kind in ("cpp", "py"):
            if any(s.startswith(kind + "-") for s in args.scenarios):
                systems[kind] = TaskringSystem(taskring, kind, f"{prefix}-{kind}", args)
                systems[kind].start(args)  # once in `systems`, its segment is removed whatever happens
        watchdog = Watchdog(systems)
        if args.cpu_producer is not None:
            os.sched_setaffinity(0, {args.cpu_producer})

        def run_scenario(s: str, count: int, deadline_ns: int, lat: List[int]) -> tuple:
            kind, mode = s.split("-", 1)
            sysm = systems[kind]
            if kind == "mpq":
                return sysm.one(payload, count, deadline_ns, lat) if mode == "1" else \
                    sysm.batch(payload, args.batch, count, deadline_ns)
            if mode == "1":
                return sysm.one(s, payload, count, deadline_ns, lat)
            if mode == "call":
                return sysm.call(s, payload, count, deadline_ns, lat)
            if mode in ("batch", "many"):
                return sysm.batch(s, payload, args.batch, count, deadline_ns, mode == "many")
            return sysm.asyncio_batch(s, payload, args.batch, count, deadline_ns, mode == "async-results")

        for rep in range(args.repeat):
            for s in args.scenarios:
                if args.warmup:
                    _, _, bad = run_scenario(s, args.warmup, 1 << 62, [])
                    if bad:
                        raise BenchError(f"{s}: a wrong reply while warming up")
                lat: List[int] = []
                deadline = 1 << 62 if args.tasks is not None else time.perf_counter_ns() + int(args.duration * 1e9)
                done, elapsed_ns, bad = run_scenario(s, n, deadline, lat)
                if bad:
                    raise BenchError(f"{s}, run {rep + 1}: {bad} replies differ from the payload sent")
                if args.tasks is not None and done != args.tasks:
                    raise BenchError(f"{s}, run {rep + 1}: {done} round trips of {args.tasks}")
                rate = done / (elapsed_ns / 1e9) if elapsed_ns > 0 else 0.0
                runs[s].append({"tasks": done, "seconds": elapsed_ns / 1e9, "rate": rate})
                if s in lats:
                    lats[s].extend(lat)
                if args.json != "-":
                    print(f"== {s}, run {rep + 1} of {args.repeat}: {done} round trips in {elapsed_ns / 1e9:.3f} s, "
                          f"{fmt_rate(rate)}", file=sys.stderr, flush=True)
    except (BenchError, EchoProcessDied) as e:
        error = str(e)
    except KeyboardInterrupt:
        error = "interrupted"
    except (taskring.Error, ValueError, OSError) as e:  # e.g. a segment setting the engine refuses
        error = f"{type(e).__name__}: {e}"
    finally:
        if watchdog is not None:
            watchdog.stop()
        for sysm in systems.values():
            try:
                sysm.close()
            except Exception as e:  # keep going: the other segments must be removed too
                error = error or f"stopping a worker: {type(e).__name__}: {e}"

    # Every worker's count must match what was sent to it (warm-ups and the
    # readiness probe included): nothing lost, nothing run twice.
    counts = {}
    for kind, sysm in systems.items():
        counts[kind] = {"sent": sysm.sent, "handled": sysm.handled}
        if error is None and sysm.handled != sysm.sent:
            error = (f"{kind}: {sysm.sent} requests sent, the echo process reports "
                     f"{'no count' if sysm.handled is None else sysm.handled} handled")
    meta["loadavg_end"] = os.getloadavg()

    results = []
    base1 = statistics.median(r["rate"] for r in runs["mpq-1"]) if runs.get("mpq-1") else None
    baseb = statistics.median(r["rate"] for r in runs["mpq-batch"]) if runs.get("mpq-batch") else None
    for s in args.scenarios:
        if not runs[s]:
            continue
        system, worker, call = DESCRIPTION[s]
        rate = statistics.median(r["rate"] for r in runs[s])
        res: Dict[str, Any] = {"scenario": s, "system": system, "worker": worker, "call": call,
                               "batch": 1 if one_per_call(s) else args.batch, "rate": rate,
                               "tasks": sum(r["tasks"] for r in runs[s]), "runs": runs[s]}
        res["vs_mpq_1"] = rate / base1 if base1 else None
        res["vs_mpq_batch"] = rate / baseb if baseb and not one_per_call(s) else None
        if s in lats and lats[s]:
            v = sorted(lats[s])
            res["latency_ns"] = {"p50": percentile(v, 50), "p90": percentile(v, 90), "p99": percentile(v, 99),
                                 "p999": percentile(v, 99.9), "max": v[-1]}
        results.append(res)
    targets = []
    for r in results:
        if r["system"] != "taskring" or r["vs_mpq_1"] is None:
            continue
        one = one_per_call(r["scenario"])
        want = TARGET_ONE if one else TARGET_BATCH
        targets.append({"scenario": r["scenario"], "target": ("one task per call" if one else "batches") +
                        f": at least {want:.0f}x the multiprocessing.Queue round trip (mpq-1)",
                        "ratio": r["vs_mpq_1"], "at_least": want, "met": r["vs_mpq_1"] >= want})
    doc = {"meta": meta, "config": config, "results": results, "targets": targets, "counts": counts,
           "ok": error is None}
    if error is not None:
        doc["error"] = error

    if args.json is not None:
        text = json.dumps(doc, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if args.json != "-":
        print_table(doc)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def print_table(doc: Dict[str, Any]) -> None:
    cfg = doc["config"]
    each = f"{cfg['tasks']} round trips" if cfg["tasks"] else f"{cfg['duration_s']:g} s"
    print(f"Python round trips, payload {cfg['payload']} B, batch {cfg['batch']}, {each} per run, "
          f"median of {cfg['repeat']} runs; commit {doc['meta']['commit']}, loadavg "
          f"{doc['meta']['loadavg_start'][0]:.2f} at start\n")
    print("| scenario | system | worker | call | batch | round trips/s | vs mpq-1 | vs mpq-batch | p50 | p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in doc["results"]:
        ratio = lambda x: "" if x is None else f"{x:.1f}x"  # noqa: E731
        lat = r.get("latency_ns")
        print(f"| {r['scenario']} | {r['system']} | {r['worker']} | {r['call']} | {r['batch']} | "
              f"{fmt_rate(r['rate'])} | {ratio(r['vs_mpq_1'])} | {ratio(r['vs_mpq_batch'])} | "
              f"{fmt_ns(lat['p50']) if lat else ''} | {fmt_ns(lat['p99']) if lat else ''} |")
    if doc["targets"]:
        print()
        for t in doc["targets"]:
            print(f"target {t['scenario']}: {t['target']}: {t['ratio']:.1f}x: {'met' if t['met'] else 'not met'}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
