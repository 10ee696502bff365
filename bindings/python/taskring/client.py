"""The producer side: :class:`Client` submits tasks, :class:`TaskHandle`
waits for, inspects and cancels one of them, in plain or asyncio code.

Blocking calls release the GIL and wake up every 100 ms at most to let
Ctrl-C through; asyncio awaits are woken by the engine itself, through one
completion thread per client (no polling).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _convert, _core, codecs
from ._errors import NotFoundError, TaskCancelled, TaskFailed

Outcome = _core.Outcome
Priority = Union[str, int]


@dataclass(frozen=True)
class TaskStatus:
    """A snapshot of a task, without reading its result.

    ``state`` is one of pending, running, succeeded, failed, cancelled.
    ``progress`` is the handler's last ``ctx.progress(done, total)`` as a
    (done, total) pair, or None. Times are CLOCK_MONOTONIC nanoseconds
    (``taskring.monotonic_ns()``), 0 where not reached yet.
    """

    id: int
    state: str
    task: str
    queue: str
    priority: str
    attempts: int
    max_attempts: int
    crashes: int
    last_crash: Optional[str]
    owner_worker: int
    cancel_requested: bool
    timed_out: bool
    payload_bytes: int
    value: bytes
    last_error: str
    progress: Optional[Tuple[int, int]]
    submit_ns: int
    start_ns: int
    finish_ns: int
    run_at_ns: int
    deadline_ns: int

    @property
    def done(self) -> bool:
        """True if the task reached a terminal state."""
        return self.state in ("succeeded", "failed", "cancelled")


def _status_from_outcome(o: Outcome, task: str = "", queue: str = "") -> TaskStatus:
    return TaskStatus(id=o.id, state=o.state, task=task, queue=queue, priority="", attempts=o.attempts,
                      max_attempts=0, crashes=o.crashes, last_crash=o.last_crash, owner_worker=-1,
                      cancel_requested=False, timed_out=o.timed_out, payload_bytes=0, value=o.value,
                      last_error="", progress=None, submit_ns=o.submit_ns, start_ns=o.start_ns,
                      finish_ns=o.finish_ns, run_at_ns=0, deadline_ns=0)


class TaskHandle:
    """One submitted task. Its result can be read once; the handle keeps it.

    ``await handle`` gives the same as ``handle.result()`` without blocking
    the event loop.
    """

    __slots__ = ("id", "_client", "_codec", "_outcome", "__weakref__")

    def __init__(self, client: "Client", task_id: int, codec: codecs.Codec) -> None:
        self.id = task_id
        self._client = client
        self._codec = codec
        self._outcome: Optional[Outcome] = None

    def __repr__(self) -> str:
        state = self._outcome.state if self._outcome is not None else "unread"
        return f"<TaskHandle {self.id} {state}>"

    def outcome(self, timeout: Optional[float] = None) -> Outcome:
        """Waits for the task to finish and returns its :class:`Outcome`
        (any final state, nothing raised for a failed task).

        `timeout` in seconds; None waits without limit. Raises TimeoutError
        if it passes (the task is untouched), NotFoundError if somebody else
        read the result. Releases the GIL; Ctrl-C raises KeyboardInterrupt.
        """
        if self._outcome is None:
            try:
                self._outcome = self._client._core.wait(
                    self.id, -1 if timeout is None else _convert.seconds_ns("timeout", timeout, none=-1))
            except NotFoundError:
                self._from_bridge()
        assert self._outcome is not None
        return self._outcome

    def _from_bridge(self) -> None:
        """After a read of this task found it gone: an await of this handle
        (timed out or still running) may have had the completion thread read
        the outcome just before, and then the handle gets it from there.
        Otherwise the NotFoundError being handled is raised again."""
        bridge = self._client._async
        if bridge is None or not bridge.settle(self):
            raise

    def result(self, timeout: Optional[float] = None) -> Any:
        """Waits for the task and returns its result, decoded by the codec.

        Raises TaskFailed or TaskCancelled if it did not succeed, and what
        :meth:`outcome` raises.
        """
        o = self._outcome
        if o is None:
            o = self.outcome(timeout)
        return self._decode(o)

    def _decode(self, o: Outcome) -> Any:
        if o.ok:
            return o.value if self._codec is codecs.BYTES else self._codec.decode(o.value)
        text = o.value.decode(errors="replace")
        if o.state == "cancelled":
            raise TaskCancelled(self.id, text, o)
        raise TaskFailed(self.id, text, o)

    def done(self) -> bool:
        """True if the task finished (reads the result if so). Never waits
        for the task; after an await of this handle it may wait a moment for
        the completion thread, which may be reading it."""
        if self._outcome is None:
            try:
                self._outcome = self._client._core.try_get(self.id)
            except NotFoundError:
                self._from_bridge()
        return self._outcome is not None

    def status(self) -> TaskStatus:
        """A snapshot of the task: state, attempts, progress, times."""
        if self._outcome is not None:
            return _status_from_outcome(self._outcome)
        return TaskStatus(**self._client._core.peek(self.id))

    def progress(self) -> Optional[Tuple[int, int]]:
        """The handler's last reported (done, total), or None."""
        return self.status().progress

    def cancel(self) -> str:
        """Cancels the task. Returns 'cancelled' (it was pending and will
        never run), 'requested' (it runs; its handler sees ctx.cancelled) or
        'finished' (too late)."""
        if self._outcome is not None:
            return "finished"
        return self._client._core.cancel(self.id)

    def release(self) -> None:
        """Gives up the result: the engine frees the task when it ends."""
        if self._outcome is None:
            self._client._core.release(self.id)

    def __await__(self):
        return self._client._bridge().wait(self).__await__()


