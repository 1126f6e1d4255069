"""A task's time limit, kept on the worker (gce.uep.timelimit, used by gce.uep.execute.run_task)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from gce.sdk import serialize
from gce.uep import timelimit
from gce.uep.execute import run_task


def _run(fn, time_limit):
    kind, blob = serialize.serialize_function(fn)
    return serialize.unpack(run_task(serialize.pack_task(kind, blob, serialize.serialize_args((), {})),
                                     time_limit=time_limit))


def sleeps_and_swallows_exceptions():
    try:
        time.sleep(30)
    except Exception:
        return "swallowed"


def test_a_task_past_its_limit_is_answered_timeout_even_if_it_catches_exceptions():
    began = time.monotonic()
    status, code, message, *_ = _run(sleeps_and_swallows_exceptions, 0.3)
    assert time.monotonic() - began < 5
    assert (status, code) == (b"err", b"TIMEOUT")
    assert b"time limit of 0.3 s" in message


def test_a_task_within_its_limit_is_not_touched_and_the_alarm_is_disarmed():
    status, value, *_output = _run(lambda: time.sleep(0.05) or "done", 5)
    assert status == b"ok"
    for longer_than_any_clock in (1e12, 1e300):  # taken as no limit, not as an error in the task
        assert _run(lambda: "done", longer_than_any_clock)[0] == b"ok"
    time.sleep(0.1)  # no alarm left armed to go off later in this worker


def _in_a_thread(fn, time_limit):
    """What run_task answers on a thread other than the main one (as ThreadPoolEngine runs it)."""
    from concurrent.futures import ThreadPoolExecutor

    kind, blob = serialize.serialize_function(fn)
    payload = serialize.pack_task(kind, blob, serialize.serialize_args((), {}))
    with ThreadPoolExecutor(1) as pool:
        return serialize.unpack(pool.submit(run_task, payload, time_limit=time_limit).result(timeout=30))


def loops_in_python_and_swallows_exceptions():
    try:
        while True:
            time.sleep(0.01)
    except Exception:
        return "swallowed"


def test_on_a_thread_a_task_past_its_limit_is_interrupted_and_answered_timeout():
    began = time.monotonic()
    status, code, message, *_ = _in_a_thread(loops_in_python_and_swallows_exceptions, 0.5)
    assert time.monotonic() - began < 3
    assert (status, code) == (b"err", b"TIMEOUT")
    assert b"time limit of 0.5 s" in message


def test_on_a_thread_an_interruption_never_outlives_the_task():
    # Tasks that end right at their limit: none may leave a TaskTimedOut to go off in the thread later.
    from concurrent.futures import ThreadPoolExecutor

    kind, blob = serialize.serialize_function(lambda: sum(range(20_000)))
    payload = serialize.pack_task(kind, blob, serialize.serialize_args((), {}))

    def many() -> list[bytes]:
        statuses = []
        for _ in range(200):
            statuses.append(serialize.unpack(run_task(payload, time_limit=0.0005))[0])
            deadline = time.monotonic() + 0.002
            while time.monotonic() < deadline:  # Python code for a late interruption to land in
                pass
        return statuses

    with ThreadPoolExecutor(1) as pool:
        statuses = pool.submit(many).result(timeout=60)
    assert set(statuses) <= {b"ok", b"err"} and len(statuses) == 200


WORKER = """
import sys, time
from gce.sdk import serialize
from gce.uep.execute import run_task

def never_gives_up():
    while True:
        try:
            time.sleep(30)
        except BaseException:
            pass

def holds_the_interpreter():
    return sum(range(10 ** 13))  # C code that never lets a signal handler or a thread run

fn = {"swallow": never_gives_up, "c": holds_the_interpreter}[sys.argv[1]]
kind, blob = serialize.serialize_function(fn)
run_task(serialize.pack_task(kind, blob, serialize.serialize_args((), {})), time_limit=0.5)
print("survived", flush=True)
"""


@pytest.mark.parametrize("what", ["swallow", "c"])
def test_on_a_worker_s_main_thread_a_function_that_will_not_stop_is_killed_after_the_grace(what):
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", WORKER, what], capture_output=True, text=True, timeout=30)
    took = time.monotonic() - began
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "survived" not in proc.stdout
    assert 0.5 + timelimit.GRACE <= took < 0.5 + timelimit.GRACE + 3
