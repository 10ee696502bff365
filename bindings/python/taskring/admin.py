"""Creating, draining and removing segments from Python (the CLI's
``taskring init``, ``drain`` and ``destroy``)."""

from __future__ import annotations

from typing import Optional, Sequence

from . import _convert, _core


def create_segment(name: str, *, slots: int = 65536, queues: Sequence[str] = ("default",),
                   ring_capacity: int = 16384, max_payload: int = 1 << 20, payload_area: int = 64 << 20,
                   max_workers: int = 64, deque_capacity: int = 256, result_ttl: Optional[float] = 3600.0,
                   journal: str = "off", journal_capacity: int = 65536, mode: int = 0o600,
                   replace: bool = False) -> None:
    """Creates shared-memory segment `name` (docs/cli.md, taskring init, has
    each setting's range). `result_ttl` is how long an unread result is kept
    (None: until read); `journal` is off, best-effort or durable (for the
    sidecar). Raises ValueError for a bad setting, AlreadyExistsError unless
    `replace`."""
    if isinstance(queues, str):
        queues = [q for q in queues.split(",") if q]
    _core.create_segment(name, slots, list(queues), ring_capacity, max_payload, payload_area, max_workers,
                         deque_capacity, _convert.seconds_ns("result_ttl", result_ttl, none=0), journal,
                         journal_capacity, mode, replace)


def destroy_segment(name: str) -> None:
    """Closes segment `name` (workers return, waiters fail) and removes it.
    Raises NotFoundError."""
    _core.destroy_segment(name)


def drain_segment(name: str) -> None:
    """Asks every worker of segment `name` to finish its running task and
    return from run()."""
    _core.drain_segment(name)
