"""The tour in docs/python.md runs as written: its `# file:` blocks are
extracted, the workers are started the way the text says, and every
`print(...)  # expected` line must print what its comment says."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import taskring

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python.md"


def _blocks() -> dict:
    """The fenced blocks whose first line is `# file: NAME`, by name."""
    out = {}
    for m in re.finditer(r"```(?:python|sh)\n(.*?)```", DOC.read_text(), re.S):
        first, _, rest = m.group(1).partition("\n")
        if first.startswith("# file: "):
            out[first[len("# file: "):].strip()] = m.group(1)
    return out


def _expected(code: str) -> list:
    """The `# comment` after each print(...) line, in order."""
    return [m.group(1).strip() for m in re.finditer(r"""print\(.*\)["']?\s+#\s*(.+)$""", code, re.M)]


def _cli() -> Path:
    return Path(os.environ.get("TASKRING_CLI", ROOT / "build" / "release" / "tools" / "taskring"))


@pytest.fixture
def tour(tmp_path):
    blocks = _blocks()
    assert {"tasks.py", "producer.py", "interop.sh"} <= set(blocks), f"docs/python.md lost a file block: {sorted(blocks)}"
    segment = f"pydoc-{os.getpid()}"
    for name, code in blocks.items():
        (tmp_path / name).write_text(code.replace("'demo'", f"'{segment}'").replace(" demo ", f" {segment} "))
    taskring.create_segment(segment, queues=["default", "bulk", "native"], slots=8192, ring_capacity=4096,
                            payload_area=16 << 20, replace=True)
    env = dict(os.environ, TASKRING_SEGMENT=segment)
    workers = subprocess.Popen([sys.executable, "-m", "taskring", "worker", "tasks", "--processes", "2",
                                "--queues", "default,bulk"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield tmp_path, env, blocks
    finally:
        workers.send_signal(signal.SIGTERM)
        try:
            _, err = workers.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            workers.kill()
            _, err = workers.communicate()
        taskring.destroy_segment(segment)
        assert workers.returncode == 0, f"the tour's supervisor exited {workers.returncode}:\n{err}"


def test_the_producer_of_the_tour_prints_what_its_comments_say(tour):
    tmp_path, env, blocks = tour
    run = subprocess.run([sys.executable, "producer.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == _expected(blocks["producer.py"])


@pytest.fixture
def cli() -> Path:
    """The C++ CLI; skips before the tour starts its workers if it is missing."""
    path = _cli()
    if not path.is_file():
        pytest.skip(f"the C++ CLI is not built at {path} (set TASKRING_CLI)")
    return path


def test_the_interop_commands_of_the_tour_print_what_their_comments_say(cli, tour):
    tmp_path, env, blocks = tour
    # `taskring` and `python` as the text uses them: the CLI, and this venv's Python.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "taskring").symlink_to(cli)
    (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python").chmod(0o755)
    env = dict(env, PATH=f"{bindir}:{env['PATH']}")
    # On a failure, the trap stops the background worker the script started.
    script = 'set -e; trap "kill $(jobs -p) 2>/dev/null || true" EXIT; source ./interop.sh'
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == _expected(blocks["interop.sh"])
