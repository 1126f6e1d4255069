"""A running endpoint that takes no tasks (its spool cannot be written) shows as degraded in
status, list and diagnostic, with the manager's reason; `gce status` exits 150 then."""

from __future__ import annotations

import json
import os
import socket

from gce.commands.diagnostic import checks
from tests.commands.helpers import control_server, running

ERROR = "the spool disk is full (No space left on device) at /var/lib/gce/demo/spool"
DEGRADED = {
    "ok": True, "name": "demo", "endpoint_id": "6f1c1f0e-0000-4000-8000-000000000001", "display_name": "demo",
    "state": "degraded", "reason": f"not taking tasks: {ERROR}", "pid": 4242, "host": "login1",
    "spool": {"path": "/var/lib/gce/demo/spool", "error": ERROR, "since": 1700000000.0},
    "broker": {"url": "amqp://ep:***@broker:5672/gce", "connected": True, "last_error": ""},
    "tasks": {"received": 3, "completed": 1, "failed": 0, "in_flight": 2, "unconfirmed_results": 0},
    "user_endpoints": [],
}


def test_status_of_a_degraded_endpoint_says_why_and_exits_150(gce, configured):
    paths = configured("demo")
    with running(paths), control_server(paths, DEGRADED):
        result = gce("status", "demo")
        as_json = gce("status", "demo", "--json")
    assert result.exit_code == 150
    assert result.stdout == (
        f"endpoint demo is degraded: not taking tasks: {ERROR}\n"
        "  endpoint id  6f1c1f0e-0000-4000-8000-000000000001\n"
        "  pid          4242 on login1\n"
        "  broker       amqp://ep:***@broker:5672/gce (connected)\n"
        f"  spool        /var/lib/gce/demo/spool (cannot be written: {ERROR})\n"
        "  tasks        3 received, 1 completed, 0 failed, 2 in flight, 0 results awaiting the broker's "
        "confirmation\n"
    )
    assert result.stderr == ("hint: make room on (or remount read-write) the file system of "
                             "/var/lib/gce/demo/spool; the endpoint takes tasks again by itself\n")
    assert as_json.exit_code == 150
    assert json.loads(as_json.stdout)["spool"]["error"] == ERROR


def test_list_shows_a_degraded_endpoint_with_its_reason(gce, home, configured):
    paths = configured("demo", "--engine", "thread")
    with running(paths), control_server(paths, DEGRADED):
        result = gce("list")
        rows = json.loads(gce("list", "--json").stdout)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1].split()[2:5] == ["degraded", str(os.getpid()), socket.gethostname()]
    assert lines[-1] == f"demo: degraded: not taking tasks: {ERROR}"
    assert (rows[0]["state"], rows[0]["reason"]) == ("degraded", f"not taking tasks: {ERROR}")


def test_list_keeps_running_when_the_manager_is_healthy_or_silent(gce, home, configured):
    paths = configured("demo")
    with running(paths), control_server(paths, {**DEGRADED, "state": "running", "reason": ""}):
        assert json.loads(gce("list", "--json").stdout)[0]["state"] == "running"
    with running(paths):  # no control socket: list does not guess
        assert json.loads(gce("list", "--json").stdout)[0]["state"] == "running"


def test_the_spool_check_fails_naming_the_error_and_the_path(home):
    from gce.config.paths import endpoint_paths

    ctx = checks.Context(endpoint_paths("demo"), status=DEGRADED)
    r = checks.spool(ctx)
    assert (r.status, r.reason) == ("FAIL", f"the manager is not taking tasks (they wait on the broker): {ERROR}")
    assert r.hint == ("make room on (or remount read-write) the file system of /var/lib/gce/demo/spool; "
                      "the endpoint takes tasks again by itself")
    ctx.status = {**DEGRADED, "state": "running", "spool": {"path": "/s", "error": "", "since": None}}
    assert (checks.spool(ctx).status, checks.spool(ctx).reason) == ("PASS", "the manager writes its spool in /s")
    ctx.status = None
    assert checks.spool(ctx).status == "SKIP"
