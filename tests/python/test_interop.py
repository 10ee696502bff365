"""C++ and Python on one segment: a Python client with the C++ CLI's
worker, and the C++ CLI's submit and get with a Python worker."""

import asyncio
import json
import signal
import subprocess

import pytest

import taskring
from conftest import WAIT, python_worker_cmd, subprocess_env, wait_until


@pytest.fixture
def cpp_worker(cli, segment, spawn):
    """A `taskring worker` (built-in handlers) on the test's segment; it
    must exit 0 on SIGINT at teardown."""
    p = spawn([cli, "worker", "--segment", segment])
    yield p
    p.signal(signal.SIGINT)
    assert p.finish(WAIT) == 0, p.stderr


@pytest.fixture
def python_worker(segment, spawn, worker_module):
    """A `python -m taskring worker trtasks` on the test's segment; Ctrl-C
    at teardown must stop it with exit status 130."""
    p = spawn(python_worker_cmd("trtasks", segment), cwd=worker_module)
    p.wait_for_line(f"on segment '{segment}': tasks gated, meet, pid, slow_first_attempt, upper")
    yield p
    p.signal(signal.SIGINT)
    assert p.finish(WAIT) == 130, p.stderr


def run_cli(cli, *args, check=True):
    r = subprocess.run([cli, *args], env=subprocess_env(), capture_output=True, text=True, timeout=WAIT)
    if check:
        assert r.returncode == 0, f"taskring {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def test_python_client_gets_echo_result_from_cpp_worker(client, cpp_worker, rng):
    payloads = [rng.randbytes(n) for n in (0, 7, 40, 41, 57, 3000)]
    handles = client.submit_many("echo", payloads)
    assert client.results(handles, timeout=WAIT) == payloads


def test_python_client_gets_sleep_result_from_cpp_worker(client, cpp_worker):
    h = client.submit("sleep", b"50")
    assert h.result(timeout=WAIT) == b""
    o = h.outcome()
    assert o.state == "succeeded"
    assert o.finish_ns - o.start_ns >= 50_000_000  # it did sleep (a lower bound, not a speed)


def test_cpp_worker_failure_raises_task_failed_in_python(client, cpp_worker):
    with pytest.raises(taskring.TaskFailed) as e:
        client.submit("fail", b"disk full", max_attempts=1).result(timeout=WAIT)
    assert e.value.message == "disk full"


def test_python_await_of_a_cpp_worker_task(client, cpp_worker):
    async def main():
        return await asyncio.gather(*(client.submit("echo", b"%d" % i) for i in range(50)))

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == [b"%d" % i for i in range(50)]


def test_cli_submit_to_python_worker_and_python_client_reads_the_result(cli, segment, client, python_worker):
    r = run_cli(cli, "submit", "--segment", segment, "--task", "upper", "--payload", "hello from c++")
    task_id = int(r.stdout.strip())
    assert client.handle(task_id).result(timeout=WAIT) == b"HELLO FROM C++"


def test_cli_get_reads_the_result_of_a_python_worker(cli, segment, python_worker):
    r = run_cli(cli, "submit", "--segment", segment, "--task", "upper", "--payload", "read by get")
    task_id = r.stdout.strip()

    def finished():
        doc = json.loads(run_cli(cli, "get", "--segment", segment, task_id, "--json").stdout)
        return doc if doc["state"] != "pending" and doc["state"] != "running" else None

    doc = wait_until(finished, f"task {task_id} to finish", interval=0.05)
    assert (doc["state"], doc["value"], doc["task"], doc["consumed"]) == ("succeeded", "READ BY GET", "upper", True)


def test_cli_submit_wait_of_python_tasks(cli, segment, python_worker):
    r = run_cli(cli, "submit", "--segment", segment, "--task", "upper", "--payload", "abc", "--count", "3",
                "--wait")
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.split(" ", 1)[1] == "succeeded ABC" for line in lines), lines


def test_python_worker_failure_is_seen_by_cli_get(cli, segment, client, python_worker):
    # "upper" of a payload that is not bytes-like cannot fail; "meet" with
    # a folder that does not exist raises FileNotFoundError.
    h = client.submit("meet", b"/nonexistent/folder", max_attempts=1)
    wait_until(lambda: h.status().done, "the task to fail")
    doc = json.loads(run_cli(cli, "get", "--segment", segment, str(h.id), "--json").stdout)
    assert doc["state"] == "failed"
    assert doc["value"].startswith("FileNotFoundError: "), doc["value"]
