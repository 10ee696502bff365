"""A Python worker process killed while it runs a task: the engine puts the
task back and another worker finishes it (docs/guarantees.md)."""

import signal

import pytest

from conftest import WAIT, python_worker_cmd, wait_until

import taskring


def start_and_kill_a_worker_mid_task(spawn, segment, worker_module, handle):
    p = spawn(python_worker_cmd("trtasks", segment), cwd=worker_module)
    wait_until(lambda: handle.status().state == "running", "the worker to start the task")
    p.signal(signal.SIGKILL)
    assert p.finish(WAIT, leak_check=False) == -signal.SIGKILL
    return p


def test_waiting_client_puts_back_the_task_of_a_killed_worker(spawn, segment, client, worker_module):
    h = client.submit("slow_first_attempt", b"")
    start_and_kill_a_worker_mid_task(spawn, segment, worker_module, h)

    # No other worker and no supervisor: only this client's wait can notice
    # the death and requeue the task (at each of its 100 ms parks).
    def requeued():
        try:
            h.outcome(timeout=0.2)
        except TimeoutError:
            pass
        return h.status().state == "pending"

    wait_until(requeued, "the task to be requeued")
    status = h.status()
    assert (status.attempts, status.crashes) == (1, 1)
    assert status.last_crash is not None


def test_task_of_a_killed_worker_process_is_finished_by_the_next_worker(spawn, segment, client, worker_module):
    h = client.submit("slow_first_attempt", b"")
    start_and_kill_a_worker_mid_task(spawn, segment, worker_module, h)
    second = spawn(python_worker_cmd("trtasks", segment), cwd=worker_module)
    assert h.result(timeout=WAIT) == b"done on attempt 2"
    o = h.outcome()
    assert o.crashes >= 1
    assert o.attempts == 2
    assert o.last_crash is not None
    second.signal(signal.SIGINT)
    assert second.finish(WAIT) == 130


def test_task_fails_for_good_when_its_workers_keep_dying(spawn, segment, client, worker_module):
    h = client.submit("slow_first_attempt", b"", max_attempts=1)
    start_and_kill_a_worker_mid_task(spawn, segment, worker_module, h)
    with pytest.raises(taskring.TaskFailed) as e:
        h.result(timeout=WAIT)  # this wait recovers the dead worker: no attempt is left
    assert e.value.outcome.crashes == 1
    assert e.value.outcome.attempts == 1
    assert "killed by signal 9" in e.value.message or "died" in e.value.message, e.value.message
    assert "on attempt 1 of 1" in e.value.message, e.value.message
