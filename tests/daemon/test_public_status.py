"""The status an endpoint publishes on the broker: what a submitter needs, none of the rest."""

from __future__ import annotations

import json
import platform
import uuid

import cloudpickle

from gce.daemon.public_status import public_view
from gce.daemon.status import EndpointStatus

PUBLIC_KEYS = {"endpoint_id", "display_name", "state", "accepting_tasks", "gce_version", "engine_type",
               "tasks_in_flight", "reason", "python_version", "cloudpickle_version", "reads"}


def _full_status(**changes) -> EndpointStatus:
    """Shaped like Manager.status() of a multi-user endpoint, with something to hide everywhere."""
    status = {
        "ok": True, "name": "login-node", "endpoint_id": str(uuid.uuid4()), "display_name": "Cluster A",
        "state": "running", "accepting_tasks": True, "pid": 4242, "host": "login07.secret-site.example", "started_at": 1.0, "uptime": 2.0,
        "gce_version": "1.2.3", "engine_type": "GlobusComputeEngine",
        "broker": {"url": "amqp://ep-login:***@broker.internal:5672/gce", "connected": True,
                   "last_error": "ACCESS_REFUSED for ep-login"},
        "tasks": {"received": 9, "completed": 5, "failed": 1, "malformed": 0, "duplicates": 0, "violations": 1,
                  "in_flight": 3, "unconfirmed_results": 0},
        "user_endpoints": [
            {"key": "bobsmith:1001:abc", "pid": 5151, "state": "fatal", "uid": 1001,
             "reason": "cannot write /home/bobsmith/.gce: Permission denied", "python": "3.11", "engine": {},
             "in_flight": 2},
        ],
    }
    status.update(changes)
    return EndpointStatus.from_dict(status)


def test_public_view_keeps_only_what_submitters_need():
    full = _full_status()
    view = public_view(full)
    assert set(view) == PUBLIC_KEYS
    assert view == {"endpoint_id": full.endpoint_id, "display_name": "Cluster A", "state": "running",
                    "accepting_tasks": True, "gce_version": "1.2.3", "engine_type": "GlobusComputeEngine",
                    "tasks_in_flight": 3, "reason": None, "python_version": platform.python_version(),
                    "cloudpickle_version": cloudpickle.__version__, "reads": ["task-bundles"]}
    text = json.dumps(view)
    for secret in ("bobsmith", "1001", "5151", "4242", "login07", "broker.internal", "ep-login", "Permission denied",
                   "login-node"):
        assert secret not in text, secret


def test_accepting_tasks_is_the_managers_say():
    assert public_view(_full_status(accepting_tasks=False))["accepting_tasks"] is False
    assert public_view(_full_status(accepting_tasks=True))["accepting_tasks"] is True


def test_a_degraded_endpoint_shows_only_its_public_reason():
    view = public_view(_full_status(state="degraded", accepting_tasks=False,
                                    reason="not taking tasks: /var/lib/gce/login-node/spool is full",
                                    public_reason="cannot publish results (permission)"))
    assert view["state"] == "degraded" and view["reason"] == "cannot publish results (permission)"
    assert "/var/lib" not in json.dumps(view)


def test_an_empty_status_gives_every_public_key():
    view = public_view(EndpointStatus.from_dict({}))
    assert set(view) == PUBLIC_KEYS
    assert view["endpoint_id"] is None and view["state"] is None and view["accepting_tasks"] is False
