"""Blocks the endpoint can account for, on a real (private, one-node) Slurm cluster.

The user endpoint finds ``squeue`` and ``scontrol`` first on its PATH as wrappers of the real ones
that, on the test's word (a file beside them), hang (squeue sleeps) or stop listing some jobs (as a
scheduler that lost them would). The test's own Slurm commands run the real programs.

- A hanging squeue is killed at engine.scheduler_timeout; the status says "scheduler not answering
  since ..." and no block is started on the stale data, however many tasks wait; once squeue
  answers, scaling goes on.
- A job neither squeue nor scontrol lists any more is vanished after two polls (parsl alone would
  call it completed at the first), its job is cancelled should it still run unseen, and a block
  takes its place: running + pending blocks never exceed max_blocks, in the endpoint's status or in
  Slurm, across the scale-out and the vanished job.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from tests.slurm.test_stop_cancels_jobs import slurm_engine
from tests.uep.uep_process import UepProcess

pytestmark = [pytest.mark.slow]

SLEEP = "def nap(s):\n    import time\n    time.sleep(s)\n    return s\n"
HANG = 61  # seconds a hanging squeue sleeps: a number the test can find its processes by

SQUEUE = """#!/bin/sh
dir=$(dirname "$0")
[ -e "$dir/hang" ] && exec sleep {hang}
[ -s "$dir/hide" ] || exec {real} "$@"
{real} "$@" | grep -v -w -F -f "$dir/hide"
exit 0
"""
SCONTROL = """#!/bin/sh
dir=$(dirname "$0")
for word in "$@"; do
    if [ -s "$dir/hide" ] && grep -q -x -F -e "$word" "$dir/hide"; then
        echo "slurm_load_jobs error: Invalid job id specified" >&2
        exit 1
    fi
done
exec {real} "$@"
"""


def wrappers(slurm, directory: Path) -> dict[str, str]:
    """squeue and scontrol wrappers in DIRECTORY; the environment that puts them first."""
    directory.mkdir()
    for name, text in (("squeue", SQUEUE), ("scontrol", SCONTROL)):
        path = directory / name
        path.write_text(text.format(real=slurm.programs[name], hang=HANG))
        path.chmod(0o755)
    return {"SLURM_CONF": str(slurm.conf), "PATH": f"{directory}:{os.environ['PATH']}"}


def engine(max_blocks: int) -> dict:
    spec = slurm_engine()
    spec.update(scheduler_timeout=2, scheduler_poll_period=1)
    spec["provider"].update(max_blocks=max_blocks)
    return spec


def live(slurm) -> dict[str, str]:
    """Running and pending jobs, as the real squeue lists them."""
    return {j: s for j, s in slurm.active_jobs().items() if s in ("RUNNING", "PENDING")}


def live_blocks(status: dict) -> list[dict]:
    return [b for b in status.get("block_list", []) if b["state"] in ("running", "pending", "submitted")]


def hanging_squeues() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", str(HANG)]]


def test_a_hanging_squeue_is_reported_and_no_block_starts_on_stale_data(slurm, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    uep = UepProcess(engine(max_blocks=2), tmp_path, env=wrappers(slurm, bin_dir))
    try:
        uep.status(lambda e: any(b["state"] == "running" for b in e.get("block_list", [])), timeout=60)
        (bin_dir / "hang").touch()
        silent = uep.status(lambda e: "scheduler" in e, timeout=15)
        assert silent["scheduler"].startswith("scheduler not answering since ")
        assert silent["scheduler"].endswith("(squeue did not answer within 2 s)")
        assert [b["reason"] for b in live_blocks(silent)] == [silent["scheduler"]]
        for _ in range(3):  # more work than one block's worker takes
            uep.submit(SLEEP, "nap", 20)
        time.sleep(6)  # six polls, each killed after 2 s: no second block on stale data
        assert len(live(slurm)) == 1, live(slurm)
        assert len(hanging_squeues()) <= 1  # each one killed at its timeout

        (bin_dir / "hang").unlink()
        fresh = uep.status(lambda e: "scheduler" not in e and len(live_blocks(e)) == 2, timeout=30)
        assert len(live(slurm)) == 2 and len(live_blocks(fresh)) == 2
        assert "scheduler not answering since" in uep.log.read_text()
    finally:
        uep.close()
    assert not hanging_squeues()


def test_a_vanished_job_is_replaced_and_running_plus_pending_never_exceeds_max_blocks(slurm, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    uep = UepProcess(engine(max_blocks=2), tmp_path, env=wrappers(slurm, bin_dir))
    seen: list[int] = []

    def within_max(e: dict) -> bool:
        seen.append(len(live_blocks(e)))
        assert len(live_blocks(e)) <= 2 and len(live(slurm)) <= 2, (e.get("block_list"), live(slurm))
        return True

    try:
        for _ in range(4):
            uep.submit(SLEEP, "nap", 60)
        two = uep.status(lambda e: within_max(e) and len(live_blocks(e)) == 2, timeout=60)
        first = next(b for b in two["block_list"] if b["block_id"] == "0")
        (bin_dir / "hide").write_text(f"{first['job_id']}\n")

        gone = uep.status(lambda e: within_max(e) and any(
            b["block_id"] == "0" and b["state"] == "vanished" for b in e["block_list"]), timeout=30)
        block = next(b for b in gone["block_list"] if b["block_id"] == "0")
        assert "neither squeue nor scontrol has listed the job for 2 polls" in block["reason"]
        assert [t["state"] for t in block["transitions"]][-2:] == ["running", "vanished"]  # not completed
        replaced = uep.status(lambda e: within_max(e) and any(b["block_id"] == "2" for b in e["block_list"]),
                              timeout=30)
        assert len(live_blocks(replaced)) == 2
        assert slurm.job_state(first["job_id"]) in ("CANCELLED", "COMPLETING")  # it ran unseen: cancelled
        for _ in range(3):
            uep.status(within_max, timeout=10)
        assert max(seen) == 2
    finally:
        uep.close()
