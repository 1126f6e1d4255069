"""Walltime-aware placement (gce.uep.placement): the rule, the queue it takes from, and parsl's real
interchange taught it, with a real worker pool whose block has little time left."""

from __future__ import annotations

import importlib
import os
import sys
import time
import types
from pathlib import Path

import pytest
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider
from sortedcontainers import SortedList

from gce.uep import parsl_compat, placement, worker_pool
from gce.uep.placement import CONTEXT_KEY, fits, take_fitting

NOW = 1000.0


def limited(seconds: float, margin: float = 30.0) -> dict:
    return {CONTEXT_KEY: {"seconds": seconds, "margin": margin}}


@pytest.mark.parametrize("context,manager,expected", [
    ({}, {"drain_time": NOW + 1}, True),  # no limit: anywhere
    (limited(600), {"drain_time": float("inf")}, True),  # a pool without a walltime
    (limited(600), {}, True),
    (limited(40), {"drain_time": NOW + 10}, True),  # 10 s to its drain, 30 more to its end: 40 s
    (limited(41), {"drain_time": NOW + 10}, False),
    (limited(5), {"drain_time": NOW - 40}, False),  # past its end
    ({CONTEXT_KEY: "not a limit"}, {"drain_time": NOW}, True),
])
def test_a_task_fits_a_pool_whose_block_outlives_its_limit(context, manager, expected):
    assert fits(context, manager, NOW) is expected


def test_the_fitting_tasks_are_taken_highest_priority_first_and_the_others_stay_queued():
    queue = SortedList(key=lambda entry: (entry[0], entry[1]))
    tasks = {1: {}, 2: limited(100), 3: limited(10), 4: {}, 5: limited(100)}
    for task_id, context in tasks.items():
        queue.add((-float("inf"), -task_id, {"task_id": task_id, "context": context}))
    pool = {"drain_time": NOW + 10}  # 40 s left
    taken = take_fitting(queue, 2, pool, NOW)
    assert [t["task_id"] for t in taken] == [1, 3]  # oldest first; 2 does not fit
    assert [e[-1]["task_id"] for e in queue] == [5, 4, 2]
    assert [t["task_id"] for t in take_fitting(queue, 5, pool, NOW)] == [4]
    assert [t["task_id"] for t in take_fitting(queue, 5, {"drain_time": float("inf")}, NOW)] == [2, 5]


def test_parsl_s_interchange_is_what_placement_relies_on():
    module = importlib.import_module(parsl_compat.INTERCHANGE)
    other = types.ModuleType("copy")
    other.Interchange = type("Interchange", (module.Interchange,), {})  # type: ignore[attr-defined]
    assert placement.teach_placement(other) is True, f"parsl {parsl_compat.parsl_version()}"
    changed = types.ModuleType("changed")
    changed.Interchange = type("Interchange", (), {"process_tasks_to_send": lambda self: None,  # type: ignore[attr-defined]
                                                   "get_tasks": lambda self, n: []})
    assert placement.teach_placement(changed) is False


def test_a_pool_near_its_drain_is_not_given_a_task_that_would_outlive_its_block(tmp_path: Path):
    """A real worker pool draining 20 s after its start (as a batch block near its walltime does)
    and gce's interchange: a task with a 60 s limit waits; one with a 1 s limit runs."""
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{path}"
    htex = HighThroughputExecutor(label="htex", provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
                                  max_workers_per_node=1, drain_period=20, heartbeat_period=1,
                                  **worker_pool.htex_options(local_workers=True))
    htex.run_dir = str(tmp_path)
    htex.provider.script_dir = str(tmp_path)
    try:
        htex.start()
        assert parsl_compat.scale_out(htex, 1)  # as the engine starts its first block
        too_long = parsl_compat.submit_in_context(htex, limited(60, margin=0), str, {}, 60)
        fits_in = parsl_compat.submit_in_context(htex, limited(1, margin=0), str, {}, 1)
        assert fits_in.result(timeout=60) == "1"
        time.sleep(2)
        assert not too_long.done()  # still queued in the interchange: no pool outlives it
    finally:
        htex.shutdown()
        os.environ["PATH"] = path


def test_a_limit_longer_than_a_block_gives_is_refused_with_the_most_it_may_ask():
    assert placement.too_long(None, 60, "00:01:00") is None
    assert placement.too_long(50, 60, "00:01:00") is None
    assert placement.too_long(51, 60, "00:01:00") == (
        "the task's walltime of 51 s is longer than a block's walltime (00:01:00) allows: a task may ask for at most "
        "50 s of it. Ask for less, or raise the provider's walltime in the endpoint's config.")
