"""``await handle``: the asyncio bridge (one completion thread per client)."""

import asyncio
import threading

import pytest

import taskring
from conftest import WAIT, wait_until


def completion_threads(segment):
    return [t for t in threading.enumerate() if t.name == f"taskring-completions-{segment}"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, WAIT))


def test_await_handle_returns_the_result(client, workers):
    workers.start()

    async def main():
        return await client.submit("echo", b"awaited")

    assert run(main()) == b"awaited"


def test_await_decodes_with_the_handles_codec(segment, workers):
    workers.start()
    with taskring.Client(segment, codec="json") as c:
        async def main():
            return await c.submit("echo", {"x": [1, 2]})

        assert run(main()) == {"x": [1, 2]}


def test_gather_over_200_handles_gives_every_result_in_order(client, workers):
    workers.start()

    async def main():
        return await asyncio.gather(*(client.submit("echo", b"%d" % i) for i in range(200)))

    assert run(main()) == [b"%d" % i for i in range(200)]


def test_await_of_a_handle_whose_result_was_read_returns_it(client, workers):
    workers.start()
    h = client.submit("echo", b"read first")
    assert h.result(timeout=WAIT) == b"read first"

    async def main():
        return await h

    assert run(main()) == b"read first"


def test_await_of_a_task_that_finished_before_the_await_returns_it(client, workers):
    workers.start()
    h = client.submit("echo", b"finished unread")
    wait_until(lambda: h.status().done, "the task to finish")  # peek: the result stays unread

    async def main():
        return await h

    assert run(main()) == b"finished unread"


def test_await_of_a_failed_task_raises_task_failed(client, workers):
    workers.start()

    async def main():
        return await client.submit("fail", b"disk full", max_attempts=1)

    with pytest.raises(taskring.TaskFailed, match="disk full") as e:
        run(main())
    assert e.value.outcome.state == "failed"
    assert e.value.message == "disk full"


def test_await_of_a_cancelled_task_raises_task_cancelled(client):
    h = client.submit("echo", b"")  # no worker: it stays pending
    assert h.cancel() == "cancelled"

    async def main():
        return await h

    with pytest.raises(taskring.TaskCancelled):
        run(main())


