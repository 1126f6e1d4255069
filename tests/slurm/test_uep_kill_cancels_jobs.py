"""A user endpoint killed by SIGKILL never shuts its engine down: its Slurm job must be cancelled anyway.

A personal endpoint's HighThroughputEngine gets its block from a real (private, one-node) Slurm
cluster and runs a task inside that block's job. Then its user endpoint is killed with SIGKILL:
the job must end CANCELLED within seconds (a worker pool that lost its interchange would end
its job by itself, but only after the heartbeat threshold and as COMPLETED). The endpoint then
restarts its user endpoint, which gets a new block and serves again.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from gce.daemon import control
from tests.slurm.test_stop_cancels_jobs import CANCEL_WITHIN, slurm_job_id

pytestmark = [pytest.mark.broker, pytest.mark.slow]
NAME = "slurm-kill"


def test_kill_9_of_the_user_endpoint_cancels_its_slurm_job(slurm, endpoint):
    endpoint.start(timeout=90)
    with endpoint.executor() as ex:
        job_id = ex.submit(slurm_job_id).result(timeout=60)
        assert job_id and job_id.isdigit(), f"the task did not run in a Slurm job: SLURM_JOB_ID={job_id!r}"
        assert slurm.job_state(job_id) == "RUNNING"
        [uep] = control.request(endpoint.paths, "status")["user_endpoints"]
        os.kill(uep["pid"], signal.SIGKILL)

        deadline = time.monotonic() + CANCEL_WITHIN
        while slurm.job_state(job_id) != "CANCELLED" and time.monotonic() < deadline:
            time.sleep(0.2)
        state = slurm.job_state(job_id)
        assert state == "CANCELLED", f"job {job_id} of the killed user endpoint is {state} after {CANCEL_WITHIN:g} s"
        assert job_id not in slurm.active_jobs()
        # The restarted user endpoint runs its task in a job of its own.
        again = ex.submit(slurm_job_id).result(timeout=90)
    assert again and again != job_id
