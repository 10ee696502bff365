"""``python -m taskring worker``: usage errors exit 2 with a clear message;
the flags it takes."""

import re
import subprocess
import sys

import pytest

from conftest import WAIT, subprocess_env, unique_segment_name


def run_cli(args, cwd, **env):
    return subprocess.run([sys.executable, "-m", "taskring", *args], cwd=cwd, env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=WAIT)


def test_worker_without_segment_exits_2_naming_the_flag(worker_module):
    r = run_cli(["worker", "trtasks"], worker_module)
    assert r.returncode == 2
    assert "error: --segment: no segment given (pass --segment NAME or set TASKRING_SEGMENT)" in r.stderr
    assert r.stderr.startswith("usage: python -m taskring")


def test_worker_module_that_does_not_import_exits_2(segment, tmp_path):
    r = run_cli(["worker", "no_such_module_here", "--segment", segment], tmp_path)
    assert r.returncode == 2
    assert "error: MODULE 'no_such_module_here': cannot import it: No module named 'no_such_module_here'" in r.stderr


def test_worker_module_whose_import_fails_on_a_dependency_exits_2(segment, tmp_path):
    (tmp_path / "needs_dep.py").write_text("import a_dependency_that_is_missing\n")
    r = run_cli(["worker", "needs_dep", "--segment", segment], tmp_path)
    assert r.returncode == 2
    assert "MODULE 'needs_dep': cannot import it: No module named 'a_dependency_that_is_missing'" in r.stderr


def test_worker_module_that_raises_while_importing_exits_2_with_its_traceback(segment, tmp_path):
    (tmp_path / "broken_tasks.py").write_text("import taskring\n\nraise RuntimeError('no config file')\n")
    r = run_cli(["worker", "broken_tasks", "--segment", segment], tmp_path)
    assert r.returncode == 2
    assert "broken_tasks.py\", line 3" in r.stderr  # the traceback points at the module's line
    assert "error: MODULE 'broken_tasks': importing it raised RuntimeError: no config file" in r.stderr


def test_worker_module_with_no_tasks_exits_2(segment, tmp_path):
    (tmp_path / "empty_tasks.py").write_text("import taskring\n")
    r = run_cli(["worker", "empty_tasks", "--segment", segment], tmp_path)
    assert r.returncode == 2
    assert "error: MODULE 'empty_tasks': declares no tasks (decorate handlers with @taskring.task)" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--processes", "0"], "argument --processes: '0': must be an integer of at least 1"),
    (["--max-tasks", "x"], "argument --max-tasks: 'x': must be an integer of at least 1"),
    (["--cpu", "0,a"], "argument --cpu: '0,a': 'a' is not a CPU number"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_worker_bad_flag_exits_2_naming_it(segment, worker_module, args, message):
    r = run_cli(["worker", "trtasks", "--segment", segment, *args], worker_module)
    assert r.returncode == 2
    assert message in r.stderr, r.stderr


def test_worker_on_a_missing_segment_exits_1(worker_module):
    name = unique_segment_name()
    r = run_cli(["worker", "trtasks", "--segment", name], worker_module)
    assert r.returncode == 1
    assert f"python -m taskring: error: segment '{name}' does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_supervisor_on_a_missing_segment_exits_1(worker_module):
    name = unique_segment_name()
    r = run_cli(["worker", "trtasks", "--segment", name, "--processes", "2"], worker_module)
    assert r.returncode == 1
    assert f"segment '{name}' does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_worker_takes_the_segment_from_the_environment(segment, client, worker_module):
    handles = client.submit_many("upper", [b"a", b"b"])
    r = run_cli(["worker", "trtasks", "--max-tasks", "2"], worker_module, TASKRING_SEGMENT=segment)
    assert r.returncode == 0, r.stderr
    assert client.results(handles, timeout=0) == [b"A", b"B"]
    assert "nanobind: leaked" not in r.stderr


def test_worker_with_max_tasks_exits_0_after_that_many(segment, client, worker_module):
    handles = client.submit_many("upper", [b"%d" % i for i in range(5)])
    r = run_cli(["worker", "trtasks", "--segment", segment, "--max-tasks", "3"], worker_module)
    assert r.returncode == 0, r.stderr
    assert re.search(r"worker pid \d+: stopped; 3 succeeded, 0 failed, 0 retried", r.stderr), r.stderr
    assert [h.status().state for h in handles].count("succeeded") == 3
    # The two it had claimed but not run are back in the queue for the next one.
    r = run_cli(["worker", "trtasks", "--segment", segment, "--max-tasks", "2"], worker_module)
    assert r.returncode == 0, r.stderr
    assert client.results(handles, timeout=WAIT) == [b"%d" % i for i in range(5)]


def test_worker_with_builtins_serves_them_too(segment, client, worker_module):
    h = client.submit("echo", b"builtin")
    r = run_cli(["worker", "trtasks", "--segment", segment, "--builtins", "--max-tasks", "1"], worker_module)
    assert r.returncode == 0, r.stderr
    assert h.result(timeout=0) == b"builtin"


@pytest.mark.segment(queues=("a", "b"))
def test_worker_with_queues_serves_only_those(segment, client, worker_module):
    on_b = client.submit("upper", b"b", queue="b")
    on_a = client.submit("upper", b"a", queue="a")
    r = run_cli(["worker", "trtasks", "--segment", segment, "--queues", "a", "--max-tasks", "1"], worker_module)
    assert r.returncode == 0, r.stderr
    assert "queues a;" in r.stderr
    assert on_a.result(timeout=0) == b"A"
    assert on_b.status().state == "pending"


def test_module_help_lists_the_worker_command():
    r = subprocess.run([sys.executable, "-m", "taskring", "worker", "--help"], env=subprocess_env(),
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0
    for flag in ("--segment", "--processes", "--queues", "--cpu", "--max-tasks", "--builtins"):
        assert flag in r.stdout


def test_worker_with_an_unknown_queue_exits_1_naming_it(segment, worker_module):
    r = run_cli(["worker", "trtasks", "--segment", segment, "--queues", "nope"], worker_module)
    assert r.returncode == 1
    assert "python -m taskring: error: " in r.stderr and "'nope'" in r.stderr, r.stderr


def test_supervisor_exits_1_without_replacing_workers_that_cannot_start(segment, worker_module):
    r = run_cli(["worker", "trtasks", "--segment", segment, "--queues", "nope", "--processes", "2"], worker_module)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("not replacing it") == 2, r.stderr
    assert "starting a replacement" not in r.stderr
