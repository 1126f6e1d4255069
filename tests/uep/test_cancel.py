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
