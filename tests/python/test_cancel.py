"""Cancelling pending, running and finished tasks."""

import threading
import time

import pytest

import taskring
from conftest import WAIT, wait_until


def test_cancel_of_a_pending_task_returns_cancelled_and_result_raises_task_cancelled(client):
    h = client.submit("echo", b"")  # no worker: it stays pending
    assert h.cancel() == "cancelled"
    with pytest.raises(taskring.TaskCancelled, match=rf"task {h.id} was cancelled") as e:
        h.result(timeout=WAIT)
    assert e.value.task_id == h.id
    assert e.value.outcome.state == "cancelled"
    assert e.value.outcome.attempts == 0


def test_a_cancelled_pending_task_never_runs(client, workers):
    ran = []
    w = workers.new()

    @w.task("record")
    def record(payload):
        ran.append(payload)
        return b""

    cancelled = client.submit("record", b"cancelled")
    assert cancelled.cancel() == "cancelled"
    workers.start(w)
    client.submit("record", b"after").result(timeout=WAIT)  # the worker got past the cancelled one
    assert ran == [b"after"]


def test_cancel_of_a_running_task_is_requested_and_the_task_ends_cancelled(client, workers):
    started = threading.Event()
    w = workers.new()

    @w.task("polls_cancel", bind=True)
    def polls_cancel(ctx, payload):
        started.set()
        deadline = time.monotonic() + WAIT
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.002)
        return None if ctx.cancelled else b"never cancelled"

    workers.start(w)
    h = client.submit("polls_cancel", b"")
    assert started.wait(WAIT)
    assert h.cancel() == "requested"
    with pytest.raises(taskring.TaskCancelled):
        h.result(timeout=WAIT)
    assert h.outcome().attempts == 1


def test_cancel_of_a_running_builtin_sleep_ends_it_cancelled(client, workers):
    workers.start()
    h = client.submit("sleep", b"60000")
    wait_until(lambda: h.status().state == "running", "the sleep task to start")
    assert h.cancel() == "requested"
    assert h.status().cancel_requested or h.status().done
    with pytest.raises(taskring.TaskCancelled):
        h.result(timeout=WAIT)


def test_cancel_of_a_finished_task_returns_finished(client, workers):
    workers.start()
    h = client.submit("echo", b"done")
    wait_until(lambda: h.status().done, "the task to finish")
    assert h.cancel() == "finished"
    assert h.result(timeout=WAIT) == b"done"  # the result is untouched
    assert h.cancel() == "finished"  # also once it was read
