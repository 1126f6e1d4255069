"""The list of batch jobs a user endpoint keeps for its manager (gce.uep.blocks).

The provider here is a stand-in at the one seam the ledger wraps (submit, status, cancel);
tests/slurm/test_uep_kill_cancels_jobs.py proves the whole path against a real Slurm.
"""

from __future__ import annotations

import json

from parsl.jobs.states import JobState, JobStatus

from gce.uep import blocks

SPEC = {"type": "SlurmProvider", "partition": "debug"}


class Provider:
    def __init__(self) -> None:
        self.next, self.states, self.cancelled = 0, {}, []

    def submit(self, command, tasks_per_node, job_name="job"):
        self.next += 1
        self.states[str(self.next)] = JobState.RUNNING
        return str(self.next)

    def status(self, job_ids):
        return [JobStatus(self.states[j]) for j in job_ids]

    def cancel(self, job_ids):
        self.cancelled += job_ids
        return [j != "3" for j in job_ids]  # job 3 cannot be cancelled


def recorded(run_dir) -> dict:
    return json.loads((run_dir / blocks.LEDGER).read_text())


def test_jobs_are_recorded_until_cancelled_or_over(tmp_path):
    provider = Provider()
    blocks.track(provider, SPEC, str(tmp_path))
    assert [provider.submit("cmd", 1) for _ in range(4)] == ["1", "2", "3", "4"]
    assert recorded(tmp_path) == {"provider": SPEC, "jobs": ["1", "2", "3", "4"]}
    provider.states["2"] = JobState.COMPLETED
    provider.status(["1", "2"])  # the engine's poller learns job 2 is over
    assert recorded(tmp_path)["jobs"] == ["1", "3", "4"]
    assert provider.cancel(["1", "3"]) == [True, False]
    assert recorded(tmp_path)["jobs"] == ["3", "4"]  # what could not be cancelled is kept
    assert not list(tmp_path.glob(".blocks.json.*"))  # written whole, renamed into place


def test_nothing_recorded_means_nothing_to_cancel(tmp_path):
    assert blocks.cancel_left_behind(str(tmp_path)) == []
    provider = Provider()
    blocks.track(provider, SPEC, str(tmp_path))
    provider.submit("cmd", 1)
    provider.cancel(["1"])
    assert blocks.cancel_left_behind(str(tmp_path)) == []  # an empty list: no provider built
    assert not (tmp_path / blocks.LEDGER).exists()
