"""Fixtures of the Python package's tests.

The tests run against the INSTALLED package (``pip install .`` into a venv,
then ``python -m pytest tests/python`` from the repository root); nothing
here puts bindings/python on sys.path, and the first check below refuses to
run against the source tree, where taskring._core does not exist.

- ``segment``: a fresh segment per test, named ``pytest-<pid>-<n>``, made
  small with taskring.create_segment (override the sizes with
  ``@pytest.mark.segment(ring_capacity=64, ...)``) and destroyed at teardown,
  also when the test failed.
- ``client``: a taskring.Client on it, closed at teardown.
- ``workers``: Worker objects run in threads, stopped and joined at teardown.
- ``cli``: the path of the C++ ``taskring`` tool (env TASKRING_CLI); the
  tests that need it are skipped, saying why, when it is not there.
- ``spawn``: subprocesses with TASKRING_PY_LEAK_CHECK=1, their output
  collected by threads, killed at teardown if still running.
- ``rng``: a random.Random seeded from TASKRING_TEST_SEED (or at random),
  the seed printed so that a failure shows it.

Every test has a time limit (``@pytest.mark.timeout(seconds)``, default
120 s): SIGALRM fails the test, and faulthandler ends the whole run with
every thread's traceback if even that does not get through.
"""

from __future__ import annotations

import faulthandler
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

import taskring

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 120  # seconds per test; every wait inside a test is shorter (30 s)
WAIT = 30.0  # seconds for anything that should happen; never a measure of speed

# Small sizes: a test needs little, and 2-core CI machines run several suites.
SEGMENT_DEFAULTS = dict(slots=4096, ring_capacity=4096, max_payload=64 << 10, payload_area=4 << 20, max_workers=16,
                        result_ttl=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "segment(**sizes): create_segment arguments for the segment fixture")
    config.addinivalue_line("markers", "timeout(seconds): this test's time limit (default 120)")
    where = Path(taskring.__file__).resolve()
    if (REPO / "bindings") in where.parents:
        raise pytest.UsageError(f"taskring was imported from the source tree ({where}); install it "
                                f"(build/venv/bin/pip install .) and run without bindings/python on sys.path")


# ---- Time limits ----------------------------------------------------------------