def test_two_event_loops_in_two_threads_await_one_client(segment, client, workers):
    workers.start()
    workers.start()
    shared = client.submit("sleep", b"50")  # awaited by both loops
    results = {}

    def loop_thread(tag):
        async def main():
            own = [client.submit("echo", b"%s-%d" % (tag, i)) for i in range(100)]
            return await asyncio.gather(shared, *own)

        try:
            results[tag] = run(main())
        except BaseException as e:
            results[tag] = e

    threads = [threading.Thread(target=loop_thread, args=(tag,)) for tag in (b"a", b"b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    for tag in (b"a", b"b"):
        assert results.get(tag) == [b""] + [b"%s-%d" % (tag, i) for i in range(100)], tag
    assert len(completion_threads(segment)) == 1


def test_awaits_of_one_client_share_a_single_completion_thread(segment, client, workers):
    workers.start()
    assert completion_threads(segment) == []  # started by the first await, not by the client

    async def main():
        return await asyncio.gather(*(client.submit("echo", b"%d" % i) for i in range(200)))

    assert run(main()) == [b"%d" % i for i in range(200)]
    assert run(main()) == [b"%d" % i for i in range(200)]  # a second event loop, same thread
    assert len(completion_threads(segment)) == 1
    assert len([t for t in threading.enumerate() if t.name.startswith("taskring-completions")]) == 1


def test_client_close_stops_the_completion_thread(segment, workers):
    workers.start()
    c = taskring.Client(segment)

    async def main():
        return await c.submit("echo", b"x")

    assert run(main()) == b"x"
    (thread,) = completion_threads(segment)
    c.close()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_close_fails_pending_awaits_with_runtime_error(segment):
    c = taskring.Client(segment)
    h = c.submit("echo", b"")  # no worker: it never finishes

    async def main():
        waiter = asyncio.ensure_future(h)
        await asyncio.sleep(0.05)
        # close() joins the completion thread: keep the loop free meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, c.close)
        return await waiter

    with pytest.raises(RuntimeError, match="closed"):
        run(main())


def test_a_cancelled_await_leaves_the_result_to_a_later_await(client, workers):
    gate = threading.Event()
    w = workers.new()

    @w.task("gated")
    def gated(payload):
        gate.wait(WAIT)
        return b"after the gate"

    workers.start(w)
    h = client.submit("gated", b"")

    async def give_up():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(h, 0.05)

    run(give_up())
    gate.set()

    async def main():
        return await h

    assert run(main()) == b"after the gate"


def test_await_that_races_another_loops_completion_still_gets_the_result(client, workers):
    # Loop B checks the handle just before the completion thread stores its
    # outcome for loop A, and takes the bridge's lock just after: B must
    # return the stored outcome, not watch a task whose result was read.
    gate = threading.Event()
    w = workers.new()

    @w.task("gated")
    def gated(payload):
        gate.wait(WAIT)
        return b"once"

    workers.start(w)
    h = client.submit("gated", b"")
    in_b = threading.Event()

    class LateFutureLoop(asyncio.SelectorEventLoop):
        armed = False

        def create_future(self):
            if self.armed:  # the bridge's create_future, between its check and its lock
                self.armed = False
                in_b.set()
                wait_until(lambda: h._outcome is not None, "loop A's await to get the outcome")
            return super().create_future()

    got = {}

    def loop_b():
        loop = LateFutureLoop()

        async def main():
            loop.armed = True
            return await h

        try:
            got["b"] = loop.run_until_complete(main())
        except BaseException as e:
            got["b"] = e
        finally:
            loop.close()

    async def loop_a():
        waiter = asyncio.ensure_future(h)
        await asyncio.sleep(0)  # A is registered with the bridge
        b = threading.Thread(target=loop_b)
        b.start()
        await asyncio.get_running_loop().run_in_executor(None, in_b.wait, WAIT)
        gate.set()
        result = await waiter
        await asyncio.get_running_loop().run_in_executor(None, b.join, WAIT)
        return result

    assert run(loop_a()) == b"once"
    assert got.get("b") == b"once"


# ---- results_async: one future for a batch ---------------------------------------

def test_results_async_gives_every_result_in_order(client, workers):
    workers.start()

    async def main():
        return await client.results_async(client.submit_many("echo", [b"%d" % i for i in range(300)]))

    assert run(main()) == [b"%d" % i for i in range(300)]


def test_results_async_of_handles_read_already_and_of_a_repeated_handle(client, workers):
    workers.start()
    first = client.submit("echo", b"read")
    assert first.result(timeout=WAIT) == b"read"
    other = client.submit("echo", b"twice")

    async def main():
        return await client.results_async([first, other, other])

    assert run(main()) == [b"read", b"twice", b"twice"]


def test_results_async_raises_for_the_first_failure_and_keeps_every_outcome(client, workers):
    workers.start()
    handles = client.submit_many(["echo", "fail", "echo"], [b"a", b"broken", b"c"], max_attempts=1)

    async def main():
        return await client.results_async(handles)

    with pytest.raises(taskring.TaskFailed, match="broken"):
        run(main())
    assert [h.outcome(timeout=0).state for h in handles] == ["succeeded", "failed", "succeeded"]


def test_results_async_times_out_and_a_later_outcome_lands_in_its_handle(client, workers):
    h = client.submit("echo", b"late")  # no worker yet

    async def main():
        return await client.results_async([h], timeout=0.05)

    with pytest.raises(TimeoutError, match="1 of 1 tasks have not finished"):
        run(main())
    workers.start()
    # The completion thread still watches the task: whichever of it and
    # this blocking wait reads the outcome, the handle gives it.
    assert h.result(timeout=WAIT) == b"late"
    assert h.result(timeout=0) == b"late"


def test_results_async_checks_its_arguments(segment, client):
    with taskring.Client(segment) as other:
        h = other.submit("echo", b"")

        async def main():
            return await client.results_async([h])

        with pytest.raises(ValueError, match=f"task {h.id} belongs to another client"):
            run(main())
        h.release()

    async def bad_timeout():
        return await client.results_async([], timeout=-1)

    with pytest.raises(ValueError, match="timeout"):
        run(bad_timeout())


def test_results_async_after_a_timeout_then_blocking_results_get_every_outcome(client, workers):
    handles = client.submit_many("echo", [b"a", b"b", b"c"])  # no worker yet

    async def main():
        return await client.results_async(handles, timeout=0.05)

    with pytest.raises(TimeoutError, match="3 of 3 tasks"):
        run(main())
    workers.start()
    # The completion thread still watches all three and may read any of them.
    assert client.results(handles, timeout=WAIT) == [b"a", b"b", b"c"]


def test_results_async_with_timeout_zero_of_finished_handles_returns_them(client, workers):
    workers.start()
    handles = client.submit_many("echo", [b"x", b"y"])
    client.wait_all(handles, timeout=WAIT)

    async def main():
        return await client.results_async(handles, timeout=0)

    assert run(main()) == [b"x", b"y"]
