"""submit_many, wait_all and results."""

import threading

import pytest

import taskring
from conftest import WAIT, wait_until


def test_submit_many_of_1000_payloads_gives_results_in_order(client, workers, rng):
    workers.start()
    payloads = [b"%d:" % i + rng.randbytes(rng.randrange(0, 100)) for i in range(1000)]
    handles = client.submit_many("echo", payloads)
    assert len(handles) == 1000
    assert len({h.id for h in handles}) == 1000
    assert client.results(handles, timeout=WAIT) == payloads


def test_submit_many_accepts_a_generator(client, workers):
    workers.start()
    handles = client.submit_many("echo", (b"%d" % i for i in range(10)))
    assert client.results(handles, timeout=WAIT) == [b"%d" % i for i in range(10)]


def test_submit_many_runs_one_named_task_per_payload(client, workers):
    w = workers.new(builtins=True)

    @w.task("upper")
    def upper(payload):
        return payload.upper()

    workers.start(w)
    names = ["echo", "upper"] * 50
    handles = client.submit_many(names, [b"abc%d" % i for i in range(100)])
    expected = [b"abc%d" % i if n == "echo" else b"ABC%d" % i for i, n in enumerate(names)]
    assert client.results(handles, timeout=WAIT) == expected


def test_submit_many_with_wrong_number_of_names_raises_value_error(client):
    with pytest.raises(ValueError, match=r"^tasks: 2 names for 3 payloads"):
        client.submit_many(["echo", "noop"], [b"1", b"2", b"3"])


def test_submit_many_of_no_payloads_returns_no_handles(client):
    assert client.submit_many("echo", []) == []


def test_submit_many_encodes_each_payload_with_the_codec(segment, workers):
    workers.start()
    with taskring.Client(segment, codec="json") as c:
        objs = [{"i": i, "sq": [i * i]} for i in range(20)]
        assert c.results(c.submit_many("echo", objs), timeout=WAIT) == objs


def test_wait_all_returns_every_outcome_in_order_without_raising(client, workers):
    workers.start()
    tasks = ["echo", "fail", "echo", "fail"]
    handles = client.submit_many(tasks, [b"a", b"err b", b"c", b"err d"], max_attempts=1)
    outcomes = client.wait_all(handles, timeout=WAIT)
    assert [o.id for o in outcomes] == [h.id for h in handles]
    assert [o.state for o in outcomes] == ["succeeded", "failed", "succeeded", "failed"]
    assert [o.value for o in outcomes] == [b"a", b"err b", b"c", b"err d"]


def test_results_raises_task_failed_for_the_first_failed_task(client, workers):
    workers.start()
    handles = client.submit_many(["echo", "fail", "fail"], [b"ok", b"first", b"second"], max_attempts=1)
    with pytest.raises(taskring.TaskFailed) as e:
        client.results(handles, timeout=WAIT)
    assert e.value.task_id == handles[1].id
    assert e.value.message == "first"
    # The other outcomes were read and are kept in their handles.
    assert handles[0].result() == b"ok"


def test_wait_all_rejects_handles_of_another_client(segment, client):
    with taskring.Client(segment) as other:
        h = other.submit("echo", b"")
        with pytest.raises(ValueError, match=r"^handles: task \d+ belongs to another client"):
            client.wait_all([h], timeout=0)


def test_wait_all_timeout_keeps_the_outcomes_already_read(segment, client, workers):
    gate = threading.Event()

    def gated(payload):
        gate.wait(WAIT)
        return b"gated"

    # Two workers: one waits at the gate while the other runs the echo.
    for _ in range(2):
        w = workers.new(builtins=True)
        w.task("gated")(gated)
        workers.start(w)
    done = client.submit("echo", b"early")
    assert done.outcome(timeout=WAIT).ok
    stuck = client.submit("gated", b"")
    fresh = client.submit("echo", b"fresh")
    wait_until(lambda: fresh.status().done, "the echo task to finish")  # peek: leaves the result
    try:
        with pytest.raises(TimeoutError, match=rf"^1 of \d tasks have not finished .*task {stuck.id}\)"):
            client.wait_all([done, fresh, stuck], timeout=0.2)
        assert fresh.result() == b"fresh"  # read during the wait, kept in its handle
        assert done.result() == b"early"
    finally:
        gate.set()
    assert stuck.result(timeout=WAIT) == b"gated"
