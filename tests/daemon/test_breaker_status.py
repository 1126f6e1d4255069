"""A user endpoint whose blocks kept failing, in the typed status: read leniently from what its
engine reports, counted for the endpoint, and seen by a local user only as far as it is theirs."""

from __future__ import annotations

import json

from gce.daemon.activity import BreakerStatus
from gce.daemon.public_status import peer_view
from gce.daemon.status import EndpointStatus, EngineStatus, UepStatus

REASON = ("blocks failing: 3 blocks in a row ended before a worker connected; the last, block 2 (job 41), "
          "exited with code 1 (FAILED: NonZeroExitCode)\nstdout:\nsetting up\nstderr:\nworker_init: exit 1")
BREAKER = {"state": "blocks failing", "since": 1700000000.5, "reason": REASON, "failures": 3, "limit": 3,
           "block_id": "2", "job_id": "41", "exit_code": 1, "raw_state": "FAILED",
           "scheduler_reason": "NonZeroExitCode", "stdout_tail": "setting up", "stderr_tail": "worker_init: exit 1"}


def _uep(key: str, breaker: object = None, state: str = "running") -> dict:
    return {"key": key, "pid": 4250, "state": state, "reason": "", "python": "3.11.2", "in_flight": 0,
            "engine": {"type": "HighThroughputEngine", "blocks": 0, "breaker": breaker}}


def test_an_open_breaker_is_read_whole_and_survives_json():
    engine = EngineStatus.from_dict({"type": "HighThroughputEngine", "breaker": BREAKER})
    assert engine.breaker == BreakerStatus("blocks failing", 1700000000.5, REASON, 3, 3, "2", "41", 1, "FAILED",
                                           "NonZeroExitCode", "setting up", "worker_init: exit 1")
    assert engine.to_dict()["breaker"] == BREAKER
    assert EngineStatus.from_dict(json.loads(json.dumps(engine.to_dict()))) == engine


def test_a_closed_or_missing_breaker_is_none_and_stays_out_of_the_json():
    for data in ({"type": "ThreadPoolEngine"}, {"type": "ThreadPoolEngine", "breaker": None}):
        engine = EngineStatus.from_dict(data)
        assert engine.breaker is None
        assert "breaker" not in engine.to_dict()


def test_odd_values_never_fail_the_read():
    assert EngineStatus.from_dict({"breaker": "open"}).breaker is None
    assert EngineStatus.from_dict({"breaker": [1, 2]}).breaker is None
    odd = EngineStatus.from_dict({"breaker": {"since": "yesterday", "reason": 7, "failures": "3", "job_id": 41,
                                              "exit_code": True, "stdout_tail": None, "block_id": 2}}).breaker
    assert odd == BreakerStatus(block_id="2")  # still open: each odd field took its default
    assert odd.short_reason() == "several blocks in a row failed"


def test_the_short_reason_is_the_first_line_cut_to_fit():
    long = "x" * 300
    assert BreakerStatus(reason=long + "\nmore").short_reason() == "x" * 159 + "…"
    assert BreakerStatus(reason="exit 1\nmore").short_reason() == "exit 1"
    # the views put the state before it: a reason that starts with it does not say it twice
    assert BreakerStatus(reason=REASON).short_reason() == REASON.splitlines()[0][len("blocks failing: "):]


def test_a_user_endpoint_with_an_open_breaker_shows_blocks_failing():
    failing = UepStatus.from_dict(_uep("default", BREAKER))
    assert failing.blocks_failing
    assert failing.state == "running"  # the process runs: its engine answers every task itself
    assert failing.shown_state() == "blocks failing"
    assert failing.shown_reason() == BreakerStatus(reason=REASON).short_reason()
    fine = UepStatus.from_dict(_uep("default"))
    assert (fine.blocks_failing, fine.shown_state(), fine.shown_reason()) == (False, "running", "")
    fatal = UepStatus.from_dict({**_uep("x", state="fatal"), "reason": "no python"})
    assert (fatal.shown_state(), fatal.shown_reason()) == ("fatal", "no python")


def test_a_local_user_sees_the_reason_of_their_own_only_and_a_count_of_all():
    status = EndpointStatus.from_dict({
        "name": "cluster", "state": "running", "blocks_failing": 2,
        "user_endpoints": [_uep("alice/3f2a", BREAKER), _uep("bob/9e01", BREAKER), _uep("bob/77aa")]})
    owners = {"alice/3f2a": 1001, "bob/9e01": 1002, "bob/77aa": 1002}
    alice = peer_view(status, 1001, owners.get, lambda task_id: None)
    assert [u.key for u in alice.user_endpoints] == ["alice/3f2a"]
    assert alice.user_endpoints[0].engine.breaker is not None
    assert alice.blocks_failing == 2
    assert REASON not in json.dumps([u.to_dict() for u in peer_view(status, 1003, owners.get, lambda t: None)
                                     .user_endpoints])
    assert EndpointStatus.from_dict(json.loads(json.dumps(alice.to_dict()))).blocks_failing == 2
