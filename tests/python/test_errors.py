"""Bad arguments raise ValueError naming the field; the engine's refusals
raise taskring's own errors; timeouts raise TimeoutError."""

import math
import threading

import pytest

import taskring
from conftest import WAIT, unique_segment_name, wait_until


def test_unknown_queue_raises_value_error_naming_queue(client):
    with pytest.raises(ValueError, match=r"^queue 'nope': not in segment .*whose queues are: default"):
        client.submit("echo", b"", queue="nope")


@pytest.mark.parametrize("priority", ["urgent", 4, -1, True, 1.0])
def test_bad_priority_raises_value_error_naming_priority(client, priority):
    with pytest.raises(ValueError, match=r"^priority .*: must be one of critical, high, normal, low or 0\.\.3"):
        client.submit("echo", b"", priority=priority)


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf, "1s"])
def test_bad_delay_raises_value_error_naming_delay(client, delay):
    with pytest.raises(ValueError, match=r"^delay "):
        client.submit("echo", b"", delay=delay)


@pytest.mark.parametrize("max_attempts", [0, 256, -1, 2.0])
def test_max_attempts_out_of_range_raises_value_error_naming_it(client, max_attempts):
    with pytest.raises(ValueError, match=rf"^max_attempts {max_attempts!r}: must be an integer in 1\.\.255"):
        client.submit("echo", b"", max_attempts=max_attempts)


@pytest.mark.parametrize("max_crashes", [0, 256])
def test_max_crashes_out_of_range_raises_value_error_naming_it(client, max_crashes):
    with pytest.raises(ValueError, match=rf"^max_crashes {max_crashes}: must be an integer in 1\.\.255"):
        client.submit("echo", b"", max_crashes=max_crashes)


@pytest.mark.parametrize("time_limit", [0, -1])
def test_time_limit_of_zero_or_less_raises_value_error_naming_it(client, time_limit):
    with pytest.raises(ValueError, match=r"^time_limit .*more than 0"):
        client.submit("echo", b"", time_limit=time_limit)


def test_task_name_too_long_raises_value_error_naming_task_name(client):
    with pytest.raises(ValueError, match=r"^task name 'x{48}': must be 1 to 47 bytes"):
        client.submit("x" * 48, b"")


def test_task_name_of_47_bytes_is_accepted(client):
    h = client.submit("y" * 47, b"")
    assert h.status().task == "y" * 47


def test_empty_task_name_raises_value_error(client):
    with pytest.raises(ValueError, match=r"^task name '': must be 1 to 47 bytes"):
        client.submit("", b"")


def test_payload_over_max_payload_raises_value_error_naming_the_limit(client):
    with pytest.raises(ValueError, match=r"^payload of 65537 bytes: must be at most max_payload 65536 bytes"):
        client.submit("echo", bytes(65537))


@pytest.mark.parametrize("timeout", [-1, math.nan, "5"])
def test_bad_result_timeout_raises_value_error_naming_timeout(client, timeout):
    h = client.submit("echo", b"")
    with pytest.raises(ValueError, match=r"^timeout "):
        h.result(timeout=timeout)


def test_missing_segment_raises_not_found_error():
    name = unique_segment_name()
    with pytest.raises(taskring.NotFoundError, match=rf"segment '{name}' does not exist") as e:
        taskring.Client(name)
    assert isinstance(e.value, LookupError)  # NotFoundError is also a LookupError


def test_worker_on_missing_segment_raises_not_found_error():
    with pytest.raises(taskring.NotFoundError):
        taskring.Worker(unique_segment_name(), builtins=True)


def test_destroy_of_missing_segment_raises_not_found_error():
    with pytest.raises(taskring.NotFoundError):
        taskring.destroy_segment(unique_segment_name())


def test_create_segment_with_bad_ring_capacity_raises_value_error_naming_it():
    name = unique_segment_name()
    with pytest.raises(ValueError, match=r"ring_capacity 3: must be a power of two between 64 and"):
        taskring.create_segment(name, ring_capacity=3)
    with pytest.raises(taskring.NotFoundError):
        taskring.Client(name)  # nothing was left behind


def test_create_segment_twice_raises_already_exists_error(segment):
    with pytest.raises(taskring.AlreadyExistsError, match=f"segment '{segment}' already exists"):
        taskring.create_segment(segment)


def test_worker_with_unknown_queue_raises_value_error(segment):
    with pytest.raises(ValueError, match="nope"):
        taskring.Worker(segment, queues=["nope"], builtins=True)


def test_worker_with_negative_cpu_raises_value_error_naming_cpu(segment):
    with pytest.raises(ValueError, match=r"^cpu -1: must be a CPU number >= 0 or None"):
        taskring.Worker(segment, cpu=-1, builtins=True)


