"""The failing-block breaker on a real (private, one-node) Slurm cluster.

Every block's batch script runs a worker_init that prints a line to each of stdout and stderr and
exits 1 until a file exists: each job fails at once (Slurm: FAILED, NonZeroExitCode, exit code 1)
and no worker pool ever connects. With block_failure_limit 3 the user endpoint submits exactly
three jobs, never a fourth, and answers the waiting task (then a new one) with BLOCKS_FAILING and
a sentence that has the job's exit code, Slurm's state and reason and the tail of its output. Once
the file exists, a fresh user endpoint (what `gce resume` has the manager start) submits again and
a task runs.

The jobs are counted with ``scontrol show job``, which lists finished jobs for MinJobAge (300 s by
default): accounting is off in the test cluster, so sacct knows none. Each is a block of the
engine's executor ("parsl.htex.block-N" names its submit script; Slurm's JobName is the script's).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gce.transport import frames
from tests.slurm.test_stop_cancels_jobs import slurm_engine
from tests.uep.uep_process import UepProcess

pytestmark = [pytest.mark.slow]

ADD = "def add(a, b):\n    return a + b\n"
LIMIT = 3


def failing_engine(flag: Path) -> dict:
    engine = slurm_engine()
    engine.update(block_failure_limit=LIMIT, block_grace_period=5, scheduler_poll_period=1)
    engine["provider"]["worker_init"] = (f"echo preparing the worker; echo no module named numpi >&2; "
                                         f"test -e {flag} || exit 1; {engine['provider']['worker_init']}")
    return engine


def block_jobs(slurm) -> dict[str, str]:
    """Job id -> state of every job of an engine's block that Slurm still knows, finished or not."""
    out = slurm.run("scontrol", "--oneliner", "show", "job").stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if fields.get("JobName", "").startswith("parsl.htex.block-"):
            jobs[fields["JobId"]] = fields["JobState"]
    return jobs


def result_of(uep: UepProcess, task_id: str, timeout: float) -> dict:
    return uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task_id, timeout)[1]


def test_jobs_that_fail_at_once_stop_at_the_limit_and_the_task_gets_their_output(slurm, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    uep = UepProcess(failing_engine(flag), tmp_path, env={"SLURM_CONF": str(slurm.conf)})
    try:
        answer = result_of(uep, uep.submit(ADD, "add", 1, 2), timeout=90)
        assert (answer["status"], answer["error_code"]) == ("failed", "BLOCKS_FAILING"), answer
        message = answer["error_message"]
        jobs = block_jobs(slurm)
        assert len(jobs) == LIMIT and set(jobs.values()) == {"FAILED"}, jobs
        last = max(jobs, key=int)
        assert "3 blocks in a row failed" in message and f"SlurmProvider job {last}" in message, message
        assert "failed [FAILED, NonZeroExitCode] with exit code 1" in message
        assert "preparing the worker" in message and "no module named numpi" in message

        breaker = uep.status(lambda e: e.get("breaker") is not None, timeout=10)["breaker"]
        assert (breaker["job_id"], breaker["exit_code"], breaker["raw_state"], breaker["scheduler_reason"]) == (
            last, 1, "FAILED", "NonZeroExitCode")
        time.sleep(5)  # five scheduler polls and ten strategy periods: no fourth job
        assert block_jobs(slurm) == jobs and not slurm.active_jobs()
        refused = result_of(uep, uep.submit(ADD, "add", 2, 2), timeout=5)
        assert (refused["error_code"], refused["error_message"]) == ("BLOCKS_FAILING", message)

    finally:
        uep.close()
    flag.touch()  # the cause gone, a fresh user endpoint (what gce resume starts) runs tasks
    uep = UepProcess(failing_engine(flag), tmp_path, env={"SLURM_CONF": str(slurm.conf)})
    try:
        ok = result_of(uep, uep.submit(ADD, "add", 3, 4), timeout=90)
        assert ok["status"] == "success", ok
        assert len(block_jobs(slurm)) == LIMIT + 1
    finally:
        uep.close()
