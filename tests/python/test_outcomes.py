"""How a task ends: failures and their messages, retries, progress, async
handlers, queues."""

import asyncio
import gc
import logging
import threading
import warnings

import pytest

import taskring
from conftest import WAIT, wait_until


def test_handler_exception_fails_the_task_with_type_and_message(client, workers):
    w = workers.new()

    @w.task("bad_input", retry_backoff=0)
    def bad_input(payload):
        raise ValueError(f"bad input {payload.decode()}")

    workers.start(w)
    h = client.submit("bad_input", b"7", max_attempts=2)
    with pytest.raises(taskring.TaskFailed) as e:
        h.result(timeout=WAIT)
    assert e.value.message == "ValueError: bad input 7"
    assert e.value.task_id == h.id
    assert e.value.outcome.state == "failed"
    assert e.value.outcome.attempts == 2  # max_attempts: the failure was retried once
    assert f"task {h.id} failed after 2 attempt(s): ValueError: bad input 7" == str(e.value)


def test_max_attempts_of_the_task_decorator_applies_when_the_submitter_gives_none(client, workers):
    w = workers.new()

    @w.task("always_fails", max_attempts=4, retry_backoff=0)
    def always_fails(payload):
        raise RuntimeError("no")

    workers.start(w)
    with pytest.raises(taskring.TaskFailed) as e:
        client.submit("always_fails", b"").result(timeout=WAIT)
    assert e.value.outcome.attempts == 4


def test_failed_attempt_is_retried_and_the_retry_succeeds(client, workers):
    seen = []
    w = workers.new()

    @w.task("flaky", bind=True, retry_backoff=0)
    def flaky(ctx, payload):
        seen.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return b"ok on attempt %d" % ctx.attempt

    workers.start(w)
    h = client.submit("flaky", b"", max_attempts=3)
    assert h.result(timeout=WAIT) == b"ok on attempt 2"
    assert h.outcome().attempts == 2
    assert seen == [1, 2]


def test_ctx_fail_fails_the_task_whatever_the_handler_returns(client, workers):
    w = workers.new()

    @w.task("fails_and_returns", bind=True)
    def fails_and_returns(ctx, payload):
        ctx.fail("custom failure")
        return b"ignored" if payload == b"value" else None

    workers.start(w)
    for payload in (b"value", b"none"):
        with pytest.raises(taskring.TaskFailed) as e:
            client.submit("fails_and_returns", payload, max_attempts=1).result(timeout=WAIT)
        assert e.value.message == "custom failure", payload


def test_ctx_fail_of_a_task_with_a_codec_fails_it(segment, workers):
    w = workers.new()

    @w.task("json_fails", bind=True, codec="json")
    def json_fails(ctx, obj):
        ctx.fail(f"rejected {obj['id']}")
        return {"never": "seen"}

    workers.start(w)
    with taskring.Client(segment, codec="json") as c:
        with pytest.raises(taskring.TaskFailed, match="rejected 3"):
            c.submit("json_fails", {"id": 3}, max_attempts=1).result(timeout=WAIT)


def test_context_describes_the_running_task(client, workers):
    seen = {}
    w = workers.new()

    @w.task("describe", bind=True)
    def describe(ctx, payload):
        seen.update(id=ctx.id, task=ctx.task, payload=ctx.payload, attempt=ctx.attempt, priority=ctx.priority,
                    cancelled=ctx.cancelled)
        return b""

    workers.start(w)
    h = client.submit("describe", b"the payload", priority="high")
    h.result(timeout=WAIT)
    assert seen == dict(id=h.id, task="describe", payload=b"the payload", attempt=1, priority="high", cancelled=False)


def test_context_used_after_its_handler_returned_raises_failed_precondition(client, workers):
    kept = []
    w = workers.new()

    @w.task("keeps_ctx", bind=True)
    def keeps_ctx(ctx, payload):
        kept.append(ctx)
        return b""

    workers.start(w)
    client.submit("keeps_ctx", b"").result(timeout=WAIT)
    with pytest.raises(taskring.FailedPreconditionError, match="used after its handler returned"):
        kept[0].progress(1, 2)


def test_progress_of_a_bound_handler_is_seen_while_it_runs(client, workers):
    gate = threading.Event()
    w = workers.new()

    @w.task("reports_progress", bind=True)
    def reports_progress(ctx, payload):
        ctx.progress(3, 10)
        gate.wait(WAIT)
        ctx.progress(10, 10)
        return b"all ten"

    workers.start(w)
    h = client.submit("reports_progress", b"")
    assert h.progress() in (None, (3, 10))
    try:
        wait_until(lambda: h.progress() == (3, 10), "progress (3, 10)")
        status = h.status()
        assert status.state == "running"
        assert status.progress == (3, 10)
    finally:
        gate.set()
    assert h.result(timeout=WAIT) == b"all ten"


def test_async_handler_result(client, workers):
    w = workers.new()

    @w.task("async_double")
    async def async_double(payload):
        await asyncio.sleep(0.001)
        return payload * 2

    workers.start(w)
    assert client.results([client.submit("async_double", b"%d" % i) for i in range(20)], timeout=WAIT) == \
        [b"%d" % i * 2 for i in range(20)]


