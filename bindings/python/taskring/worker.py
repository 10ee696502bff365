"""The worker side: the :func:`task` decorator names handlers, and
:class:`Worker` runs them in this process, claiming tasks from the
segment's queues.

A handler takes the payload (decoded by the task's codec) and returns the
result; with ``bind=True`` it also gets the :class:`taskring.Context` first,
to report progress and see cancellation. ``async def`` handlers run on an
event loop the worker owns. An exception fails the attempt (retried while
attempts are left) with "ExceptionType: message" as the error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from . import _convert, _core, codecs

_log = logging.getLogger("taskring.worker")

Context = _core.Context


@dataclass
class TaskDef:
    """A handler and its settings, made by :func:`task`. Calling it calls the
    function itself (handy in tests); :meth:`submit` sends it to a worker."""

    name: str
    fn: Callable[..., Any]
    codec: codecs.Codec
    bind: bool = False
    max_attempts: Optional[int] = None
    time_limit: Optional[float] = None
    kill_grace: Optional[float] = None
    retry_backoff: Optional[float] = None
    retry_backoff_max: Optional[float] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def submit(self, client: Any, payload: Any = None, **options: Any):
        """Submits this task through `client` with the task's codec;
        `options` are those of Client.submit. Returns a TaskHandle."""
        if payload is None and self.codec is codecs.BYTES:
            payload = b""
        return client.submit(self.name, payload, codec=self.codec, **options)

    def _engine_options(self) -> tuple:
        return (_convert.count("max_attempts", self.max_attempts, low=1, high=255),
                _convert.seconds_ns("time_limit", self.time_limit, none=0, zero_ok=False),
                _convert.seconds_ns("kill_grace", self.kill_grace, none=5_000_000_000),
                _convert.seconds_ns("retry_backoff", self.retry_backoff, none=10_000_000),
                _convert.seconds_ns("retry_backoff_max", self.retry_backoff_max, none=10_000_000_000))


# Handler results that are never awaitable (exact types; a subclass goes
# through the full check).
_PLAIN_TYPES = frozenset({bytes, bytearray, memoryview, str, int, float, bool, dict, list, tuple, type(None)})

_registry: Dict[str, TaskDef] = {}
_registry_lock = threading.Lock()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not 0 < len(name.encode()) <= _core.MAX_TASK_NAME_LENGTH:
        raise ValueError(f"task name {name!r}: must be a str of 1..{_core.MAX_TASK_NAME_LENGTH} bytes")
    return name


def _make_decorator(register: Callable[[TaskDef], None], name: Any, options: Dict[str, Any]):
    def wrap(fn: Callable[..., Any]) -> TaskDef:
        if not callable(fn):
            raise TypeError(f"@task: {fn!r} is not callable")
        opts = dict(options)
        codec = codecs.get(opts.pop("codec", None))
        td = TaskDef(name=_check_name(name if isinstance(name, str) else fn.__name__), fn=fn, codec=codec, **opts)
        td._engine_options()  # check the settings now, not when a worker starts
        register(td)
        return td

    if callable(name) and not isinstance(name, str):  # bare @task
        fn, name = name, None
        return wrap(fn)
    return wrap


def task(name: Union[str, Callable[..., Any], None] = None, *, codec: codecs.CodecLike = None, bind: bool = False,
         max_attempts: Optional[int] = None, time_limit: Optional[float] = None, kill_grace: Optional[float] = None,
         retry_backoff: Optional[float] = None, retry_backoff_max: Optional[float] = None):
    """Declares a task handler for every Worker of this process::

        @taskring.task("resize", codec="json", max_attempts=5, time_limit=30)
        def resize(args): ...

    `name` defaults to the function's name. `codec` decodes the payload and
    encodes the return value. `bind=True` passes the Context first. The
    other settings apply when the submitter gave none: `max_attempts`
    (1..255), `time_limit` seconds per attempt, `kill_grace` seconds a
    cancelled or timed-out handler may run on before its process is killed,
    and the retry backoff (first wait, doubling up to the maximum).
    Raises ValueError for a bad setting or a name already declared.
    """

    def register(td: TaskDef) -> None:
        with _registry_lock:
            if td.name in _registry and _registry[td.name].fn is not td.fn:
                raise ValueError(f"task name {td.name!r}: already declared by {_registry[td.name].fn!r}")
            _registry[td.name] = td

    return _make_decorator(register, name, dict(codec=codec, bind=bind, max_attempts=max_attempts,
                                                time_limit=time_limit, kill_grace=kill_grace,
                                                retry_backoff=retry_backoff, retry_backoff_max=retry_backoff_max))


def registered_tasks() -> List[TaskDef]:
    """The tasks declared with @taskring.task so far, by name."""
    with _registry_lock:
        return [_registry[k] for k in sorted(_registry)]


class _LoopHolder:
    """The event loop of a worker's async handlers, made at first use."""

    def __init__(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def get(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def close(self) -> None:
        """Closes the loop (ResourceWarning otherwise); a later get() makes another."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()


class Worker:
    """A worker attached to segment `segment`, running Python handlers.

    - `queues`: queue names to take tasks from; None for all.
    - `cpu`: pin the thread that calls :meth:`run` to this CPU.
    - `tasks`: the TaskDefs to run; None for every @taskring.task declared
      (looked up when run() starts), plus those declared with
      :meth:`task` on this worker.
    - `builtins`: also run the engine's built-in tasks (noop, echo, sleep,
      spin, fail), which run in C++.
    - `claim_batch`, `steal`: the claim loop's batch size and work stealing.

    Takes a worker registry entry at once; raises ValueError (unknown
    queue, bad cpu) or FullError (registry full).
    """

    def __init__(self, segment: str, *, queues: Optional[Sequence[str]] = None, cpu: Optional[int] = None,
                 tasks: Optional[Iterable[TaskDef]] = None, builtins: bool = False, claim_batch: int = 16,
                 steal: bool = True) -> None:
        if isinstance(queues, str):
            queues = [q for q in queues.split(",") if q]
        if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0):
            raise ValueError(f"cpu {cpu!r}: must be a CPU number >= 0 or None")
        self.segment = segment
        self._core = _core._Worker(segment, list(queues or []), -1 if cpu is None else cpu, claim_batch, steal)
        self._tasks: Optional[List[TaskDef]] = None if tasks is None else list(tasks)
        self._own: Dict[str, TaskDef] = {}
        self._registered: set = set()
        # The handlers reach the event loop through this holder, not through
        # self: the C++ worker keeps the handlers, and a reference back to
        # this object would be a cycle the garbage collector cannot see.
        self._loop = _LoopHolder()
        if builtins:
            self._core.register_builtins()
            self._registered.update(self._core.handlers)

    def __repr__(self) -> str:
        return f"<taskring.Worker segment={self.segment!r} index={self._core.index}>"

    def task(self, name: Union[str, Callable[..., Any], None] = None, **options: Any):
        """Like :func:`taskring.task`, for this worker only."""

        def register(td: TaskDef) -> None:
            if td.name in self._own:
                raise ValueError(f"task name {td.name!r}: already declared on this worker")
            self._own[td.name] = td

        return _make_decorator(register, name, options)

    @property
    def index(self) -> int:
        """The worker's registry index (taskring status shows it)."""
        return self._core.index

    def stats(self) -> Dict[str, int]:
        """Counters: claimed, succeeded, failed, cancelled, retried, stolen, parks."""
        return self._core.stats()

    def _register_all(self) -> None:
        chosen = {td.name: td for td in (registered_tasks() if self._tasks is None else self._tasks)}
        chosen.update(self._own)
        if not chosen and not self._registered:
            raise ValueError("tasks: this worker has no handlers (declare some with @taskring.task)")
        for name, td in chosen.items():
            if name in self._registered:
                continue
            fn, finish, describe = self._handler(td)
            self._core.register(name, fn, *td._engine_options(), finish, describe)
            self._registered.add(name)

    def _handler(self, td: TaskDef) -> tuple:
        """What _core.register takes for `td`: (fn, finish, describe). A
        bytes handler without bind is called straight with the payload
        (finish and describe are its slow paths, see module.cc); any other
        through a wrapper that gets the Context (finish and describe None)."""
        codec, fn, bind, loop = td.codec, td.fn, td.bind, self._loop
        is_async = inspect.iscoroutinefunction(fn)
        plain = codec is codecs.BYTES

        def describe(e: BaseException, task_id: int, attempt: int) -> str:
            _log.debug("task %s (%s) attempt %s failed", task_id, td.name, attempt, exc_info=e)
            return f"{type(e).__name__}: {e}"

        if plain and not bind:
            def finish(out: Any) -> Any:  # a result neither None nor bytes-like
                if is_async or inspect.isawaitable(out):
                    return loop.get().run_until_complete(out)
                return out  # not bytes-like: the extension fails the task with a TypeError

            return fn, finish, describe

        def handler(ctx: Context) -> Any:
            try:
                arg = ctx.payload if plain else codec.decode(ctx.payload)
                out = fn(ctx, arg) if bind else fn(arg)
                # The type test first: inspect.isawaitable costs more than a
                # small handler, and a value of these types never is one.
                if is_async or (type(out) not in _PLAIN_TYPES and inspect.isawaitable(out)):
                    out = loop.get().run_until_complete(out)
                if out is None and ctx.cancelled:
                    return None  # ends the task cancelled
                if plain:
                    return b"" if out is None else out
                return codec.encode(out)
            except Exception as e:  # the attempt fails; the worker goes on
                ctx.fail(describe(e, ctx.id, ctx.attempt))
                return None

        return handler, None, None

    def run(self, max_tasks: Optional[int] = None) -> str:
        """Runs tasks until :meth:`stop`, a drain (taskring drain), the
        segment closing, or `max_tasks` tasks. Releases the GIL while it
        waits for work.

        On the main thread, Ctrl-C (SIGINT) finishes the running task and
        raises KeyboardInterrupt; SIGTERM finishes it and returns 'signal'.
        Otherwise returns 'stopped' or 'drained'.
        """
        if max_tasks is not None and (isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 0):
            raise ValueError(f"max_tasks {max_tasks!r}: must be an integer >= 0 or None")
        self._register_all()
        on_main = threading.current_thread() is threading.main_thread()
        try:
            return self._core.run(-1 if max_tasks is None else max_tasks, on_main)
        finally:
            self._loop.close()  # on the thread that ran the async handlers

    def stop(self) -> None:
        """Makes run() return after the running task; from any thread."""
        self._core.stop()