def test_worker_without_handlers_raises_value_error_at_run(segment):
    w = taskring.Worker(segment, tasks=[])
    with pytest.raises(ValueError, match=r"^tasks: this worker has no handlers"):
        w.run()


def test_task_decorator_checks_its_settings_at_once(segment):
    w = taskring.Worker(segment)
    with pytest.raises(ValueError, match=r"^max_attempts 0: must be an integer in 1\.\.255"):
        w.task("t", max_attempts=0)(lambda p: p)
    with pytest.raises(ValueError, match=r"^task name 'z{48}'"):
        w.task("z" * 48)(lambda p: p)


def test_task_declared_twice_on_one_worker_raises_value_error(segment):
    w = taskring.Worker(segment)
    w.task("twice")(lambda p: p)
    with pytest.raises(ValueError, match=r"^task name 'twice': already declared on this worker"):
        w.task("twice")(lambda p: p)


def test_handle_of_a_bad_task_id_raises_value_error(client):
    with pytest.raises(ValueError, match=r"^task_id 0: must be a positive integer"):
        client.handle(0)


def test_result_of_an_unknown_task_raises_not_found_error(client):
    with pytest.raises(taskring.NotFoundError, match=r"task 12345: no such task"):
        client.handle(12345).result(timeout=WAIT)


def test_a_result_is_read_once_a_second_reader_gets_not_found_error(client, workers):
    workers.start()
    h = client.submit("echo", b"once")
    assert h.result(timeout=WAIT) == b"once"
    assert h.result() == b"once"  # the handle keeps what it read
    with pytest.raises(taskring.NotFoundError):
        client.handle(h.id).result(timeout=WAIT)


def test_result_timeout_raises_timeout_error_and_the_task_still_finishes(client, workers):
    gate = threading.Event()
    w = workers.new()

    @w.task("sleeps_until_gate")
    def sleeps_until_gate(payload):
        gate.wait(WAIT)
        return b"woke up"

    workers.start(w)
    h = client.submit("sleeps_until_gate", b"")
    wait_until(lambda: h.status().state == "running", "the task to start")
    try:
        with pytest.raises(TimeoutError, match=r"not finished after 50 ms") as e:
            h.result(timeout=0.05)
        assert f"task {h.id}" in str(e.value)
        assert h.status().state == "running"  # the timeout left the task alone
    finally:
        gate.set()
    assert h.result(timeout=WAIT) == b"woke up"


def test_timeout_of_a_builtin_sleep_task_leaves_the_result_readable(client, workers):
    workers.start()
    h = client.submit("sleep", b"300")
    try:
        h.result(timeout=0.05)
    except TimeoutError:
        pass  # expected, unless this machine paused us for 300 ms
    assert h.result(timeout=WAIT) == b""
    assert h.outcome().state == "succeeded"


@pytest.mark.segment(ring_capacity=64, slots=256)
def test_full_queue_with_timeout_zero_raises_full_error(client):
    # No worker: the normal-priority ring of 64 entries fills up.
    handles = [client.submit("noop", b"", timeout=0) for _ in range(64)]
    assert len(handles) == 64
    with pytest.raises(taskring.FullError, match="queue ring full"):
        client.submit("noop", b"", timeout=0)


@pytest.mark.segment(ring_capacity=64, slots=256)
def test_full_queue_with_a_short_timeout_raises_full_error_after_waiting(client):
    for _ in range(64):
        client.submit("noop", b"", timeout=0)
    with pytest.raises(taskring.FullError, match=r"queue ring full \(waited \d+ ms\)"):
        client.submit("noop", b"", timeout=0.1)


@pytest.mark.segment(ring_capacity=64, slots=256)
def test_submit_many_into_a_full_queue_returns_what_fit(client):
    handles = client.submit_many("noop", [b""] * 100, timeout=0)
    assert len(handles) == 64
    with pytest.raises(taskring.FullError):
        client.submit_many("noop", [b""] * 3, timeout=0)


@pytest.mark.segment(ring_capacity=64, slots=256)
def test_other_priorities_have_their_own_ring(client):
    for _ in range(64):
        client.submit("noop", b"", timeout=0)
    assert client.submit("noop", b"", priority="high", timeout=0).status().priority == "high"


@pytest.mark.segment(ring_capacity=64, slots=256)
def test_full_queue_without_timeout_waits_for_room(client, workers):
    for _ in range(64):
        client.submit("noop", b"", timeout=0)
    workers_started = threading.Timer(0.2, workers.start)
    workers_started.start()
    try:
        h = client.submit("echo", b"got in", timeout=WAIT)  # waits until the worker makes room
    finally:
        workers_started.join()
    assert h.result(timeout=WAIT) == b"got in"
