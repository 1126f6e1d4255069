"""gce diagnostic's process and control socket checks in every state an endpoint can be in:
stopped, failed (each way a manager fails), running here, running degraded, running on
another host sharing the directory. (Unreadable is in test_unreadable.py: it needs a user
who is not root.)
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.commands.helpers import control_server, running
from tests.commands.test_diagnostic import diagnose, unreachable

HEALTHY = {
    "ok": True, "name": "ep", "state": "running", "reason": "", "pid": 4242,
    "spool": {"path": "/s", "error": "", "since": None},
    "broker": {"url": "amqp://ep:***@broker:5672/gce", "connected": True, "last_error": ""},
    "user_endpoints": [],
}
OTHER_HOST = "login-elsewhere"


def _rows(name: str) -> dict[str, dict]:
    result, rows = diagnose("--endpoint", name, "--json")
    assert result.stderr == ""
    return {check: row for (endpoint, check), row in rows.items() if endpoint == name}


def _state(paths, **st) -> None:
    paths.state_file.write_text(json.dumps(st))


def test_a_stopped_endpoint_warns_that_it_does_not_run(home):
    paths = unreachable("ep")
    _state(paths, state="stopped", reason="stopped by gce stop", pid=1, host=socket.gethostname())
    rows = _rows("ep")
    assert (rows["process"]["status"], rows["process"]["reason"]) == ("WARN", "not running (stopped by gce stop)")
    assert rows["process"]["hint"] == "gce start ep --detach"
    assert rows["control socket"]["status"] == "SKIP"


@pytest.mark.parametrize("state, reason", [
    ({"state": "failed", "reason": "the broker refused the login"}, "failed: the broker refused the login"),
    ({"state": "failed"}, "failed: the manager failed"),
    ({"state": "running", "pid": 99999, "host": "HERE"},
     "failed: the manager (pid 99999) exited without shutting down (killed, or it crashed); see its log"),
    ({"state": "running", "pid": 99999, "host": OTHER_HOST, "updated_at": 1.0},
     f"failed: last seen on host {OTHER_HOST} more than 90 s ago; no manager holds the lock from here"),
], ids=["recorded", "recorded-without-reason", "crashed", "stale-on-another-host"])
def test_a_failed_endpoint_fails_the_process_check_with_its_reason(home, state, reason):
    paths = unreachable("ep")
    if state.get("host") == "HERE":
        state["host"] = socket.gethostname()
    _state(paths, **state)
    rows = _rows("ep")
    process = rows["process"]
    assert (process["status"], process["reason"]) == ("FAIL", reason)
    assert process["hint"] == "gce start ep --detach; the log check below shows its last lines"
    assert process["details"]["cause"] == reason.removeprefix("failed: ")
    assert rows["control socket"]["status"] == "SKIP"


def test_a_running_endpoint_passes_the_process_and_control_checks(home):
    paths = unreachable("ep")
    with running(paths), control_server(paths, HEALTHY):
        rows = _rows("ep")
    assert (rows["process"]["status"], rows["process"]["reason"]) == (
        "PASS", f"running, pid {rows['process']['details']['pid']} on {socket.gethostname()}")
    assert rows["control socket"]["status"] == "PASS"
    assert rows["spool"]["status"] == "PASS"


def test_a_degraded_endpoint_runs_and_its_control_check_fails_with_the_managers_reason(home):
    paths = unreachable("ep")
    reply = {**HEALTHY, "state": "degraded", "reason": "not taking tasks: cannot publish results (permission)"}
    with running(paths), control_server(paths, reply):
        rows = _rows("ep")
    assert rows["process"]["status"] == "PASS"
    control = rows["control socket"]
    assert control["status"] == "FAIL"
    assert control["reason"] == ("the manager runs degraded: not taking tasks: cannot publish results (permission)")
    assert control["hint"] == "gce status ep"


def test_an_endpoint_running_on_another_host_passes_and_skips_its_control_socket(home):
    paths = unreachable("ep")
    _state(paths, state="running", pid=777, host=OTHER_HOST, updated_at=time.time(), started_at=time.time() - 60)
    rows = _rows("ep")
    assert (rows["process"]["status"], rows["process"]["reason"]) == ("PASS", f"running, pid 777 on {OTHER_HOST}")
    control = rows["control socket"]
    assert control["status"] == "SKIP"
    assert control["reason"] == f"the manager runs on host {OTHER_HOST}: its control socket is only reachable there"
