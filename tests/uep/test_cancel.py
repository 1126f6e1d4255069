"""A real user endpoint cancels the tasks its manager names and says where each is (gce.uep.cancel),
here on a ThreadPoolEngine of one thread (the process pool is tested end to end in
tests/daemon/test_cancel.py)."""

from __future__ import annotations

import time
import uuid

from gce.transport import frames
from tests.uep.uep_process import UepProcess

SPIN = """def spin(seconds):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))
    return "spun"
"""
GATED = """def gated(path):
    import os, time
    while not os.path.exists(path):
        time.sleep(0.05)
    return "opened"
"""


def _states(uep: UepProcess, *task_ids: str) -> dict:
    uep.send(frames.ASK_STATES, {"ask": 7, "task_ids": list(task_ids)})
    return uep.wait_for(lambda k, h: k == frames.TASK_STATES and h["ask"] == 7, 10)[1]["states"]


def _result(uep: UepProcess, task_id: str, timeout: float = 10) -> dict:
    return uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task_id, timeout)[1]


def test_a_thread_is_interrupted_and_a_task_not_started_never_runs(tmp_path):
    uep = UepProcess({"type": "ThreadPoolEngine", "max_workers": 1}, tmp_path)
    try:
        running = uep.submit(SPIN, "spin", 60)
        gate = tmp_path / "gate"
        waiting = uep.submit(GATED, "gated", str(gate))
        deadline = time.monotonic() + 10
        while _states(uep, running)[running]["state"] != "running":
            assert time.monotonic() < deadline
        nobody = str(uuid.uuid4())
        states = _states(uep, running, waiting, nobody)
        assert states[waiting] == {"state": "waiting"} and states[nobody] == {"state": "unknown"}
        assert time.time() - 10 < states[running]["since"] <= time.time()

        uep.send(frames.CANCEL_TASKS, {"task_ids": [waiting]})
        never = _result(uep, waiting)
        assert (never["status"], never["error_code"]) == ("failed", "CANCELLED")
        assert "had not started, and never runs" in never["error_message"]
        began = time.monotonic()
        uep.send(frames.CANCEL_TASKS, {"task_ids": [running, nobody]})
        stopped = _result(uep, running)
        assert stopped["error_code"] == "CANCELLED" and "thread was interrupted" in stopped["error_message"]
        assert time.monotonic() - began < 5
        again = uep.submit(SPIN, "spin", 0)  # the one thread is free for the next task
        assert _result(uep, again)["status"] == "success"
        gate.touch()
    finally:
        uep.close()


class _Open:  # the failing-block breaker, closed: every task may go to parsl
    def refusal(self) -> None:
        return None


def test_parsl_s_waiting_tasks_are_taken_back_and_the_ones_it_holds_are_left_to_finish():
    """Parsl is the seam (as in tests/uep/test_backlog.py): what would reach it is recorded."""
    from gce.uep.cancel import NOT_STARTED, stop
    from gce.uep.engines import HighThroughputEngine

    engine = HighThroughputEngine({}, "/nonexistent", 1 << 20)
    engine.guard = _Open()  # type: ignore[assignment]
    engine.slots = 1
    sent: list = []

    def to_parsl(tasks, spec):  # parsl takes it and holds it: its one slot is taken
        sent.append(tasks)
        engine._in_parsl += 1

    engine._send = to_parsl  # type: ignore[method-assign]
    held = engine.submit(b"held", {}, "t-held")
    waiting = engine.submit(b"waiting", {}, "t-waiting")
    assert [[p for p, _ in tasks] for tasks in sent] == [[b"held"]] and len(engine._waiting) == 1
    said: list[str] = []
    assert stop(engine, "t-waiting", waiting, said.append) == NOT_STARTED == said[-1]
    assert waiting.cancelled() and not engine._waiting and waiting not in engine._ids
    assert "cannot stop a task parsl holds" in stop(engine, "t-held", held, said.append)
    assert not held.done()


def test_a_task_a_worker_pool_of_parsl_holds_is_said_to_run(tmp_path):
    htex = {"type": "HighThroughputEngine", "max_workers_per_node": 1, "strategy_period": 0.5,
            "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1}}
    uep = UepProcess(htex, tmp_path)
    try:
        gate = tmp_path / "gate"
        task = uep.submit(GATED, "gated", str(gate))
        deadline = time.monotonic() + 60
        while (said := _states(uep, task)[task])["state"] != "running":
            assert said["state"] == "waiting" and time.monotonic() < deadline
            time.sleep(0.2)
        assert time.time() - 60 < said["since"] <= time.time()
        gate.touch()
        assert _result(uep, task, 30)["status"] == "success"
    finally:
        uep.close()
