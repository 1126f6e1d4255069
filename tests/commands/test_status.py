"""gce status: LSB exit codes, the not-running reasons, and the running endpoint's report."""

from __future__ import annotations

import json
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


# -- gce status --format openmetrics ---------------------------------------------------------
def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """TEXT read by prometheus_client's OpenMetrics parser (a real one, which refuses what the spec
    does): {(sample name, its labels): value}."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    assert text.endswith("\n# EOF\n"), text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def families(text: str) -> dict[str, tuple[str, str, str]]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    return {f.name: (f.type, f.unit, f.documentation) for f in text_string_to_metric_families(text)}


def ep(**labels: str) -> frozenset:
    return frozenset({"endpoint": "demo", **labels}.items())


def test_openmetrics_of_a_running_endpoint(gce, configured):
    paths = configured("demo")
    with running(paths), control_server(paths, FULL) as requests:
        result = gce("status", "demo", "--format", "openmetrics")
    assert requests == [{"command": "status", "args": {}}]
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    states = ("starting", "running", "backoff", "fatal", "stopping", "stopped", "compromised")
    expected = {
        ("gce_up", ep()): 1, ("gce_degraded", ep()): 0, ("gce_broker_connected", ep()): 1,
        ("gce_spool_unwritable", ep()): 0, ("gce_uptime_seconds", ep()): 3725.4,
        ("gce_build_info", ep(version="0.1.0")): 1,
        ("gce_tasks_received_total", ep()): 12, ("gce_tasks_completed_total", ep()): 9,
        ("gce_tasks_failed_total", ep()): 1, ("gce_tasks_malformed_total", ep()): 0,
        ("gce_tasks_duplicates_total", ep()): 0, ("gce_tasks_violations_total", ep()): 0,
        ("gce_tasks_in_flight", ep()): 2, ("gce_results_unconfirmed", ep()): 0,
        **{("gce_user_endpoint_state", ep(uep=key, state=s)): int(s == state)
           for key, state in (("default", "running"), ("alice-1", "fatal")) for s in states},
        ("gce_user_endpoint_workers", ep(uep="default")): 4, ("gce_user_endpoint_workers_idle", ep(uep="default")): 2,
        ("gce_user_endpoint_blocks", ep(uep="default")): 1,
        ("gce_user_endpoint_blocks_failing", ep(uep="default")): 0,
        ("gce_user_endpoint_blocks_failing", ep(uep="alice-1")): 0,
    }
    assert samples(result.stdout) == expected
    described = families(result.stdout)
    assert described["gce_tasks_received"][0] == "counter"
    assert described["gce_uptime_seconds"][:2] == ("gauge", "seconds")
    assert all(doc for _type, _unit, doc in described.values())
    # node_exporter's textfile collector reads the older Prometheus text format: the same text must
    # parse there, with the same samples (counters' _total ones untyped) and no type it does not know
    from prometheus_client.parser import text_string_to_metric_families

    older = list(text_string_to_metric_families(result.stdout))
    assert {(s.name, frozenset(s.labels.items())): s.value for f in older for s in f.samples} == expected
    assert {f.type for f in older} == {"gauge", "counter", "unknown"}


def test_openmetrics_spool_unwritable_only_with_an_error(gce, configured):
    paths = configured("demo")
    healthy = {**FULL, "spool": {"path": "/var/lib/gce/demo/spool", "error": "", "since": None}}
    with running(paths), control_server(paths, healthy):
        result = gce("status", "demo", "--format", "openmetrics")
    assert result.exit_code == 0, result.stderr
    assert samples(result.stdout)[("gce_spool_unwritable", ep())] == 0


def test_openmetrics_label_values_are_escaped(gce, configured):
    paths = configured("demo")
    hostile = 'al"ice\\x\n} 1\ngce_up 0'  # a user endpoint key that tries to end its label and add a line
    reply = {**FULL, "gce_version": 'v"\\', "user_endpoints": [{"key": hostile, "state": "wedged",
                                                                 "engine": {"workers_total": 3}}]}
    with running(paths), control_server(paths, reply):
        result = gce("status", "demo", "--format", "openmetrics")
    assert result.exit_code == 0, result.stderr
    found = samples(result.stdout)
    assert found[("gce_user_endpoint_workers", ep(uep=hostile))] == 3
    assert found[("gce_user_endpoint_state", ep(uep=hostile, state="wedged"))] == 1
    assert found[("gce_build_info", ep(version='v"\\'))] == 1
    assert found[("gce_up", ep())] == 1


def test_openmetrics_of_a_degraded_endpoint_exits_150_with_no_hint(gce, configured):
    from tests.commands.test_degraded import DEGRADED

    paths = configured("demo")
    with running(paths), control_server(paths, DEGRADED):
        result = gce("status", "demo", "--format", "openmetrics")
    assert result.exit_code == 150
    assert result.stderr == ""
    found = samples(result.stdout)
    assert (found[("gce_up", ep())], found[("gce_degraded", ep())], found[("gce_spool_unwritable", ep())]) == (1, 1, 1)


def test_openmetrics_of_a_stopped_endpoint_says_it_is_down_and_exits_3(gce, configured):
    configured("demo")
    result = gce("status", "demo", "--format", "openmetrics")
    assert result.exit_code == 3
    assert result.stderr == ""
    assert samples(result.stdout) == {("gce_up", ep()): 0}


def test_openmetrics_of_an_unknown_endpoint_prints_nothing_and_exits_78(gce, home):
    result = gce("status", "nope", "--format", "openmetrics")
    assert result.exit_code == 78
    assert result.stdout == ""
    assert result.stderr.startswith("error: no endpoint named 'nope'")


def test_format_json_is_json_and_a_bad_format_is_a_usage_error(gce, configured):
    paths = configured("demo")
    with running(paths), control_server(paths, FULL):
        as_json = gce("status", "demo", "--format", "json")
        text = gce("status", "demo", "--format", "text")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == {k: v for k, v in FULL.items() if k != "ok"}
    assert text.exit_code == 0 and text.stdout.startswith("endpoint demo (GPU [lab]) is running\n")
    bad = gce("status", "demo", "--format", "yaml")
    assert bad.exit_code == 2
    assert "'yaml' is not one of" in bad.stderr


@pytest.mark.broker
def test_openmetrics_of_a_real_endpoint(broker, home, gce_bin):
    from tests.endpoint import Endpoint, wait_until

    endpoint = Endpoint(broker, home, name="om", engine="thread")
    endpoint.start()
    try:
        with endpoint.executor() as ex:
            assert ex.submit(pow, 3, 2).result(timeout=60) == 9

        def completed() -> dict | None:
            result = gce_bin("status", "om", "--format", "openmetrics")
            assert result.returncode == 0, result.stderr
            found = samples(result.stdout)
            return found if found[("gce_tasks_completed_total", frozenset({"endpoint": "om"}.items()))] == 1 else None

        found = wait_until(completed, timeout=30, interval=0.5)
    finally:
        endpoint.stop()
    om = {"endpoint": "om"}
    assert found[("gce_up", frozenset(om.items()))] == 1
    assert found[("gce_broker_connected", frozenset(om.items()))] == 1
    assert found[("gce_degraded", frozenset(om.items()))] == found[("gce_spool_unwritable", frozenset(om.items()))] == 0
    assert found[("gce_tasks_received_total", frozenset(om.items()))] == 1
    assert found[("gce_user_endpoint_state",
                  frozenset({**om, "uep": "default", "state": "running"}.items()))] == 1
    assert found[("gce_user_endpoint_workers", frozenset({**om, "uep": "default"}.items()))] == 4
