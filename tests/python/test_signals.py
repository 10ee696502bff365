"""Ctrl-C and SIGTERM: of a producer waiting for a result, of a
``python -m taskring worker`` and of its ``--processes`` supervisor."""

import os
import re
import signal
import sys

import pytest

from conftest import WAIT, pid_alive, python_worker_cmd, wait_until

# Both scripts put SIGINT back to Python's handler first: a process started
# from a background job inherits SIGINT ignored, and Python keeps it so.
WAITER = '''
import signal
import sys
import taskring

signal.signal(signal.SIGINT, signal.default_int_handler)
client = taskring.Client(sys.argv[1])
handle = client.submit("sleep", b"60000")  # no worker runs it
print("waiting", flush=True)
handle.result()
print("result() returned", flush=True)
'''

FULL_QUEUE_SUBMITTER = '''
import signal
import sys
import taskring

signal.signal(signal.SIGINT, signal.default_int_handler)
client = taskring.Client(sys.argv[1])
for _ in range(64):
    client.submit("noop", b"", timeout=0)
print("waiting", flush=True)
client.submit("noop", b"")  # the ring is full and nobody empties it: waits for room
print("submit() returned", flush=True)
'''


def parked_in_a_futex(pid):
    # The script has one thread; once it sleeps in a futex it is inside the
    # engine's wait (the GIL is not contended), where the signal must land.
    with open(f"/proc/{pid}/wchan") as f:
        return "futex" in f.read()


def run_script_until_waiting(spawn, tmp_path, text, segment):
    script = tmp_path / "script.py"
    script.write_text(text)
    p = spawn([sys.executable, str(script), segment], cwd=tmp_path)
    p.wait_for_line("waiting", stream="stdout")
    wait_until(lambda: parked_in_a_futex(p.pid), "the script to park in its wait")
    return p


def assert_interrupted(p):
    code = p.finish(WAIT)  # a few seconds at most in practice; WAIT on a loaded machine
    assert code != 0
    assert "KeyboardInterrupt" in p.stderr, p.stderr
    assert "returned" not in p.stdout


def test_ctrl_c_interrupts_a_result_wait_with_keyboard_interrupt(spawn, tmp_path, segment):
    p = run_script_until_waiting(spawn, tmp_path, WAITER, segment)
    p.signal(signal.SIGINT)
    assert_interrupted(p)
    assert "in outcome" in p.stderr  # raised from the wait, not after it


@pytest.mark.segment(ring_capacity=64, slots=256)
def test_ctrl_c_interrupts_a_submit_waiting_for_room(spawn, tmp_path, segment):
    p = run_script_until_waiting(spawn, tmp_path, FULL_QUEUE_SUBMITTER, segment)
    p.signal(signal.SIGINT)
    assert_interrupted(p)
    assert "in submit" in p.stderr  # raised from the wait for room


def start_python_worker(spawn, segment, worker_module, *args):
    p = spawn(python_worker_cmd("trtasks", segment, *args), cwd=worker_module)
    p.wait_for_line(f"on segment '{segment}'")
    return p


def test_ctrl_c_stops_a_single_worker_process_with_exit_130(spawn, segment, client, worker_module):
    p = start_python_worker(spawn, segment, worker_module)
    assert client.submit("upper", b"running").result(timeout=WAIT) == b"RUNNING"  # it is in run()
    p.signal(signal.SIGINT)
    assert p.finish(WAIT) == 130
    assert "interrupted, stopped after its running task" in p.stderr


def test_ctrl_c_of_a_worker_process_lets_its_running_task_finish(spawn, segment, client, worker_module, tmp_path):
    gate = tmp_path / "gate"
    p = start_python_worker(spawn, segment, worker_module)
    h = client.submit("gated", str(gate).encode())
    wait_until(lambda: h.status().state == "running", "the task to start")
    p.signal(signal.SIGINT)
    gate.touch()
    assert h.result(timeout=WAIT) == b"gate seen"
    o = h.outcome()
    assert (o.attempts, o.crashes) == (1, 0)  # it ran to its end in the interrupted worker
    assert p.finish(WAIT) == 130


def test_sigterm_stops_a_single_worker_process_with_exit_0(spawn, segment, client, worker_module):
    p = start_python_worker(spawn, segment, worker_module)
    assert client.submit("upper", b"x").result(timeout=WAIT) == b"X"
    p.signal(signal.SIGTERM)
    assert p.finish(WAIT) == 0
    assert re.search(r"worker pid \d+: signal; 1 succeeded, 0 failed", p.stderr), p.stderr


def start_supervisor(spawn, segment, worker_module, processes=2):
    p = spawn(python_worker_cmd("trtasks", segment, "--processes", str(processes)), cwd=worker_module,
              new_session=True)
    lines = p.wait_for_line(f"on segment '{segment}'", count=processes)
    pids = [int(re.search(r"worker pid (\d+)", ln).group(1)) for ln in lines]
    assert len(set(pids)) == processes and p.pid not in pids
    return p, pids


def test_sigterm_stops_the_supervisor_and_its_worker_processes_with_exit_0(spawn, segment, client, worker_module,
                                                                           tmp_path):
    p, pids = start_supervisor(spawn, segment, worker_module)
    # Two tasks that wait for each other: both worker processes are in
    # their claim loop, with their signal handlers in place.
    folder = tmp_path / "meet"
    folder.mkdir()
    ran_in = client.results(client.submit_many("meet", [str(folder).encode()] * 2, max_attempts=1), timeout=WAIT)
    assert sorted(int(r) for r in ran_in) == sorted(pids)
    p.signal(signal.SIGTERM)
    assert p.finish(WAIT) == 0, p.stderr
    for pid in pids:
        assert not pid_alive(pid), f"worker process {pid} outlived its supervisor"
        assert f"worker pid {pid}: signal;" in p.stderr, p.stderr  # each stopped cleanly (exit 0)
    assert "supervisor: worker pid" not in p.stderr, p.stderr  # none died or exited non-zero


def test_supervisor_replaces_killed_worker_processes_and_records_how_they_died(spawn, segment, client,
                                                                               worker_module):
    p, pids = start_supervisor(spawn, segment, worker_module)
    h = client.submit("slow_first_attempt", b"")
    wait_until(lambda: h.status().state == "running", "a worker process to start the task")
    for pid in pids:  # one of them runs the task
        os.kill(pid, signal.SIGKILL)
    assert h.result(timeout=WAIT) == b"done on attempt 2"
    o = h.outcome()
    assert (o.attempts, o.crashes) == (2, 1)
    assert "killed by signal 9" in o.last_crash, o.last_crash
    p.wait_for_line("starting a replacement", count=2)
    p.signal(signal.SIGTERM)
    assert p.finish(WAIT) == 0, p.stderr
