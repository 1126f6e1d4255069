"""gce monitor's Blocks screen on a real (private, one-node) Slurm cluster: the block's real job id,
its state going from pending (the scheduler's own word and reason) to running, and a block
cancelled from the screen, asked first."""

from __future__ import annotations

import asyncio
import time

import pytest

from gce.tui.app import MonitorApp
from gce.tui.table import LiveTable
from tests.tui.test_app import until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

NAME = "slurmmon"
STATE, RAW, JOB = 5, 6, 3  # the Blocks screen's columns (gce.tui.rows.BLOCKS)


def where_am_i():
    import os

    return os.environ.get("SLURM_JOB_ID")


def test_the_blocks_screen_follows_a_real_job_from_pending_to_running_and_cancels_it(slurm, endpoint):
    blocker_id = slurm.hold_node()
    endpoint.start(timeout=90)
    try:
        with endpoint.executor() as ex:
            future = ex.submit(where_am_i)  # starts the user endpoint, whose block must wait

            async def main() -> None:
                app = MonitorApp({NAME: endpoint.paths}, refresh=0.5)
                async with app.run_test(size=(160, 40)) as pilot:
                    await pilot.press("3")
                    blocks = app.query_one("#blocks-table", LiveTable)

                    def block() -> list[str]:
                        return [str(c) for c in blocks.get_row_at(0)] if blocks.row_count else []

                    # squeue's own word, once parsl's poll has read it
                    row = await until(pilot, lambda: block()[STATE:RAW + 1] == ["pending", "PD"] and block(), 60)
                    job_id = row[JOB]
                    assert slurm.active_jobs() == {blocker_id: "RUNNING", job_id: "PENDING"}
                    assert row[-1] == "Resources"  # the scheduler's reason
                    slurm.run("scancel", blocker_id)
                    await until(pilot, lambda: block()[STATE] == "running", 60)
                    assert future.result(timeout=60) == job_id  # the task ran in that very job
                    await pilot.press("x")
                    assert type(app.screen).__name__ == "Confirm"
                    await pilot.press("y")
                    await until(pilot, lambda: block()[STATE] == "cancelled", 30)
                    deadline = time.monotonic() + 10
                    while job_id in slurm.active_jobs() and time.monotonic() < deadline:
                        await pilot.pause(0.2)
                    assert slurm.job_state(job_id) == "CANCELLED"

            asyncio.run(main())
    finally:
        slurm.run("scancel", blocker_id, check=False)
