"""The typed status a manager answers with: JSON round trips, tolerance of other gce versions,
refusal of values of the wrong type (naming the field)."""

from __future__ import annotations

import json

import pytest

from gce.daemon.status import (PROTOCOL, EndpointStatus, EngineStatus, LinkStatus, RecentTask, SpoolStatus,
                               StatusError, TaskCounts, UepStatus)

ENGINE = {"type": "HighThroughputEngine", "outstanding": 3, "done": 7, "failed": 1, "blocks": 1, "managers": 1,
          "workers_total": 4, "workers_idle": 1, "running": 3, "block_states": {"0": "RUNNING"}}


def _status() -> EndpointStatus:
    return EndpointStatus(
        name="demo", endpoint_id="5f0e0b7c-0000-4000-8000-000000000001", display_name="Demo", state="running",
        accepting_tasks=True, spool=SpoolStatus("/var/lib/gce/demo/spool"), pid=4242, host="login1",
        started_at=1000.0, uptime=12.5, gce_version="0.2.0", engine_type="HighThroughputEngine",
        broker=LinkStatus("amqp://ep:***@broker:5672/gce", True, None, {"gce.status": "permission"}),
        tasks=TaskCounts(received=9, completed=7, failed=1, in_flight=1),
        user_endpoints=(UepStatus("default", 4343, "running", "", "3.11.2", 1, 2, 1001.0, 0.0,
                                  EngineStatus.from_dict(ENGINE)),),
        recent_tasks=(RecentTask("t-1", "failed", "USER_EXCEPTION", "ZeroDivisionError: division by zero", 1010.0),),
    )


def test_a_status_survives_json_both_ways():
    status = _status()
    data = json.loads(json.dumps(status.to_dict()))
    assert EndpointStatus.from_dict(data) == status
    assert data["protocol"] == PROTOCOL


def test_the_json_keeps_the_field_names_gce_status_json_always_printed():
    data = _status().to_dict()
    assert list(data)[:17] == ["name", "endpoint_id", "display_name", "state", "reason", "public_reason",
                               "accepting_tasks", "spool", "pid", "host", "started_at", "uptime", "gce_version",
                               "engine_type", "broker", "tasks", "user_endpoints"]
    assert data["broker"] == {"url": "amqp://ep:***@broker:5672/gce", "connected": True, "last_error": None,
                              "refused": {"gce.status": "permission"}}
    assert data["spool"] == {"path": "/var/lib/gce/demo/spool", "error": None, "since": None}
    assert data["tasks"] == {"received": 9, "completed": 7, "failed": 1, "malformed": 0, "duplicates": 0,
                             "violations": 0, "in_flight": 1, "unconfirmed_results": 0}
    uep = data["user_endpoints"][0]
    assert {"key", "pid", "state", "reason", "python", "engine", "in_flight"} <= set(uep)
    assert uep["engine"] == ENGINE  # what the engine reported, no key added


def test_an_engine_reports_only_what_it_knows():
    assert EngineStatus().to_dict() == {}
    assert EngineStatus.from_dict({"type": "ThreadPoolEngine", "outstanding": 0, "done": 2, "failed": 0}).to_dict() \
        == {"type": "ThreadPoolEngine", "outstanding": 0, "done": 2, "failed": 0}


def test_a_newer_managers_unknown_fields_are_ignored():
    data = _status().to_dict()
    data["blocks_by_state"] = {"x": 1}
    data["user_endpoints"][0]["cgroup"] = "/sys/fs/cgroup/x"
    data["broker"]["failover"] = ["amqp://b2"]
    data["protocol"] = PROTOCOL + 1
    status = EndpointStatus.from_dict(data)
    assert status.user_endpoints[0].key == "default" and status.protocol == PROTOCOL + 1


def test_missing_fields_take_their_defaults():
    old = {"ok": True, "name": "demo", "state": "running", "pid": 7, "broker": {"connected": True},
           "tasks": {"received": 1}, "user_endpoints": [{"key": "default", "engine": {}}]}
    status = EndpointStatus.from_dict(old)
    assert status.protocol == 0  # a manager from before the protocol had a number
    assert status.tasks == TaskCounts(received=1) and status.broker == LinkStatus(connected=True)
    assert status.user_endpoints == (UepStatus(key="default"),) and status.recent_tasks == ()
    assert status.spool == SpoolStatus() and status.endpoint_id is None and status.uptime is None


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(pid="4242"), "pid"),
    (lambda d: d.update(accepting_tasks="yes"), "accepting_tasks"),
    (lambda d: d["tasks"].update(received=True), "tasks.received"),
    (lambda d: d.update(broker="amqp://u:p@h/"), "broker"),
    (lambda d: d["user_endpoints"][0]["engine"].update(workers_total="4"), "user_endpoints[0].engine.workers_total"),
    (lambda d: d["user_endpoints"][0].update(state=["running"]), "user_endpoints[0].state"),
    (lambda d: d.update(user_endpoints={"default": {}}), "user_endpoints"),
    (lambda d: d["recent_tasks"][0].update(finished_at="yesterday"), "recent_tasks[0].finished_at"),
    (lambda d: d["broker"].update(refused={"gce.results": 3}), "broker.refused.gce.results"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_its_field(change, field):
    data = _status().to_dict()
    change(data)
    with pytest.raises(StatusError) as e:
        EndpointStatus.from_dict(data)
    assert e.value.field == field
    assert str(e.value).startswith(f"field {field!r} should be ")


def test_a_status_that_is_not_an_object_is_refused():
    with pytest.raises(StatusError, match="field 'status' should be an object, not list"):
        EndpointStatus.from_dict([])
