"""taskring: a lock-free shared-memory task engine, from Python.

Producers::

    client = taskring.Client("demo")
    handle = client.submit("resize", b"...", queue="images", priority="high")
    data = handle.result(timeout=5)        # or: data = await handle

Workers::

    @taskring.task("resize")
    def resize(payload: bytes) -> bytes: ...

    taskring.Worker("demo", queues=["images"]).run()

or ``python -m taskring worker MODULE --segment demo --processes 4``.
See docs/python.md.
"""

from . import codecs
from ._core import Outcome, monotonic_ns
from ._errors import (AlreadyExistsError, CancelledError, DataLossError, Error, FailedPreconditionError, FullError,
                      InternalError, NotFoundError, PermissionDeniedError, TaskCancelled, TaskFailed,
                      UnavailableError)
from .admin import create_segment, destroy_segment, drain_segment
from .client import Client, TaskHandle, TaskStatus
from .codecs import JSON, Codec
from .worker import Context, TaskDef, Worker, registered_tasks, task

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError", "CancelledError", "Client", "Codec", "Context", "DataLossError", "Error",
    "FailedPreconditionError", "FullError", "InternalError", "JSON", "NotFoundError", "Outcome",
    "PermissionDeniedError", "TaskCancelled", "TaskDef", "TaskFailed", "TaskHandle", "TaskStatus",
    "UnavailableError", "Worker", "codecs", "create_segment", "destroy_segment", "drain_segment", "monotonic_ns",
    "registered_tasks", "task",
]
