"""gce diagnostic's blocks check: a FAIL naming each user endpoint whose blocks kept failing, why,
and what to do (a real endpoint in that state: tests/daemon/test_breaker_endpoint.py)."""

from __future__ import annotations

from gce.commands.diagnostic import checks
from gce.config.paths import endpoint_paths

BREAKER = {"state": "blocks failing", "reason": "blocks failing: block 2 (job 41) exited with code 1\nstdout: x",
           "failures": 3, "limit": 3, "block_id": "2", "job_id": "41", "exit_code": 1}


def _ctx(gce_home, ueps: list, blocks_failing: int = 0) -> checks.Context:
    return checks.Context(endpoint_paths("demo"), status={
        "name": "demo", "state": "running", "blocks_failing": blocks_failing,
        "user_endpoints": [{"key": key, "state": "running", "engine": {"breaker": b}} for key, b in ueps]})


def test_a_user_endpoint_whose_blocks_fail_is_a_fail_with_the_resume_hint(gce_home):
    r = checks.blocks(_ctx(gce_home, [("default", BREAKER), ("other", None)], 1))
    assert (r.check, r.status) == ("blocks", "FAIL")
    assert r.reason == ("blocks failing, tasks are answered BLOCKS_FAILING: user endpoint default: "
                        "block 2 (job 41) exited with code 1")
    assert r.hint == ("fix the engine's worker_init or provider (gce status demo shows the last block's output), "
                      "then: gce resume demo")
    assert r.details["user_endpoints"]["default"]["job_id"] == "41"
    assert list(r.details["user_endpoints"]) == ["default"]


def test_none_failing_passes_and_other_users_are_a_count(gce_home):
    assert checks.blocks(_ctx(gce_home, [("default", None)])).status == "PASS"
    theirs = checks.blocks(_ctx(gce_home, [("alice/1", None)], 2))
    assert (theirs.status, theirs.reason) == ("WARN", "2 user endpoint(s) of other users: blocks failing")
    assert checks.blocks(checks.Context(endpoint_paths("demo"))).status == "SKIP"
