"""gce diagnostic --probe sends a real no-op task through the session's broker to a real
endpoint and reports the round trip; a stopped endpoint fails at once, and without a broker
user to submit as the check is skipped with a hint."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.endpoint import processes_under, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def probe_result(gce_bin, name: str, env: dict[str, str]) -> dict:
    proc = gce_bin("diagnostic", "--endpoint", name, "--probe", "--json", env=env)
    found = [r for r in json.loads(proc.stdout) if r["check"] == "task round trip"]
    assert len(found) == 1, proc.stdout
    return found[0]


def test_probe_passes_with_a_round_trip_then_fails_fast_once_stopped(broker, on_broker, gce_bin, home):
    paths, url, users = on_broker("probe", "--engine", "thread", users=("probe-user",))
    env = {"GCE_BROKER_URL": users["probe-user"]}
    try:
        assert gce_bin("start", "probe", "--detach", "--timeout", "60").returncode == 0
        passed = probe_result(gce_bin, "probe", env)
        assert passed["status"] == "PASS", passed
        assert re.fullmatch(r"a no-op task from probe-user came back in \d+ ms", passed["reason"])
        assert passed["details"]["round_trip_ms"] < 10_000
        _, others = broker.provision(str(uuid.uuid4()), users=["probe-stranger"])  # allowed elsewhere only
        t0 = time.monotonic()
        refused = probe_result(gce_bin, "probe", {"GCE_BROKER_URL": others["probe-stranger"]})
        assert time.monotonic() - t0 < 15
        assert refused["status"] == "FAIL", refused
        assert refused["reason"].startswith("the task from probe-stranger was refused: "), refused
        assert refused["hint"] == "is probe-stranger allowed on this endpoint? " \
                                  "gce broker provision --endpoint probe --user probe-stranger"
    finally:
        gce_bin("stop", "probe")
        wait_until(lambda: not processes_under(home), timeout=30)
    t0 = time.monotonic()
    stopped = probe_result(gce_bin, "probe", env)
    assert time.monotonic() - t0 < 15
    assert stopped["status"] == "FAIL"
    assert stopped["reason"] == "endpoint probe is not running, so no task can make the round trip"
    assert stopped["hint"] == "gce start probe --detach"


def test_probe_without_a_broker_user_is_skipped_with_a_hint(gce_bin, configured, home):
    configured("probe", "--engine", "thread")
    skipped = probe_result(gce_bin, "probe", {"GCE_BROKER_URL": ""})
    assert skipped["status"] == "SKIP"
    assert skipped["reason"].startswith("no broker user to submit as: no broker URL")
    assert skipped["hint"].startswith("set GCE_BROKER_URL to the URL of a broker user allowed on this endpoint")


def test_without_probe_no_task_is_sent(gce_bin, configured, home):
    configured("probe", "--engine", "thread")
    proc = gce_bin("diagnostic", "--endpoint", "probe", "--json")
    assert "task round trip" not in [r["check"] for r in json.loads(proc.stdout)]
