"""``python -m taskring worker MODULE``: runs the @taskring.task handlers of
a module in worker processes, the way ``celery -A app worker`` does.

With ``--processes N`` (N > 1) this process supervises N worker processes:
it replaces one that dies (after telling the engine, so its running task is
retried at once with the exit reason recorded), runs a watchdog for time
limits, and on Ctrl-C or SIGTERM stops them all after their running task.
Exit status: 0 after a clean stop or drain, 1 on an error, 2 on bad usage,
130 after Ctrl-C of a single worker.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from typing import List, Optional, Sequence

from . import _core
from ._errors import Error
from .worker import Worker, registered_tasks

_EXIT_USAGE = 2


def _cpus(text: str) -> List[int]:
    out = []
    for part in text.split(","):
        if not part.strip().isdigit():
            raise argparse.ArgumentTypeError(f"'{text}': '{part}' is not a CPU number (use e.g. 0,1,3)")
        out.append(int(part))
    return out


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': must be an integer of at least 1")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m taskring", description="taskring from Python.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run the @taskring.task handlers of a module",
                       description="Runs the @taskring.task handlers that MODULE declares.")
    w.add_argument("module", metavar="MODULE", help="dotted module to import (from the current directory too)")
    w.add_argument("--segment", default=os.environ.get("TASKRING_SEGMENT"),
                   help="segment name (default: $TASKRING_SEGMENT)")
    w.add_argument("--processes", type=_positive, default=1, metavar="N", help="worker processes (default 1)")
    w.add_argument("--queues", default="", metavar="Q1,Q2", help="queues to serve (default: all)")
    w.add_argument("--cpu", type=_cpus, default=None, metavar="C1,C2",
                   help="pin worker i to the i-th CPU of this list (cycled)")
    w.add_argument("--max-tasks", type=_positive, default=None, metavar="N",
                   help="each worker stops after N tasks (for tests and recycling)")
    w.add_argument("--builtins", action="store_true", help="also serve the built-in tasks (noop, echo, ...)")
    return p


def _say(line: str) -> None:
    """Writes `line` to stderr in one write(2) and flushes it: print() writes
    the text and its newline separately, so the lines of a supervisor's
    worker processes, which share its stderr, would interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    _say(f"python -m taskring: error: {message}")
    return _EXIT_USAGE


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.segment:
        return _usage(parser, "--segment: no segment given (pass --segment NAME or set TASKRING_SEGMENT)")
    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(args.module)
    except ImportError as e:
        return _usage(parser, f"MODULE '{args.module}': cannot import it: {e}")
    except Exception as e:  # a SyntaxError or an error the module raised: show where, then say what failed
        traceback.print_exc()
        return _usage(parser, f"MODULE '{args.module}': importing it raised {type(e).__name__}: {e}")
    if not registered_tasks() and not args.builtins:
        return _usage(parser, f"MODULE '{args.module}': declares no tasks (decorate handlers with @taskring.task)")
    queues = [q for q in args.queues.split(",") if q]
    if args.processes == 1:
        return _run_one(args.segment, queues, args.cpu[0] if args.cpu else None, args.max_tasks, args.builtins)
    return _Supervisor(args, queues).run()


def _run_one(segment: str, queues: List[str], cpu: Optional[int], max_tasks: Optional[int], builtins: bool) -> int:
    try:
        w = Worker(segment, queues=queues, cpu=cpu, builtins=builtins)
        names = sorted(t.name for t in registered_tasks())
        _say(f"worker pid {os.getpid()} (index {w.index}) on segment '{segment}': tasks {', '.join(names)}; "
             f"queues {', '.join(queues) or 'all'}; cpu {'-' if cpu is None else cpu}")
        why = w.run(max_tasks)
    except KeyboardInterrupt:
        _say(f"worker pid {os.getpid()}: interrupted, stopped after its running task")
        return 130
    except (Error, ValueError, TimeoutError) as e:
        _say(f"python -m taskring: error: {e}")
        return 1
    stats = w.stats()
    _say(f"worker pid {os.getpid()}: {why}; {stats['succeeded']} succeeded, {stats['failed']} failed, "
         f"{stats['retried']} retried")
    return 0


class _Supervisor:
    """Starts and replaces worker processes; the parent never attaches a
    worker itself (only a watchdog), so a fork copies no worker state."""

    _TICK = 0.05  # seconds between waitpid and watchdog passes

    def __init__(self, args: argparse.Namespace, queues: List[str]) -> None:
        self.args = args
        self.queues = queues
        self.children: dict = {}  # pid -> place
        self.stopping = False
        self.failed = False  # a worker could not start or run (its error is above)

    def _spawn(self, place: int) -> None:
        cpu = self.args.cpu[place % len(self.args.cpu)] if self.args.cpu else None
        sys.stdout.flush()
        sys.stderr.flush()
        # Stop signals are blocked from before the fork until the parent has
        # recorded the child and the child has dropped the parent's handler:
        # otherwise a SIGTERM in between would miss the new child (_stop
        # runs before it is in self.children, and the supervisor then waits
        # for it forever) or reach the child's copy of _stop.
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            raise
        if pid == 0:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
                code = _run_one(self.args.segment, self.queues, cpu, self.args.max_tasks, self.args.builtins)
                if code == 130:
                    code = 0  # a Ctrl-C of the whole group: a clean stop
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = place
        if self.stopping:
            # A signal that arrived before the block ran _stop at a bytecode
            # boundary after it, when this child was not recorded yet.
            os.kill(pid, signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        try:
            watchdog = _core._Watchdog.attach(self.args.segment)
        except (Error, ValueError) as e:
            _say(f"python -m taskring: error: {e}")
            return 1
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        _say(f"supervisor pid {os.getpid()} for segment '{self.args.segment}': {self.args.processes} worker "
             f"processes")
        for place in range(self.args.processes):
            self._spawn(place)
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                watchdog.check()
                time.sleep(self._TICK)
                continue
            place = self.children.pop(pid)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                continue  # stopped, drained or done with --max-tasks: not replaced
            try:
                moved = _core.worker_exited(self.args.segment, pid, status)
            except Error as e:  # the segment is gone (destroyed): nothing to put back
                _say(f"supervisor: recovering worker pid {pid}: {e}")
                moved = 0
            how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exited with code {os.WEXITSTATUS(status)}")
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (1, _EXIT_USAGE):
                self.failed = True
            if self.stopping or self.failed:
                _say(f"supervisor: worker pid {pid} {how} ({moved} tasks put back); not replacing it")
                continue
            _say(f"supervisor: worker pid {pid} {how} ({moved} tasks put back); starting a replacement")
            self._spawn(place)
        return 1 if self.failed else 0
