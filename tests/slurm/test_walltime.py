"""Blocks that know their walltime, on a real (private, one-node) Slurm cluster.

A block of one-minute walltime runs a task that needs five: Slurm ends the job at its walltime
(TIMEOUT), the task is sent once more, to the next block, which ends the same way, and the task is
answered WALLTIME naming the walltime. A block that reached its walltime is no failure of the
config: with block_failure_limit 1 and a grace period longer than the walltime, the breaker stays
closed. Each worker pool drains (takes no new task) 30 s before its block's walltime.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gce.transport import frames
from tests.slurm.test_stop_cancels_jobs import slurm_engine
from tests.uep.uep_process import UepProcess

pytestmark = [pytest.mark.slow]

NAP = "def nap(s):\n    import time\n    time.sleep(s)\n    return s\n"


def test_a_task_longer_than_two_blocks_walltime_is_answered_walltime(slurm, tmp_path: Path) -> None:
    spec = slurm_engine()
    spec.update(block_failure_limit=1, block_grace_period=600, scheduler_poll_period=1)
    spec["provider"]["walltime"] = "00:01:00"
    uep = UepProcess(spec, tmp_path, env={"SLURM_CONF": str(slurm.conf)})
    try:
        task = uep.submit(NAP, "nap", 300)
        answer = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task, timeout=330)[1]
        assert (answer["status"], answer["error_code"]) == ("failed", "WALLTIME"), answer
        assert "reached its walltime of 00:01:00" in answer["error_message"]
        status = uep.status(lambda e: True, timeout=10)
        assert status["breaker"] is None
        ended = [b for b in status["block_list"] if b["block_id"] in ("0", "1")]
        assert [(b["state"], b["raw_state"]) for b in ended] == [("failed", "TIMEOUT")] * 2, ended
        log = uep.log.read_text()
        assert "reached its walltime (00:01:00) with a task running: sending it once more" in log
        assert "blocks failing" not in log
        script = Path(ended[0]["submit_script"]).read_text()
        assert "--drain_period=30" in script  # 5% of a minute is less than the 30 s at least
    finally:
        uep.close()


JOB = "def job():\n    import os\n    return os.environ.get('SLURM_JOB_ID')\n"


def _value(uep: UepProcess, task_id: str, timeout: float) -> object:
    import cloudpickle

    from gce.transport.payload import unpack_result

    _kind, header, body = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task_id, timeout)
    assert header["status"] == "success", header
    return cloudpickle.loads(unpack_result(body).value)


def test_a_task_goes_only_to_a_block_that_outlives_its_walltime(slurm, tmp_path: Path) -> None:
    """One-minute blocks of two workers: a pool takes no task in its last 30 s. 20 s into block 0, a
    task declaring 20 s runs there; one declaring 45 s (about 38 s are left) waits for a block of
    its own, though a worker of block 0 is idle; one declaring 55 s (more than the 50 s a block
    gives a task) is refused at once."""
    import time

    spec = slurm_engine()
    spec.update(max_workers_per_node=2, scheduler_poll_period=1)
    spec["provider"].update(walltime="00:01:00", max_blocks=2)
    uep = UepProcess(spec, tmp_path, env={"SLURM_CONF": str(slurm.conf)})
    try:
        first = _value(uep, uep.submit(JOB, "job"), timeout=60)
        began = time.monotonic()
        # 20 s into block 0 by its own clock (walltime_left), not 20 s after the first result: a
        # slow start on a busy machine would push the tasks past the pool's 30 s of taking any.
        block = uep.status(lambda e: any(b["block_id"] == "0" and b["walltime_left"] for b in e["block_list"]))
        left = next(b["walltime_left"] for b in block["block_list"] if b["block_id"] == "0")
        time.sleep(max(0.0, left - 40))
        short = uep.submit(JOB, "job", resource_specification={"walltime": 20})
        long = uep.submit(JOB, "job", resource_specification={"walltime": 45})
        never = uep.submit(JOB, "job", resource_specification={"walltime": 55})
        refused = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == never, timeout=10)[1]
        assert refused["error_code"] == "WALLTIME" and "longer than a block's walltime (00:01:00) allows: " \
            "a task may ask for at most 50 s" in refused["error_message"], refused
        assert _value(uep, short, timeout=20) == first
        assert time.monotonic() - began < 35
        assert _value(uep, long, timeout=120) not in (first, None)
        assert "sending it once more" not in uep.log.read_text()
    finally:
        uep.close()
