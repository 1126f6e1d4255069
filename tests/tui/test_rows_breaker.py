"""gce monitor's user endpoints screen (and --once, --plain) for a user endpoint whose blocks kept failing."""

from __future__ import annotations

from gce.tui.collect import EndpointView, Snapshot
from gce.tui.rows import USER_ENDPOINTS, uep_rows

BREAKER = {"state": "blocks failing", "reason": "blocks failing: block 2 (job 41) exited with code 1\nstdout: x",
           "failures": 3, "limit": 3, "block_id": "2", "job_id": "41", "exit_code": 1}


def _view(engine: dict) -> EndpointView:
    uep = {"key": "alice/3f2a", "pid": 4250, "state": "running", "reason": "", "idle_for": 2.0, "engine": engine}
    return EndpointView("cluster", "running", status={"user_endpoints": [uep]})


def test_a_user_endpoint_whose_blocks_fail_says_so_with_its_short_reason():
    rows = dict(uep_rows(Snapshot(1000.0, (_view({"done": 0, "failed": 2, "breaker": BREAKER}),))))
    assert rows["cluster/alice/3f2a"][USER_ENDPOINTS.index("STATE")] == \
        "blocks failing: block 2 (job 41) exited with code 1"


def test_a_closed_breaker_leaves_the_state_as_it_was():
    rows = dict(uep_rows(Snapshot(1000.0, (_view({"done": 1, "failed": 0, "breaker": None}),))))
    assert rows["cluster/alice/3f2a"][USER_ENDPOINTS.index("STATE")] == "running"