class _Waiter:
    """One await on the bridge: its future, and how many of its tasks have
    not finished yet (set to 0 when it is given an error; it may then go
    below zero as the rest finish)."""

    __slots__ = ("loop", "fut", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fut = loop.create_future()
        self.remaining = 0


class _AsyncBridge:
    """One completion thread per client: it parks in the engine until any
    watched task finishes, then hands the outcomes to each awaiting event
    loop with call_soon_threadsafe. An await of many tasks has one future,
    resolved when the last of them finished."""

    def __init__(self, client: "Client") -> None:
        self._completions = _core._Completions(client._core)
        self._lock = threading.Lock()
        self._waiters: Dict[int, List[Tuple[_Waiter, TaskHandle]]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"taskring-completions-{client.segment}", daemon=True)
        self._thread.start()
        _live_bridges.add(self)

    async def wait(self, handle: TaskHandle) -> Any:
        await self.wait_all((handle,))
        assert handle._outcome is not None
        return handle._decode(handle._outcome)

    async def wait_all(self, handles: Sequence[TaskHandle]) -> None:
        """Returns once every handle holds its outcome."""
        if all(h._outcome is not None for h in handles):
            return
        w = _Waiter(asyncio.get_running_loop())
        new_ids: List[int] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            for h in handles:
                # Checked again under the lock: the completion thread may
                # have stored the outcome (for another await of this handle)
                # since the check above, and the engine hands a result out
                # once, so watching the task again would find it gone.
                if h._outcome is not None:
                    continue
                waiting = self._waiters.get(h.id)
                if waiting is None:
                    waiting = self._waiters[h.id] = []
                    new_ids.append(h.id)
                waiting.append((w, h))
                w.remaining += 1
        if w.remaining == 0:
            return
        if new_ids:
            self._completions.watch_many(new_ids)
        await w.fut

    def settle(self, handle: TaskHandle) -> bool:
        """Waits until the completion thread no longer watches `handle`;
        True if it stored the handle's outcome meanwhile."""
        while True:
            with self._lock:
                if handle._outcome is not None:
                    return True
                if handle.id not in self._waiters:
                    return False
            time.sleep(0.001)  # it read the task and is about to take the lock

    def _run(self) -> None:
        while not self._closed:
            by_loop: Dict[asyncio.AbstractEventLoop, List[Tuple[asyncio.Future, Any]]] = {}
            try:
                items = self._completions.collect(-1)
            except BaseException as e:  # never leave awaits hanging: they all get the error
                with self._lock:
                    self._closed = True
                    for w in self._take_waiters():
                        by_loop.setdefault(w.loop, []).append((w.fut, e))
                items = []
            with self._lock:
                for task_id, got in items:
                    for w, handle in self._waiters.pop(task_id, ()):
                        if isinstance(got, Outcome):
                            handle._outcome = got
                        elif handle._outcome is None:  # gone: read by somebody else
                            if w.remaining > 0:
                                w.remaining = 0
                                by_loop.setdefault(w.loop, []).append((w.fut, got))
                            continue
                        # (else a blocking result() on this handle read it first)
                        w.remaining -= 1
                        if w.remaining == 0:
                            by_loop.setdefault(w.loop, []).append((w.fut, None))
            for loop, batch in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_deliver, batch)
                except RuntimeError:
                    pass  # that loop was closed; nobody awaits these any more

    def _take_waiters(self) -> List[_Waiter]:
        """Removes every waiter, each once (a batch's waiter is listed under
        each of its ids). Call with the lock held."""
        unique = list({id(w): w for ws in self._waiters.values() for w, _ in ws}.values())
        self._waiters.clear()
        return unique

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # The thread first: outcomes it has read already go to their handles
        # and awaits; only those still unread are left for the error.
        self._completions.close()
        self._thread.join(timeout=5)
        with self._lock:
            orphans = self._take_waiters()
        for w in orphans:
            try:
                w.loop.call_soon_threadsafe(_deliver, [(w.fut, RuntimeError("the client was closed"))])
            except RuntimeError:
                pass