class TimeLimitExceeded(Exception):
    """Raised in the main thread when a test outlives its time limit."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]):
    marker = item.get_closest_marker("timeout")
    limit = marker.args[0] if marker else DEFAULT_TIMEOUT

    def expired(signum, frame):
        raise TimeLimitExceeded(f"{item.nodeid}: still running after its time limit of {limit} s")

    # Blocking taskring calls look for signals every 100 ms, so SIGALRM gets
    # through them; faulthandler is for a hang that never returns to Python.
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    faulthandler.dump_traceback_later(limit + 60, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()


# ---- Helpers --------------------------------------------------------------------

def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT, interval: float = 0.005):
    """Polls `predicate` until it returns something true (returned), or
    fails the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def subprocess_env(**extra: str) -> dict:
    """The environment of a subprocess: the leak check on, and no
    PYTHONPATH or TASKRING_SEGMENT leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TASKRING_SEGMENT")}
    env["TASKRING_PY_LEAK_CHECK"] = "1"
    env.update(extra)
    return env


def python_worker_cmd(module: str, segment: str, *args: str) -> List[str]:
    return [sys.executable, "-m", "taskring", "worker", module, "--segment", segment, *args]


# A module of @taskring.task handlers for `python -m taskring worker`
# subprocesses; tests write it into tmp_path as trtasks.py.
WORKER_MODULE = '''
import os
import time

import taskring


@taskring.task("upper")
def upper(payload):
    return bytes(payload).upper()


@taskring.task("pid")
def pid(payload):
    return str(os.getpid()).encode()


@taskring.task("slow_first_attempt", bind=True)
def slow_first_attempt(ctx, payload):
    # The first attempt sleeps for the test to kill its process; a retry
    # returns at once and says which attempt it was.
    if ctx.attempt == 1:
        time.sleep(120)
    return b"done on attempt %d" % ctx.attempt


@taskring.task("gated")
def gated(payload):
    # Runs until the file named by the payload exists (at most 60 s).
    deadline = time.monotonic() + 60
    while not os.path.exists(payload) and time.monotonic() < deadline:
        time.sleep(0.005)
    return b"gate seen" if os.path.exists(payload) else b"gate never opened"


@taskring.task("meet")
def meet(payload):
    # Rendezvous of two tasks in two processes: each writes its pid into the
    # directory named by the payload and waits until two pids are there.
    folder = payload.decode()
    with open(os.path.join(folder, str(os.getpid())), "w"):
        pass
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the other task never started")
        time.sleep(0.005)
    return str(os.getpid()).encode()
'''


class Proc:
    """A subprocess whose stdout and stderr lines are read by threads."""

    def __init__(self, cmd: List[str], *, cwd=None, env=None, new_session: bool = False) -> None:
        self.cmd = cmd
        self.popen = subprocess.Popen(cmd, cwd=cwd, env=env if env is not None else subprocess_env(),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, errors="replace", start_new_session=new_session)
        self.new_session = new_session
        self.out: List[str] = []
        self.err: List[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
                         threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True)]
        for r in self._readers:
            r.start()

    def _read(self, stream, into: List[str]) -> None:
        for line in stream:
            with self._cond:
                into.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdout(self) -> str:
        with self._cond:
            return "".join(self.out)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self.err)

    def wait_for_line(self, text: str, *, stream: str = "stderr", count: int = 1, timeout: float = WAIT) -> List[str]:
        """Waits until `count` lines of `stream` contain `text`; returns them.
        Fails the test (with the output so far) if the process ends first or
        `timeout` passes."""
        lines = self.out if stream == "stdout" else self.err
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [ln for ln in lines if text in ln]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                exited = self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)
                if left <= 0 or exited:
                    why = "it exited" if exited else f"{timeout} s passed"
                    pytest.fail(f"{self.cmd}: {why} before {count} line(s) with {text!r} on {stream}; "
                                f"stdout:\n{''.join(self.out)}\nstderr:\n{''.join(self.err)}")
                self._cond.wait(min(left, 0.1))

    def finish(self, timeout: float = WAIT, *, leak_check: bool = True) -> int:
        """Waits for the process to exit and returns its exit status; fails
        the test if it does not within `timeout`, or (with `leak_check`) if
        nanobind reported leaked instances."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.cmd}: still running {timeout} s later; stderr:\n{self.stderr}")
        self._close_pipes(timeout)
        if leak_check:
            assert "nanobind: leaked" not in self.stderr, f"{self.cmd}: reference leak:\n{self.stderr}"
        return code

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL to this process (and, if it leads its own session, to the
        processes it started)."""
        if self.popen.poll() is None:
            if self.new_session:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                self.popen.kill()
        self.popen.wait(WAIT)
        self._close_pipes(WAIT)

    def _close_pipes(self, timeout: float) -> None:
        for r in self._readers:
            r.join(timeout)  # EOF once the process and its children are gone
        for stream in (self.popen.stdout, self.popen.stderr):
            if not any(r.is_alive() for r in self._readers):
                stream.close()


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---- Fixtures -------------------------------------------------------------------

_counter = itertools.count(1)


def unique_segment_name() -> str:
    return f"pytest-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def segment(request: pytest.FixtureRequest):
    """The name of a new segment, destroyed at teardown."""
    name = unique_segment_name()
    marker = request.node.get_closest_marker("segment")
    sizes = dict(SEGMENT_DEFAULTS, **(marker.kwargs if marker else {}))
    taskring.create_segment(name, **sizes)
    try:
        yield name
    finally:
        try:
            taskring.destroy_segment(name)
        except taskring.NotFoundError:
            pass  # the test destroyed it
        assert not os.path.exists(f"/dev/shm/{name}"), f"segment {name} is still in /dev/shm after destroy"


@pytest.fixture
def client(segment: str):
    c = taskring.Client(segment)
    try:
        yield c
    finally:
        c.close()


class WorkerThreads:
    """Makes Workers on the test's segment and runs each in a thread.

    ``w = workers.new(builtins=True)``, declare handlers with ``@w.task``,
    then ``workers.start(w)``; or ``workers.start()`` for a new worker with
    the built-in handlers only.
    """

    def __init__(self, segment: str) -> None:
        self.segment = segment
        self._running: list = []  # (worker, thread, box)

    def new(self, **options) -> taskring.Worker:
        return taskring.Worker(self.segment, **options)

    def start(self, worker: Optional[taskring.Worker] = None, *, max_tasks: Optional[int] = None) -> taskring.Worker:
        if worker is None:
            worker = self.new(builtins=True)
        box: dict = {}

        def run() -> None:
            try:
                box["returned"] = worker.run(max_tasks)
            except BaseException as e:  # reported at teardown
                box["raised"] = e

        t = threading.Thread(target=run, name=f"test-worker-{len(self._running)}", daemon=True)
        t.start()
        self._running.append((worker, t, box))
        return worker

    def thread(self, worker: taskring.Worker) -> threading.Thread:
        return next(t for w, t, _ in self._running if w is worker)

    def stop_all(self) -> None:
        for w, _, _ in self._running:
            w.stop()
        problems = []
        for w, t, box in self._running:
            t.join(WAIT)
            if t.is_alive():
                problems.append(f"{w!r}: run() did not return within {WAIT} s of stop()")
            elif "raised" in box:
                problems.append(f"{w!r}: run() raised {box['raised']!r}")
            elif box.get("returned") not in ("stopped", "drained"):
                problems.append(f"{w!r}: run() returned {box.get('returned')!r}")
        self._running.clear()
        assert not problems, "; ".join(problems)


@pytest.fixture
def workers(segment: str):
    threads = WorkerThreads(segment)
    try:
        yield threads
    finally:
        threads.stop_all()


def _cli_path() -> Path:
    given = os.environ.get("TASKRING_CLI")
    path = Path(given) if given else REPO / "build" / "release" / "tools" / "taskring"
    if path.is_dir():  # a build tree laid out as tools/taskring/taskring
        path = path / "taskring"
    return path


@pytest.fixture(scope="session")
def cli() -> str:
    path = _cli_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        how = "TASKRING_CLI" if os.environ.get("TASKRING_CLI") else "the default path (set TASKRING_CLI to override)"
        pytest.skip(f"the C++ taskring CLI is not at {path} ({how}); build it with "
                    f"'cmake --build build/release --target taskring_cli'")
    return str(path)


@pytest.fixture
def spawn():
    """spawn(cmd, cwd=..., env=..., new_session=False) -> Proc; anything
    still running at teardown is killed."""
    procs: List[Proc] = []

    def start(cmd: List[str], **kwargs) -> Proc:
        p = Proc([str(c) for c in cmd], **kwargs)
        procs.append(p)
        return p

    try:
        yield start
    finally:
        for p in procs:
            p.kill()


@pytest.fixture
def worker_module(tmp_path: Path) -> Path:
    """tmp_path with trtasks.py (WORKER_MODULE) in it: run
    ``python -m taskring worker trtasks`` with cwd there."""
    (tmp_path / "trtasks.py").write_text(WORKER_MODULE)
    return tmp_path


@pytest.fixture
def rng() -> random.Random:
    text = os.environ.get("TASKRING_TEST_SEED")
    if text is not None and not text.isdigit():
        raise pytest.UsageError(f"TASKRING_TEST_SEED {text!r}: must be a non-negative integer")
    seed = int(text) if text is not None else random.SystemRandom().randrange(2**32)
    print(f"TASKRING_TEST_SEED={seed}")  # pytest shows it with a failure's output
    return random.Random(seed)
