"""Tasks nobody reads: detached and released tasks, and the dead letters
(tasks that failed for good), requeued or purged."""

import threading

import pytest

import taskring
from conftest import WAIT, wait_until


def test_detached_task_runs_and_its_result_cannot_be_read(client, workers):
    ran = threading.Event()
    w = workers.new()

    @w.task("side_effect")
    def side_effect(payload):
        ran.set()
        return b"nobody reads this"

    workers.start(w)
    h = client.submit("side_effect", b"", detached=True)
    assert ran.wait(WAIT)
    with pytest.raises(taskring.NotFoundError):
        h.result(timeout=WAIT)


def test_released_task_frees_its_result_when_it_ends(client, workers):
    workers.start()
    h = client.submit("echo", b"released")
    h.release()
    with pytest.raises(taskring.NotFoundError):
        h.result(timeout=WAIT)


def test_task_that_failed_for_good_is_a_dead_letter_until_read(client, workers):
    workers.start()
    h = client.submit("fail", b"broken", max_attempts=1)
    wait_until(lambda: h.status().done, "the task to fail")
    (dead,) = client.dead_letters()
    assert (dead.id, dead.state, dead.task, dead.value, dead.attempts) == (h.id, "failed", "fail", b"broken", 1)
    with pytest.raises(taskring.TaskFailed):
        h.result(timeout=WAIT)
    assert client.dead_letters() == []  # reading it took it off


def test_requeue_of_a_dead_letter_runs_it_again_with_fresh_attempts(client, workers):
    calls = []
    w = workers.new()

    @w.task("fails_once")
    def fails_once(payload):
        calls.append(payload)
        if len(calls) == 1:
            raise OSError("first run fails")
        return b"second run"

    workers.start(w)
    h = client.submit("fails_once", b"", max_attempts=1)
    wait_until(lambda: h.status().done, "the task to fail")
    client.requeue(h.id)
    assert h.result(timeout=WAIT) == b"second run"
    assert len(calls) == 2


def test_purge_frees_a_dead_letter(client, workers):
    workers.start()
    h = client.submit("fail", b"x", max_attempts=1)
    wait_until(lambda: h.status().done, "the task to fail")
    client.purge(h.id)
    assert client.dead_letters() == []
    with pytest.raises(taskring.NotFoundError):
        h.result(timeout=WAIT)


def test_requeue_of_a_task_that_is_not_a_dead_letter_raises_failed_precondition(client):
    h = client.submit("echo", b"")  # pending: no worker
    with pytest.raises(taskring.FailedPreconditionError, match=rf"task {h.id} is pending: only a failed task"):
        client.requeue(h.id)


def test_dead_letters_limit_must_not_be_negative(client):
    with pytest.raises(ValueError, match=r"^limit -1: must be an integer >= 0"):
        client.dead_letters(-1)
