"""The failing-block breaker on local blocks: a real user endpoint whose HighThroughputEngine's
LocalProvider blocks fail at once (their worker_init exits 1 until a file exists).

After block_failure_limit such blocks it submits no more, answers the waiting task and every new
one with BLOCKS_FAILING and a sentence naming the last block, its exit code and its output; the
cause gone, a fresh user endpoint (what `gce resume` has the manager start) runs tasks again. The same rules on a real
Slurm cluster: tests/slurm/test_breaker.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gce.transport import frames
from gce.uep.breaker import Breaker
from tests.uep.uep_process import UepProcess

ADD = "def add(a, b):\n    return a + b\n"


def failing_engine(flag: Path, limit: int = 3) -> dict:
    return {
        "type": "HighThroughputEngine", "max_workers_per_node": 1, "strategy_period": 0.3, "address": "127.0.0.1",
        "block_failure_limit": limit, "block_grace_period": 5,
        "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1,
                     "worker_init": f"echo preparing the worker; echo no module named numpi >&2; "
                                    f"test -e {flag} || exit 1"},
    }


def result_of(uep: UepProcess, task_id: str, timeout: float) -> dict:
    return uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task_id, timeout)[1]


def test_failing_local_blocks_open_the_breaker_for_good_and_a_fresh_user_endpoint_runs_tasks(tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    uep = UepProcess(failing_engine(flag), tmp_path)
    try:
        started = time.monotonic()
        task = uep.submit(ADD, "add", 1, 2)
        answer = result_of(uep, task, timeout=30)
        assert (answer["status"], answer["error_code"]) == ("failed", "BLOCKS_FAILING")
        message = answer["error_message"]
        assert "3 blocks in a row failed" in message and "block 2" in message, message
        assert "exit code 1" in message and "preparing the worker" in message and "no module named numpi" in message
        assert "gce resume" in message and "worker_init" in message
        took = time.monotonic() - started

        status = uep.status(lambda e: e.get("breaker") is not None, timeout=10)
        breaker = status["breaker"]
        assert (breaker["state"], breaker["failures"], breaker["limit"], breaker["block_id"]) == (
            "blocks failing", 3, 3, "2")
        assert breaker["exit_code"] == 1 and breaker["reason"] == message
        assert "preparing the worker" in breaker["stdout_tail"] and "numpi" in breaker["stderr_tail"]
        time.sleep(max(2.0, took / 3))  # several strategy periods: no fourth block
        status = uep.status(lambda e: True, timeout=10)
        assert [b["block_id"] for b in status["block_list"]] == ["0", "1", "2"]
        assert [b["state"] for b in status["block_list"]] == ["failed"] * 3, status["block_list"]

        refused = result_of(uep, uep.submit(ADD, "add", 2, 2), timeout=5)
        assert (refused["error_code"], refused["error_message"]) == ("BLOCKS_FAILING", message)
        assert "blocks failing" in uep.log.read_text()

    finally:
        uep.close()
    flag.touch()  # the cause gone, a fresh user endpoint (what gce resume starts) runs tasks
    uep = UepProcess(failing_engine(flag), tmp_path)
    try:
        ok = result_of(uep, uep.submit(ADD, "add", 3, 4), timeout=60)
        assert ok["status"] == "success", ok
        assert uep.status(lambda e: True, timeout=10)["breaker"] is None
    finally:
        uep.close()


class FakeBlock:
    def __init__(self, block_id: str, running_since: float | None, connected: bool) -> None:
        self.block_id, self.running_since = block_id, running_since
        self.connected_at = running_since if connected else None


def test_a_healthy_block_resets_the_count_and_short_lived_ones_count() -> None:
    breaker = Breaker(limit=2, grace=60)
    assert breaker.ended(FakeBlock("0", None, False), now=10.0) is False  # never ran: 1
    assert breaker.healthy(FakeBlock("1", 10.0, True), now=20.0) is False  # not yet past the grace period
    assert breaker.ended(FakeBlock("1", 10.0, True), now=30.0) is True  # ran 20 s < 60 s: 2, opens
    breaker = Breaker(limit=2, grace=60)  # open for good: a fresh user endpoint has a fresh one
    assert breaker.ended(FakeBlock("2", None, False), now=40.0) is False
    assert breaker.healthy(FakeBlock("3", 40.0, True), now=101.0) is True
    assert breaker.failures == 0
    assert breaker.ended(FakeBlock("3", 40.0, True), now=200.0) is False  # ran long enough: not a failure
    assert breaker.failures == 0


@pytest.mark.parametrize("kind", ["ThreadPoolEngine", "ProcessPoolEngine"])
def test_a_local_pool_has_no_breaker(kind: str, tmp_path: Path) -> None:
    from gce.uep.factory import make_engine

    engine = make_engine({"type": kind, "max_workers": 1}, str(tmp_path), 1 << 20)
    engine.start()
    try:
        assert engine.status()["breaker"] is None
    finally:
        engine.shutdown()


def test_a_block_that_reached_its_walltime_is_not_a_failure() -> None:
    breaker = Breaker(limit=1, grace=600)
    block = FakeBlock("0", 10.0, True)
    block.timed_out = True  # type: ignore[attr-defined]
    assert breaker.ended(block, now=70.0) is False and breaker.failures == 0


@pytest.mark.parametrize(("walltime", "drain"), [("00:01:00", 30), ("01:00:00", 3420), ("24:00:00", 85800),
                                                 ("soon", None), (None, None)])
def test_a_block_drains_before_its_walltime(walltime: str | None, drain: int | None) -> None:
    from gce.uep.breaker import drain_period

    assert drain_period(walltime) == drain
