"""Client.call: submit and wait in one step."""

from __future__ import annotations

import re

import pytest

import taskring

from conftest import WAIT, wait_until


def test_call_returns_the_result_of_a_cpp_builtin(client, workers):
    workers.start()
    assert client.call("echo", b"round trip", timeout=WAIT) == b"round trip"


def test_call_encodes_and_decodes_with_the_codec(segment, workers):
    w = workers.new()

    @w.task("add", codec="json")
    def add(args):
        return args[0] + args[1]

    workers.start(w)
    with taskring.Client(segment, codec="json") as c:
        assert c.call("add", [40, 2], timeout=WAIT) == 42


def test_call_of_a_failing_task_raises_task_failed_with_the_handlers_error(client, workers):
    workers.start()
    with pytest.raises(taskring.TaskFailed) as e:
        client.call("fail", b"no such thing", max_attempts=1, timeout=WAIT)
    assert e.value.outcome.attempts == 1
    assert "no such thing" in e.value.message


def test_call_that_times_out_releases_its_task_which_still_runs(client, workers):
    with pytest.raises(TimeoutError) as e:
        client.call("sleep", b"300", timeout=0.05)  # no worker yet: it cannot finish in time
    task_id = int(re.search(r"task (\d+)", str(e.value)).group(1))
    assert client.handle(task_id).status().state == "pending"
    workers.start()
    # Released: once it has run, its slot is freed unread, and the id is gone.
    wait_until(lambda: _gone(client, task_id), f"task {task_id} to run and be freed")
    with pytest.raises(taskring.NotFoundError):
        client.handle(task_id).result(timeout=0)


def _gone(client: taskring.Client, task_id: int) -> bool:
    try:
        client.handle(task_id).status()
    except taskring.NotFoundError:
        return True
    return False


def test_call_checks_its_arguments_like_submit(client):
    with pytest.raises(ValueError, match="priority"):
        client.call("echo", b"", priority="urgent")
    with pytest.raises(ValueError, match="timeout"):
        client.call("echo", b"", timeout=-1)