def test_async_bound_handler_with_a_codec(segment, workers):
    w = workers.new()

    @w.task("async_attempt", bind=True, codec="json")
    async def async_attempt(ctx, obj):
        await asyncio.sleep(0)
        return {"attempt": ctx.attempt, "got": obj}

    workers.start(w)
    with taskring.Client(segment, codec="json") as c:
        assert c.submit("async_attempt", [1]).result(timeout=WAIT) == {"attempt": 1, "got": [1]}


def test_async_handler_exception_fails_the_task(client, workers):
    w = workers.new()

    @w.task("async_raises")
    async def async_raises(payload):
        await asyncio.sleep(0)
        raise KeyError("missing")

    workers.start(w)
    with pytest.raises(taskring.TaskFailed) as e:
        client.submit("async_raises", b"", max_attempts=1).result(timeout=WAIT)
    assert e.value.message == "KeyError: 'missing'"


def test_worker_stats_count_what_it_ran(client, workers):
    w = workers.start(workers.new(builtins=True))
    client.wait_all(client.submit_many(["echo", "echo", "fail"], [b"", b"", b"x"], max_attempts=1), timeout=WAIT)
    # The counters are bumped just after the outcome is published.
    wait_until(lambda: (w.stats()["succeeded"], w.stats()["failed"]) == (2, 1), "succeeded 2, failed 1")
    assert w.stats()["claimed"] == 3


def test_worker_run_returns_after_max_tasks(client, workers):
    w = workers.new(builtins=True)
    handles = client.submit_many("echo", [b"%d" % i for i in range(5)])
    assert w.run(max_tasks=5) == "stopped"
    assert client.results(handles, timeout=0) == [b"%d" % i for i in range(5)]


@pytest.mark.segment(queues=("fast", "slow"))
def test_worker_serves_only_its_queues(segment, client, workers):
    workers.start(workers.new(queues=["fast"], builtins=True))
    slow = client.submit("echo", b"s", queue="slow")
    fast = client.submit("echo", b"f", queue="fast")
    assert fast.result(timeout=WAIT) == b"f"
    assert slow.status().state == "pending"  # nobody serves "slow" yet
    workers.start(workers.new(queues=["slow"], builtins=True))
    assert slow.result(timeout=WAIT) == b"s"
    assert client.queues == ["fast", "slow"]


def test_delayed_task_does_not_start_before_its_delay(client, workers):
    workers.start()
    h = client.submit("echo", b"later", delay=0.3)
    assert h.result(timeout=WAIT) == b"later"
    o = h.outcome()
    assert o.start_ns - o.submit_ns >= 300_000_000


def test_drain_makes_a_worker_return_drained(segment, client):
    w = taskring.Worker(segment, builtins=True)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", w.run()))
    t.start()
    assert client.submit("echo", b"").result(timeout=WAIT) == b""  # it runs
    taskring.drain_segment(segment)
    t.join(WAIT)
    assert result.get("r") == "drained"


def test_async_handlers_event_loop_is_closed_when_run_returns(segment, client):
    w = taskring.Worker(segment)

    @w.task("async_noop")
    async def async_noop(payload):
        return b"async"

    t = threading.Thread(target=w.run)
    t.start()
    try:
        assert client.submit("async_noop", b"").result(timeout=WAIT) == b"async"
    finally:
        w.stop()
        t.join(WAIT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del w, async_noop
        gc.collect()
    assert not [c for c in caught if "unclosed event loop" in str(c.message)]


# A bytes handler without bind is called straight with the payload (no
# Context, no wrapper); these pin that path to the wrapper's behaviour.

def test_plain_handler_results_none_and_buffers(client, workers):
    w = workers.new()

    @w.task("none")
    def none(payload):
        return None

    @w.task("views")
    def views(payload):
        return bytearray(payload) if payload == b"ba" else memoryview(payload + b"!")

    workers.start(w)
    assert client.submit("none", b"x").result(timeout=WAIT) == b""
    assert client.results([client.submit("views", b"ba"), client.submit("views", b"mv")], timeout=WAIT) == \
        [b"ba", b"mv!"]


def test_plain_sync_handler_returning_a_coroutine_is_awaited(client, workers):
    w = workers.new()

    async def later(payload):
        await asyncio.sleep(0)
        return payload[::-1]

    @w.task("deferred")
    def deferred(payload):
        return later(payload)

    workers.start(w)
    assert client.submit("deferred", b"abc").result(timeout=WAIT) == b"cba"


def test_failed_attempt_is_logged_at_debug_with_the_exception(client, workers, caplog):
    caplog.set_level(logging.DEBUG, logger="taskring.worker")
    w = workers.new()
    raised = []

    @w.task("boom")
    def boom(payload):
        e = OSError(f"disk {payload.decode()}")
        raised.append(e)
        raise e

    workers.start(w)
    h = client.submit("boom", b"full", max_attempts=1)
    with pytest.raises(taskring.TaskFailed, match="OSError: disk full"):
        h.result(timeout=WAIT)
    wait_until(lambda: any(r.exc_info for r in caplog.records), "the failure's log record")
    record = next(r for r in caplog.records if r.exc_info)
    assert record.exc_info[1] is raised[0]
    assert record.getMessage() == f"task {h.id} (boom) attempt 1 failed"
    # The exception's traceback reaches Worker.run's frame, and the worker
    # holds `boom`: a cycle through C++ that the collector cannot see.
    raised.clear()
