"""The manager's log says once when a user endpoint's blocks start failing (its engine's breaker
opens: every task answered BLOCKS_FAILING) and once when they no longer do."""

from __future__ import annotations

import logging
from pathlib import Path

from gce.config.uep import UepConfig
from gce.daemon.children import UepChild
from gce.transport import frames

BREAKER = {"state": "blocks failing", "reason": "block 2 (job 41) exited with code 1\nstderr: worker_init: exit 1"}


def _child(tmp_path: Path, seen: list) -> UepChild:
    conf = UepConfig(endpoint_id="e", engine={"type": "ThreadPoolEngine"}, run_dir=str(tmp_path), max_result_bytes=1 << 20)
    return UepChild("alice/3f2a", conf, tmp_path / "uep.log", lambda uep, kind, header, body: seen.append(kind),
                    lambda uep, reason: None)


def test_the_log_says_once_when_blocks_start_failing_and_once_when_they_stop(tmp_path, caplog):
    seen: list = []
    uep = _child(tmp_path, seen)
    caplog.set_level(logging.INFO, logger="gce.daemon.children")
    uep._frame(frames.READY, {"python": "3.11.2", "status": {"type": "HighThroughputEngine", "breaker": None}}, b"")
    for _ in range(3):  # every status report while it is open: said once
        uep._frame(frames.STATUS, {"engine": {"type": "HighThroughputEngine", "breaker": BREAKER}}, b"")
    assert uep.breaker == BREAKER
    uep._frame(frames.STATUS, {"engine": {"type": "HighThroughputEngine", "breaker": None}}, b"")
    uep._frame(frames.STATUS, {"engine": {"type": "HighThroughputEngine"}}, b"")
    assert uep.breaker is None
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "blocks" in r.getMessage()]
    assert said == [
        ("WARNING", "user endpoint alice/3f2a: blocks failing, it submits no more and answers its tasks "
                    "BLOCKS_FAILING: block 2 (job 41) exited with code 1\nstderr: worker_init: exit 1"),
        ("INFO", "user endpoint alice/3f2a: blocks no longer failing, it submits blocks again"),
    ]
    assert seen == [frames.READY, frames.STATUS, frames.STATUS, frames.STATUS, frames.STATUS, frames.STATUS]


def test_an_odd_breaker_is_no_breaker_and_an_odd_reason_still_opens_it(tmp_path, caplog):
    uep = _child(tmp_path, [])
    caplog.set_level(logging.INFO, logger="gce.daemon.children")
    uep._frame(frames.STATUS, {"engine": {"breaker": "open"}}, b"")
    assert uep.breaker is None
    uep._frame(frames.STATUS, {"engine": {"breaker": {"reason": 7}}}, b"")
    assert uep.breaker == {"reason": 7}
    assert caplog.records[-1].getMessage().endswith("BLOCKS_FAILING: no reason given")
