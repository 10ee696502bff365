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


# ---- call_many -------------------------------------------------------------------

def _all_slots_free(client: taskring.Client, slots: int) -> bool:
    """True if every slot took a task at once: nothing was left unread. The
    probe tasks are released (freed once a worker ran them)."""
    try:
        handles = client.submit_many("noop", [b""] * slots, timeout=0)
    except taskring.FullError:
        return False
    for h in handles:
        h.release()
    return len(handles) == slots


def test_call_many_returns_every_result_in_order(client, workers):
    workers.start()
    payloads = [f"task {i}".encode() for i in range(200)]
    assert client.call_many("echo", payloads, timeout=WAIT) == payloads


def test_call_many_of_nothing_is_an_empty_list(client):
    assert client.call_many("echo", [], timeout=0) == []


@pytest.mark.segment(slots=64, ring_capacity=64)
def test_call_many_larger_than_the_segment_goes_in_rounds_and_reads_every_task(client, workers):
    workers.start()
    payloads = [i.to_bytes(4, "little") for i in range(1000)]
    assert client.call_many("echo", payloads, timeout=WAIT) == payloads
    assert _all_slots_free(client, 64)


def test_call_many_takes_one_name_per_payload_and_the_codec(segment, workers):
    w = workers.new()

    @w.task("add", codec="json")
    def add(args):
        return args[0] + args[1]

    @w.task("mul", codec="json")
    def mul(args):
        return args[0] * args[1]

    workers.start(w)
    with taskring.Client(segment, codec="json") as c:
        assert c.call_many(["add", "mul", "add"], [[2, 3], [2, 3], [10, 1]], timeout=WAIT) == [5, 6, 11]


@pytest.mark.segment(slots=64, ring_capacity=64)
def test_call_many_raises_for_the_first_failed_task_and_reads_the_others(client, workers):
    workers.start()
    names = ["echo", "fail", "echo", "fail"]
    payloads = [b"a", b"first error", b"c", b"second error"]
    with pytest.raises(taskring.TaskFailed) as e:
        client.call_many(names, payloads, max_attempts=1, timeout=WAIT)
    assert "first error" in e.value.message
    assert _all_slots_free(client, 64)


@pytest.mark.segment(slots=64, ring_capacity=64)
def test_call_many_that_times_out_releases_its_tasks_which_still_run(client, workers):
    with pytest.raises(TimeoutError, match=r"3 of 3 tasks have not finished"):
        client.call_many("echo", [b"x"] * 3, timeout=0.05)  # no worker yet
    workers.start()
    # Released: they run and are freed unread, so every slot comes back.
    wait_until(lambda: _all_slots_free(client, 64), "the released tasks to run and be freed")


def test_call_many_checks_its_arguments(client):
    with pytest.raises(ValueError, match="2 names for 3 payloads"):
        client.call_many(["echo", "echo"], [b"", b"", b""])
    with pytest.raises(ValueError, match="timeout"):
        client.call_many("echo", [b""], timeout=-1)
    with pytest.raises(TypeError, match=r"payloads\[i\]: expected a bytes-like object"):
        client.call_many("echo", [b"", 42])
