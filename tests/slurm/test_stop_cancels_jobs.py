"""`gce stop` stops the whole tree and cancels the batch jobs the endpoint submitted.

A personal endpoint whose HighThroughputEngine gets its block from a real (private, one-node)
Slurm cluster runs a task inside that block's job; then the real ``gce stop`` must leave no job
pending or running in Slurm and no process of the endpoint (manager, user endpoint,
interchange, worker pool) alive. A block left behind would keep a site's allocation busy until
its walltime, which is what users pay for.

The job must end CANCELLED and within a few seconds: a worker pool that lost its interchange
also ends its job by itself, but only after the heartbeat threshold and as COMPLETED, which
would hide an endpoint that never cancels.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.endpoint import Endpoint, processes_under

pytestmark = [pytest.mark.broker, pytest.mark.slow]

NAME = "slurm"
GCE = str(Path(sys.executable).parent / "gce")
VENV_BIN = str(Path(sys.executable).parent)
# Seconds after `gce stop` returns. Less than the engine's 10 s heartbeat threshold, after which a
# worker pool that lost its interchange ends its job by itself: only a cancellation is this quick.
CANCEL_WITHIN = 5.0


def slurm_engine() -> dict:
    """One block of one node from partition debug; the worker pool runs in the batch step."""
    return {
        "type": "HighThroughputEngine", "max_workers_per_node": 1, "strategy_period": 0.5,
        "address": "127.0.0.1",  # the job runs on this host: no interface probing
        "provider": {
            "type": "SlurmProvider", "partition": "debug", "walltime": "00:05:00",
            "init_blocks": 1, "min_blocks": 0, "max_blocks": 1,
            "launcher": {"type": "SingleNodeLauncher"},
            # A site may submit without the caller's environment: find parsl's worker pool anyway.
            "worker_init": f"export PATH={VENV_BIN}:$PATH",
        },
    }


def slurm_job_id() -> str | None:
    import os

    return os.environ.get("SLURM_JOB_ID")


def gce(*args: str) -> subprocess.CompletedProcess:
    """The real CLI, with this test's GCE_HOME and Slurm in its environment."""
    return subprocess.run([GCE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})


def test_gce_stop_cancels_the_slurm_jobs_and_leaves_no_process(slurm, endpoint):
    endpoint.start(timeout=90)
    with endpoint.executor() as ex:
        job_id = ex.submit(slurm_job_id).result(timeout=60)
    assert job_id and job_id.isdigit(), f"the task did not run in a Slurm job: SLURM_JOB_ID={job_id!r}"
    assert slurm.job_state(job_id) == "RUNNING"
    jobs = slurm.active_jobs()
    assert jobs == {job_id: "RUNNING"}, f"one block job was expected, squeue shows {jobs}"
    tree = " ".join(processes_under(endpoint.home))
    for part in ("gce.daemon", "gce.uep", "interchange", "worker_pool"):
        assert part in tree, f"no {part} process of the endpoint before the stop: {tree}"

    stop = gce("stop", NAME)
    assert (stop.returncode, stop.stdout) == (0, f"endpoint {NAME} stopped\n"), stop.stderr

    left = _active_after(slurm, CANCEL_WITHIN)
    assert not left, (f"`gce stop` left Slurm jobs {left} pending or running for {CANCEL_WITHIN:g} s; "
                      f"the endpoint's logs:\n{_logs(endpoint)}")
    assert slurm.job_state(job_id) == "CANCELLED"
    left_alive = _alive_after(endpoint, 10)
    assert not left_alive, f"`gce stop` left processes of the endpoint alive for 10 s: {left_alive}"

    again = gce("stop", NAME)
    assert (again.returncode, again.stdout, again.stderr) == (0, f"endpoint {NAME} is not running\n", "")


def _active_after(slurm, seconds: float) -> dict[str, str]:
    """The jobs still not finished after up to SECONDS (empty as soon as none is)."""
    deadline = time.monotonic() + seconds
    while (left := slurm.active_jobs()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _alive_after(endpoint: Endpoint, seconds: float) -> list[str]:
    """The endpoint's processes still alive after up to SECONDS (empty as soon as none is)."""
    deadline = time.monotonic() + seconds
    while (left := processes_under(endpoint.home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _logs(endpoint: Endpoint) -> str:
    """The last lines of the manager's and the user endpoint's logs."""
    logs = sorted(endpoint.home.rglob("*.log"))
    return "\n".join(f"--- {log}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                     for log in logs)
