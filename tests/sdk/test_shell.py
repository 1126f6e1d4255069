"""ShellFunction runs where it is called (here: locally) and pickles by reference."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cloudpickle
import pytest

from gce.sdk import ShellFunction, ShellResult


def test_formats_runs_and_captures():
    r = ShellFunction("echo {x}; echo err >&2; exit 3")(x=5)
    assert r == ShellResult(3, "5\n", "err\n", "echo 5; echo err >&2; exit 3") and str(r) == "5\n"


def test_walltime_kills_the_command_and_its_children():
    start = time.monotonic()
    r = ShellFunction("sleep 30 & sleep 30", walltime=0.5)()
    assert r.returncode == 124 and "walltime of 0.5 s" in r.stderr
    assert time.monotonic() - start < 10


def test_snippet_lines_keeps_the_tail():
    assert ShellFunction("seq 1 10", snippet_lines=2)().stdout == "9\n10\n"


def test_round_trips_through_cloudpickle():
    f = cloudpickle.loads(cloudpickle.dumps(ShellFunction("echo {a}-{b}")))
    assert f(a=1, b=2).stdout == "1-2\n" and f.__name__ == "ShellFunction"


def test_an_empty_command_is_refused():
    with pytest.raises(ValueError):
        ShellFunction("  ")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


TIMED_OUT = """
import sys, time
from gce.sdk import ShellFunction
from gce.uep.timelimit import TaskTimedOut, time_limit

began = time.monotonic()
try:
    with time_limit(0.5):
        ShellFunction("sleep 30 & echo $! $$ > " + sys.argv[1] + "; wait")()
except TaskTimedOut:
    print(f"timed out after {time.monotonic() - began:.1f} s")
"""


def test_a_task_time_limit_ends_the_command_and_its_children_at_once(tmp_path):
    # The task's own limit (walltime, task_timeout) interrupts a worker's main thread with
    # TaskTimedOut, not the command's walltime: the command must end with it, and at once, not
    # hold the worker until the grace's SIGKILL and then run on in a session of its own. A worker
    # of its own (a child process), since that SIGKILL would take pytest.
    pids = tmp_path / "pids"
    done = subprocess.run([sys.executable, "-c", TIMED_OUT, str(pids)], capture_output=True, text=True,
                          timeout=60)
    survivors = []
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            survivors.append(pid)
            os.kill(pid, signal.SIGKILL)
    # At once: well before the 1 s grace's SIGKILL, which would end the child with -9.
    assert done.returncode == 0 and done.stdout.startswith("timed out after "), (done.returncode, done.stderr)
    assert float(done.stdout.split()[3]) < 0.5 + 3
    assert not survivors, f"processes {survivors} of the command outlived its task"


def test_an_interrupt_after_the_command_ended_stays_that_interrupt(monkeypatch):
    # The time limit may strike after the command's group is gone, just before communicate()
    # returns: the task must end TaskTimedOut, not ProcessLookupError from the kill.
    from gce.uep.timelimit import TaskTimedOut

    def interrupted(self, timeout=None):
        self.wait()  # the command, and with it its group, is gone
        raise TaskTimedOut(1.0)

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(TaskTimedOut):
        ShellFunction("true")()
