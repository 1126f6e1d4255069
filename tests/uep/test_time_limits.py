"""Tasks with a time limit on a real endpoint (real broker, manager, user endpoint and workers), for
each local engine: answered TIMEOUT naming the limit, while the other tasks are unharmed."""

from __future__ import annotations

import time

import pytest

from gce.sdk.errors import TaskFailed

pytestmark = pytest.mark.broker


def naps_then_answers(seconds, value):
    import time

    time.sleep(seconds)
    return value


def never_gives_up():
    import time

    while True:
        try:
            time.sleep(30)
        except BaseException:
            pass


def _timed_out(fut, limit: float, within: float) -> str:
    began = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        fut.result(timeout=60)
    assert time.monotonic() - began < within
    assert info.value.code == "TIMEOUT", info.value
    assert f"time limit of {limit:g} s" in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("engine", ["thread", "process", "htex"])
def test_a_task_past_its_limit_is_answered_timeout_and_the_others_are_unharmed(make_endpoint, engine):
    ep = make_endpoint(engine=engine)
    ep.start()
    with ep.executor() as ex:
        ex.submit(pow, 2, 2).result(timeout=60)  # the workers are up: what follows is timed
        ex.resource_specification = {"walltime": 1}
        slow = ex.submit(time.sleep, 30)
        ex.resource_specification = {}
        free = ex.submit(naps_then_answers, 2, "free")  # no limit, running beside it
        _timed_out(slow, 1, within=6)
        assert free.result(timeout=30) == "free"
        ex.task_timeout = 5
        assert ex.submit(naps_then_answers, 0.2, "in time").result(timeout=30) == "in time"


@pytest.mark.parametrize("engine", ["thread", "process", "htex"])
def test_a_task_that_swallows_every_exception_still_ends_timeout_and_costs_no_other_task(make_endpoint, engine):
    """The worker killed for its task is replaced alone, by the process pool (gce.uep.procpool) as
    by parsl: the task running beside it on another worker goes on undisturbed."""
    ep = make_endpoint(engine=engine)
    ep.start()
    with ep.executor(task_timeout=1) as ex:
        ex.submit(pow, 2, 2).result(timeout=60)
        stubborn = ex.submit(never_gives_up)
        ex.task_timeout = None
        beside = ex.submit(naps_then_answers, 3, "beside")  # running when the stubborn one's worker is killed
        _timed_out(stubborn, 1, within=8)
        assert beside.result(timeout=30) == "beside"
        assert ex.submit(naps_then_answers, 0.1, "next").result(timeout=30) == "next"
    if engine == "thread":  # the thread is left to its loop, and the user endpoint says so
        uep_log = (ep.paths.uep_log_dir / "default.log").read_text()
        assert "time limit of 1 s: answered TIMEOUT; a thread cannot be killed" in uep_log


def kills_its_worker():
    import os

    os.kill(os.getpid(), 9)


def test_a_process_worker_killed_for_another_reason_fails_its_task_worker_lost_and_the_pool_goes_on(make_endpoint):
    import os
    import signal

    ep = make_endpoint(engine="process")
    ep.start()
    with ep.executor(task_timeout=30) as ex:
        with pytest.raises(TaskFailed) as info:
            ex.submit(kills_its_worker).result(timeout=60)
        assert info.value.code == "WORKER_LOST" and "died abruptly" in str(info.value)
        assert ex.submit(naps_then_answers, 0.1, "next").result(timeout=30) == "next"
        # A worker killed while idle: it is replaced, and the next task does not fail WORKER_LOST.
        os.kill(ex.submit(os.getpid).result(timeout=30), signal.SIGKILL)
        time.sleep(0.5)  # the pool sees it dead before the next task comes
        assert ex.submit(naps_then_answers, 0, "after").result(timeout=30) == "after"