# Bridges still running when the interpreter exits are closed first: a
# daemon thread parked in the engine must not wake into a finalising
# interpreter.
_live_bridges: "weakref.WeakSet[_AsyncBridge]" = weakref.WeakSet()


@atexit.register
def _close_bridges() -> None:
    for bridge in list(_live_bridges):
        bridge.close()


def _deliver(batch: List[Tuple[asyncio.Future, Any]]) -> None:
    for fut, got in batch:
        if fut.done():
            continue  # the awaiting task was cancelled
        if isinstance(got, BaseException):
            fut.set_exception(got)
        else:
            fut.set_result(None)


class Client:
    """A producer attached to segment `segment` (created by ``taskring init``
    or :func:`taskring.create_segment`).

    `codec` (None for bytes, 'json', 'msgpack', 'pickle' or a Codec) encodes
    payloads and decodes results. A client may be shared by threads. Raises
    NotFoundError if the segment does not exist, FailedPreconditionError if
    it was made by another layout version.
    """

    def __init__(self, segment: str, *, codec: codecs.CodecLike = None) -> None:
        self.segment = segment
        self.codec = codecs.get(codec)
        self._core = _core._Client(segment)
        self._async: Optional[_AsyncBridge] = None
        self._async_lock = threading.Lock()
        self._arg_cache: Dict[tuple, tuple] = {}

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<taskring.Client segment={self.segment!r}>"

    def close(self) -> None:
        """Stops the completion thread, if asyncio started one. Awaits still
        pending fail with RuntimeError. Unread results stay in the segment."""
        with self._async_lock:
            bridge, self._async = self._async, None
        if bridge is not None:
            bridge.close()

    def _bridge(self) -> _AsyncBridge:
        with self._async_lock:
            if self._async is None:
                self._async = _AsyncBridge(self)
            return self._async

    @property
    def queues(self) -> List[str]:
        """The segment's queue names; the first is the default."""
        return self._core.queues

    def _args(self, queue, priority, delay, max_attempts, max_crashes, time_limit, timeout, durable, detached):
        if queue is not None and not isinstance(queue, str):
            raise ValueError(f"queue {queue!r}: must be a queue name (str) or None for the first queue")
        return (queue or "", _convert.priority(priority), _convert.seconds_ns("delay", delay, none=0),
                _convert.count("max_attempts", max_attempts, low=1, high=255),
                _convert.count("max_crashes", max_crashes, low=1, high=255),
                _convert.seconds_ns("time_limit", time_limit, none=0, zero_ok=False),
                _convert.seconds_ns("timeout", timeout, none=-1), bool(durable), bool(detached))

    def _checked(self, *key: Any) -> tuple:
        """The checked engine arguments for `key` (the options of _args).
        Those of recent option sets are kept: most programs submit with a few
        fixed sets, and the checks cost more than the submit itself."""
        try:
            return self._arg_cache[key]
        except (KeyError, TypeError):  # TypeError: an unhashable (and so invalid) argument
            args = self._args(*key)
            if len(self._arg_cache) >= 64:
                self._arg_cache.clear()
            self._arg_cache[key] = args
            return args

    def submit(self, task: str, payload: Any = b"", *, queue: Optional[str] = None, priority: Priority = "normal",
               delay: Optional[float] = None, max_attempts: Optional[int] = None,
               max_crashes: Optional[int] = None, time_limit: Optional[float] = None,
               timeout: Optional[float] = None, durable: bool = False, detached: bool = False,
               codec: codecs.CodecLike = None) -> TaskHandle:
        """Submits task `task` (a handler name) with `payload` and returns its handle.

        - `payload`: bytes-like (no copy), or any object the codec encodes.
        - `queue`: a queue of the segment; None for the first one.
        - `priority`: critical, high, normal or low (or 0..3).
        - `delay`: seconds before it may start.
        - `max_attempts` (1..255) and `max_crashes` (1..255): None for the
          handler's or the engine's default.
        - `time_limit`: seconds one attempt may run; None for the handler's.
        - `timeout`: seconds to wait for room when a queue or the payload
          area is full (0 fails at once with FullError; None waits), and for
          the sidecar when `durable`.
        - `durable`: return only once the sidecar has the task on disk.
        - `detached`: nobody reads the result; the handle can only cancel.
        - `codec`: overrides the client's codec for this task.

        Raises ValueError for a bad argument (unknown queue, task name too
        long, payload over the segment's max_payload), FullError,
        TimeoutError (durable), FailedPreconditionError (segment closing).
        """
        c = self.codec if codec is None else codecs.get(codec)
        args = self._checked(queue, priority, delay, max_attempts, max_crashes, time_limit, timeout, durable, detached)
        task_id = self._core.submit(task, payload if c is codecs.BYTES else c.encode(payload), *args)
        return TaskHandle(self, task_id, c)

    def call(self, task: str, payload: Any = b"", *, timeout: Optional[float] = None, queue: Optional[str] = None,
             priority: Priority = "normal", delay: Optional[float] = None, max_attempts: Optional[int] = None,
             max_crashes: Optional[int] = None, time_limit: Optional[float] = None, durable: bool = False,
             codec: codecs.CodecLike = None) -> Any:
        """Runs task `task` and returns its result: ``submit(...).result()``
        in one step, the cheapest way to make one remote call.

        `timeout` bounds the whole call (the wait for room and for the
        result). On TimeoutError or KeyboardInterrupt the task is released:
        it still runs, and its result is dropped. Raises TaskFailed,
        TaskCancelled and what :meth:`submit` raises.
        """
        c = self.codec if codec is None else codecs.get(codec)
        args = self._checked(queue, priority, delay, max_attempts, max_crashes, time_limit, timeout, durable, False)
        o = self._core.call(task, payload if c is codecs.BYTES else c.encode(payload), *args[:-1])
        if o.ok:
            return o.value if c is codecs.BYTES else c.decode(o.value)
        return TaskHandle(self, o.id, c)._decode(o)

    def submit_many(self, task: Union[str, Sequence[str]], payloads: Iterable[Any], *,
                    queue: Optional[str] = None, priority: Priority = "normal", delay: Optional[float] = None,
                    max_attempts: Optional[int] = None, max_crashes: Optional[int] = None,
                    time_limit: Optional[float] = None, timeout: Optional[float] = None, durable: bool = False,
                    detached: bool = False, codec: codecs.CodecLike = None) -> List[TaskHandle]:
        """Submits one task per payload in a single batch (far fewer atomic
        operations and wake-ups than a loop of submit) and returns their
        handles in order.

        `task` is one name for all, or a sequence of names, one per payload.
        The other arguments are those of :meth:`submit`. If `timeout` passes
        while the structures are full, the tasks submitted so far are
        returned (fewer handles than payloads); if none was, FullError.
        """
        c = self.codec if codec is None else codecs.get(codec)
        encoded = [c.encode(p) for p in payloads] if c is not codecs.BYTES else list(payloads)
        names = [task] if isinstance(task, str) else list(task)
        ids = self._core.submit_many(names, encoded,
                                     *self._args(queue, priority, delay, max_attempts, max_crashes, time_limit,
                                                 timeout, durable, detached))
        return [TaskHandle(self, i, c) for i in ids]

    def call_many(self, task: Union[str, Sequence[str]], payloads: Iterable[Any], *,
                  timeout: Optional[float] = None, queue: Optional[str] = None, priority: Priority = "normal",
                  delay: Optional[float] = None, max_attempts: Optional[int] = None,
                  max_crashes: Optional[int] = None, time_limit: Optional[float] = None,
                  codec: codecs.CodecLike = None) -> List[Any]:
        """Runs one task per payload and returns their results in order:
        :meth:`call` for a batch, and the fastest way to move many tasks
        (no handles, one GIL release per round).

        `task` is one name for all, or one per payload. Tasks go in as a
        batch; a batch larger than the free room goes in rounds (submit what
        fits, wait for those, repeat). Every task is read before this
        returns. If one did not succeed, raises TaskFailed or TaskCancelled
        for the first such (the other results are dropped: use submit_many
        and wait_all to see every outcome). `timeout` bounds the whole call:
        TimeoutError if results are still missing then, FullError if the
        segment had no room for the next tasks. On either, and on
        KeyboardInterrupt, the unread tasks are released (they still run)
        and no more are submitted. The other arguments are those of
        :meth:`submit`; a durable batch is submit_many(durable=True).
        """
        c = self.codec if codec is None else codecs.get(codec)
        encoded = [c.encode(p) for p in payloads] if c is not codecs.BYTES else list(payloads)
        names = [task] if isinstance(task, str) else list(task)
        args = self._checked(queue, priority, delay, max_attempts, max_crashes, time_limit, timeout, False, False)
        values, failed = self._core.call_many(names, encoded, *args[:-2])
        if failed is not None:
            TaskHandle(self, failed.id, c)._decode(failed)  # raises
        return values if c is codecs.BYTES else [c.decode(v) for v in values]

    def _check_owner(self, handles: Iterable[TaskHandle]) -> None:
        for h in handles:
            if h._client is not self:
                raise ValueError(f"handles: task {h.id} belongs to another client")

    def wait_all(self, handles: Sequence[TaskHandle], timeout: Optional[float] = None) -> List[Outcome]:
        """Waits for every handle (one GIL release for many tasks) and
        returns their outcomes in order. Outcomes read before a TimeoutError
        or KeyboardInterrupt are kept in their handles."""
        mine = [h for h in handles if h._outcome is None]
        self._check_owner(mine)
        ns = _convert.seconds_ns("timeout", timeout, none=-1)
        while mine:
            try:
                self._core.wait_into(mine, ns)
                break
            except NotFoundError:
                # A timed-out await of some of these handles may have had the
                # completion thread read them: take those, wait for the rest.
                bridge = self._async
                if bridge is None:
                    raise
                missing = [h for h in mine if h._outcome is None]
                if missing and not any([bridge.settle(h) for h in missing]):
                    raise  # none came from the bridge: really gone
                mine = [h for h in mine if h._outcome is None]
        return [h._outcome for h in handles]  # type: ignore[misc]

    def results(self, handles: Sequence[TaskHandle], timeout: Optional[float] = None) -> List[Any]:
        """Waits for every handle and returns their decoded results in
        order; raises TaskFailed or TaskCancelled for the first that did not
        succeed."""
        self.wait_all(handles, timeout)
        return [h._decode(h._outcome) for h in handles]  # type: ignore[arg-type]

    async def results_async(self, handles: Sequence[TaskHandle], timeout: Optional[float] = None) -> List[Any]:
        """:meth:`results` for asyncio: awaits every handle and returns their
        decoded results in order, raising TaskFailed or TaskCancelled for
        the first that did not succeed. One future for the whole batch, so
        far cheaper than ``asyncio.gather(*handles)``, which makes an asyncio
        Task per handle. Raises TimeoutError if `timeout` seconds pass first;
        outcomes that arrive later are still kept in their handles."""
        self._check_owner(handles)
        _convert.seconds_ns("timeout", timeout, none=-1)  # the checks of every timeout
        if all(h._outcome is not None for h in handles):
            pass  # (wait_for with a timeout of 0 would time out even so)
        elif timeout is None:
            await self._bridge().wait_all(handles)
        else:
            try:
                await asyncio.wait_for(self._bridge().wait_all(handles), timeout)
            except asyncio.TimeoutError:
                left = sum(1 for h in handles if h._outcome is None)
                raise TimeoutError(f"{left} of {len(handles)} tasks have not finished after {timeout} s") from None
        return [h._decode(h._outcome) for h in handles]  # type: ignore[arg-type]

    def handle(self, task_id: int, *, codec: codecs.CodecLike = None) -> TaskHandle:
        """A handle for a task submitted elsewhere (the CLI, C++, another
        process), by its id."""
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id <= 0:
            raise ValueError(f"task_id {task_id!r}: must be a positive integer task id")
        return TaskHandle(self, task_id, self.codec if codec is None else codecs.get(codec))

    def dead_letters(self, limit: int = 1000) -> List[TaskStatus]:
        """Tasks that failed for good and were not read yet, oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit {limit!r}: must be an integer >= 0")
        return [TaskStatus(**d) for d in self._core.dead_letters(limit)]

    def requeue(self, task_id: int) -> None:
        """Puts dead letter `task_id` back in its queue with fresh attempts."""
        self._core.requeue(task_id)

    def purge(self, task_id: int) -> None:
        """Frees dead letter `task_id`."""
        self._core.purge(task_id)
