"""A user endpoint's blocks on a real (private, one-node) Slurm cluster, as its manager is told.

The node is first held by another job, so the endpoint's block waits in the queue: the status
names it pending with squeue's own word and reason (read from parsl's own poll, not by a command
of ours). Once the other job goes, the block runs and its worker pool connects. Its job id is the
real Slurm job, and CANCEL_BLOCK really cancels it: squeue stops listing it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gce.transport import frames
from tests.slurm.test_stop_cancels_jobs import slurm_engine
from tests.uep.uep_process import UepProcess

pytestmark = [pytest.mark.slow]


def _block(status: dict) -> dict | None:
    return status["block_list"][0] if status.get("block_list") else None


def test_a_block_s_job_goes_from_pending_to_running_and_cancel_block_cancels_it(slurm, tmp_path: Path) -> None:
    blocker_id = slurm.hold_node()
    uep = UepProcess(slurm_engine(), tmp_path, env={"SLURM_CONF": str(slurm.conf)})
    try:
        pending = uep.status(lambda e: (_block(e) or {}).get("raw_state") == "PD", timeout=30)
        block = _block(pending)
        assert block is not None
        assert (block["provider"], block["state"], block["reason"], block["walltime"]) == (
            "SlurmProvider", "pending", "Resources", "00:05:00")
        job_id = block["job_id"]
        assert slurm.active_jobs() == {blocker_id: "RUNNING", job_id: "PENDING"}
        assert block["stdout"].endswith(".stdout") and Path(block["submit_script"]).is_file()
        assert block["walltime_left"] is None  # not running yet

        slurm.run("scancel", blocker_id)
        running = _block(uep.status(lambda e: (_block(e) or {}).get("state") == "running", timeout=30))
        assert running is not None and running["job_id"] == job_id and running["workers"] == 1
        assert [(t["state"], t["raw_state"]) for t in running["transitions"]][-2:] == [("pending", "PD"),
                                                                                       ("running", None)]
        assert 0 < running["walltime_left"] <= 300
        assert slurm.job_state(job_id) == "RUNNING"

        uep.send(frames.CANCEL_BLOCK, {"block_id": "0"})
        cancelled = _block(uep.status(lambda e: (_block(e) or {}).get("state") == "cancelled", timeout=10))
        assert cancelled is not None and cancelled["reason"] == "cancelled on request"
        deadline = time.monotonic() + 10
        while job_id in slurm.active_jobs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job_id not in slurm.active_jobs(), f"squeue still lists the cancelled job {job_id}"
        assert slurm.job_state(job_id) == "CANCELLED"
        log = uep.log.read_text()
        assert "block 0 cancelled at the manager's request" in log and "SlurmProvider): pending [PD]: Resources" in log
    finally:
        uep.close()
        slurm.run("scancel", blocker_id, check=False)
