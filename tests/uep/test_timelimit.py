"""A task's time limit, kept on the worker (gce.uep.timelimit, used by gce.uep.execute.run_task)."""

from __future__ import annotations

import time

from gce.sdk import serialize
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
    status, value = _run(lambda: time.sleep(0.05) or "done", 5)
    assert status == b"ok"
    time.sleep(0.1)  # no alarm left armed to go off later in this worker
