"""The exceptions taskring raises.

Invalid arguments raise ``ValueError`` and timeouts ``TimeoutError``, as
anywhere in Python; everything else the engine reports is a subclass of
:class:`Error` carrying the engine's message. A task that ended badly makes
``TaskHandle.result()`` raise :class:`TaskFailed` or :class:`TaskCancelled`.
The extension module raises these classes by name; keep the names.
"""

from __future__ import annotations

from typing import Any


class Error(Exception):
    """Base class of taskring's own errors."""


class NotFoundError(Error, LookupError):
    """A segment, queue or task does not exist (or its result was read already)."""


class AlreadyExistsError(Error):
    """Creating something that is already there (a segment, a handler name)."""


class FailedPreconditionError(Error):
    """The segment is not in a state where the call can work (closing, wrong layout)."""


class PermissionDeniedError(Error, PermissionError):
    """Another user's segment, or its file mode forbids access."""


class FullError(Error):
    """A queue ring, the slot table or the payload area stayed full (submit with timeout=0, or past it)."""


class UnavailableError(Error):
    """Transient: try again."""


class DataLossError(Error):
    """A shared structure is corrupt or truncated."""


class CancelledError(Error):
    """The operation was cancelled."""


class InternalError(Error):
    """A system call failed unexpectedly."""


class TaskFailed(Error):
    """The task failed for good: its handler raised or called ``ctx.fail``,
    its time limit passed on the last attempt, or its worker kept dying.

    ``message`` is the error the worker recorded; ``outcome`` is the full
    :class:`taskring.Outcome` (attempts, crashes, timed_out, timestamps).
    """

    def __init__(self, task_id: int, message: str, outcome: Any) -> None:
        super().__init__(f"task {task_id} failed after {outcome.attempts} attempt(s): {message}")
        self.task_id = task_id
        self.message = message
        self.outcome = outcome


class TaskCancelled(Error):
    """The task was cancelled before or while it ran."""

    def __init__(self, task_id: int, reason: str, outcome: Any) -> None:
        super().__init__(f"task {task_id} was cancelled" + (f": {reason}" if reason else ""))
        self.task_id = task_id
        self.reason = reason
        self.outcome = outcome
