"""gce status: LSB exit codes, the not-running reasons, and the running endpoint's report."""

from __future__ import annotations

import json
import os
import socket

import pytest

from gce.commands import status
from tests.commands.helpers import control_server, running

FULL = {
    "ok": True, "name": "demo", "endpoint_id": "6f1c1f0e-0000-4000-8000-000000000001", "display_name": "GPU [lab]",
    "state": "running", "pid": 4242, "host": "login1", "started_at": 1700000000.0, "uptime": 3725.4,
    "gce_version": "0.1.0", "engine_type": "HighThroughputEngine",
    "broker": {"url": "amqps://ep:***@broker:5671/gce", "connected": True, "last_error": ""},
    "tasks": {"received": 12, "completed": 9, "failed": 1, "in_flight": 2, "unconfirmed_results": 0},
    "user_endpoints": [
        {"key": "default", "pid": 4250, "state": "running", "reason": "", "python": "3.11.2", "in_flight": 2,
         "engine": {"type": "HighThroughputEngine", "blocks": 1, "managers": 1, "workers_total": 4,
                    "workers_idle": 2, "outstanding": 2, "running": 2, "done": 10, "failed": 0}},
        {"key": "alice-1", "pid": None, "state": "fatal", "reason": "worker_init failed: module: not found",
         "engine": {}},
    ],
}


def test_unknown_endpoint_is_exit_78(gce, home):
    result = gce("status", "nope")
    assert result.exit_code == 78
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no endpoint named 'nope': {home}/nope/config.yaml does not exist\n"
        "hint: gce list shows the configured endpoints; gce configure nope creates this one\n"
    )


def test_stopped_endpoint_is_exit_3(gce, configured):
    configured("demo")
    result = gce("status", "demo")
    assert result.exit_code == 3
    assert result.stdout == "endpoint demo is stopped\n"
    assert result.stderr == "hint: gce start demo --detach\n"


def test_failed_endpoint_says_why(gce, configured):
    paths = configured("demo")
    paths.state_file.write_text(json.dumps({"state": "failed", "reason": "the broker refused the login",
                                            "host": socket.gethostname()}))
    result = gce("status", "demo")
    assert result.exit_code == 3
    assert result.stdout == "endpoint demo is failed: the broker refused the login\n"


def test_not_running_as_json(gce, configured):
    paths = configured("demo")
    endpoint_id = json.loads(paths.endpoint_json.read_text())["endpoint_id"]
    result = gce("status", "demo", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout) == {"name": "demo", "endpoint_id": endpoint_id, "state": "stopped",
                                         "reason": "", "host": None}
    assert result.stderr == ""


def test_running_endpoint_is_asked_over_its_control_socket(gce, configured):
    paths = configured("demo")
    with running(paths), control_server(paths, FULL) as requests:
        result = gce("status", "demo")
    assert requests == [{"command": "status", "args": {}}]
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == (
        "endpoint demo (GPU [lab]) is running\n"
        "  endpoint id  6f1c1f0e-0000-4000-8000-000000000001\n"
        "  pid          4242 on login1\n"
        "  uptime       1h 02m\n"
        "  gce version  0.1.0\n"
        "  broker       amqps://ep:***@broker:5671/gce (connected)\n"
        "  engine       HighThroughputEngine\n"
        "  tasks        12 received, 9 completed, 1 failed, 2 in flight, 0 results awaiting the broker's "
        "confirmation\n"
        "\n"
        "USER ENDPOINT  PID   STATE    BLOCKS  MANAGERS  WORKERS  IDLE  OUTSTANDING  RUNNING  DONE  FAILED\n"
        "default        4250  running  1       1         4        2     2            2        10    0\n"
        "alice-1        -     fatal    -       -         -        -     -            -        -     -\n"
        "user endpoint alice-1: fatal: worker_init failed: module: not found\n"
    )


def test_running_as_json_is_the_managers_reply(gce, configured):
    paths = configured("demo")
    with running(paths), control_server(paths, FULL):
        result = gce("status", "demo", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {k: v for k, v in FULL.items() if k != "ok"}


def test_lock_held_but_no_answer_is_not_running(gce, configured):
    paths = configured("demo")
    with running(paths):
        result = gce("status", "demo")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"error: endpoint 'demo' is not running: no manager answers on {paths.control_socket}\n"
        "hint: gce start demo\n"
    )


def test_manager_error_reply(gce, configured):
    paths = configured("demo")
    with running(paths), control_server(paths, {"ok": False, "error": "busy"}):
        result = gce("status", "demo")
    assert result.exit_code == 4
    assert result.stderr == "error: endpoint 'demo' did not report its status: busy\n"


def test_sparse_reply_is_rendered_without_the_missing_parts(capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    status.render_status({"name": "demo", "broker": {"url": "amqp://h/v", "connected": False,
                                                     "last_error": "connection refused"},
                          "user_endpoints": [None, {"key": "k"}], "tasks": "garbage"})
    assert capsys.readouterr().out == (
        "endpoint demo is running\n"
        "  broker  amqp://h/v (not connected: connection refused)\n"
        "\n"
        "USER ENDPOINT  PID  STATE  BLOCKS  MANAGERS  WORKERS  IDLE  OUTSTANDING  RUNNING  DONE  FAILED\n"
        "k              -    -      -       -         -        -     -            -        -     -\n"
    )


@pytest.mark.parametrize("data, fields", [
    ({}, []),
    ({"pid": 7}, [("pid", "7")]),
    ({"uptime": 59.9, "tasks": {"received": 0}}, [("uptime", "59s"), ("tasks", "0 received")]),
    ({"broker": {"url": "amqp://h", "connected": False}}, [("broker", "amqp://h (not connected)")]),
])
def test_status_fields(data, fields):
    assert status.status_fields(data) == fields


def test_an_older_manager_whose_status_cannot_be_read_is_named(gce, configured):
    from gce import __version__

    paths = configured("demo")
    old = {"ok": True, "name": "demo", "state": "running", "gce_version": "0.0.9", "pid": "4242"}
    with running(paths), control_server(paths, old):
        result = gce("status", "demo")
    assert result.exit_code == 69
    assert result.stderr == (
        f"error: endpoint demo runs gce 0.0.9, this is gce {__version__}: its status cannot be read: "
        "field 'pid' should be an integer, not str\n"
        "hint: gce restart demo runs it with this gce\n"
    )


def test_a_manager_without_a_protocol_number_is_named_too(gce, configured):
    from gce import __version__

    paths = configured("demo")
    with running(paths), control_server(paths, {"ok": True, "tasks": {"received": "12"}}):
        result = gce("status", "demo")
    assert result.exit_code == 69
    assert result.stderr.startswith(f"error: endpoint demo runs an older gce (protocol 0), this is gce {__version__}: "
                                    "its status cannot be read: field 'tasks.received' should be an integer")


def test_a_newer_managers_extra_fields_are_shown_by_json_and_ignored_by_people(gce, configured):
    paths = configured("demo")
    newer = {**FULL, "protocol": 2, "gce_version": "9.0.0", "blocks_by_state": {"RUNNING": 1}}
    with running(paths), control_server(paths, newer):
        as_json = gce("status", "demo", "--json")
        for_people = gce("status", "demo")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["blocks_by_state"] == {"RUNNING": 1}
    assert for_people.exit_code == 0 and "blocks_by_state" not in for_people.stdout
    assert "  gce version  9.0.0\n" in for_people.stdout
