"""What the broker-published status tells an endpoint's submitters, and nothing more.

The manager's full status (`Manager.status`) answers the local control socket, where
SO_PEERCRED decides who sees what. The copy on the broker is read by every user allowed to
submit to the endpoint, so it is built from a list of fields, never by removing the secret
ones: user-endpoint keys (they hold local account names), pids, uids, failure reasons of
other users, the host name, the broker URL and its errors all stay local.
"""

from __future__ import annotations

from typing import Any


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def public_view(status: dict[str, Any]) -> dict[str, Any]:
    """The fields of STATUS a submitter needs to decide whether to send tasks here.

    ``accepting_tasks`` is the manager's own say when its status has that key (a manager that
    stopped taking tasks, e.g. on a full spool disk, sets it False); otherwise it follows the
    state and the broker link.
    """
    broker = status.get("broker") if isinstance(status.get("broker"), dict) else {}
    tasks = status.get("tasks") if isinstance(status.get("tasks"), dict) else {}
    state = _text(status.get("state"))
    accepting = status.get("accepting_tasks")
    if not isinstance(accepting, bool):
        accepting = state == "running" and broker.get("connected") is True
    in_flight = tasks.get("in_flight")
    return {
        "endpoint_id": _text(status.get("endpoint_id")),
        "display_name": _text(status.get("display_name")),
        "state": state,
        "accepting_tasks": accepting,
        # Fixed words the manager chose for submitters (e.g. "cannot publish results (permission)"),
        # never its local reason, which may name paths or users.
        "reason": _text(status.get("public_reason")) or None,
        "gce_version": _text(status.get("gce_version")),
        "engine_type": _text(status.get("engine_type")),
        # A count over all users, so a submitter can judge the load; whose tasks stays local.
        "tasks_in_flight": in_flight if isinstance(in_flight, int) and not isinstance(in_flight, bool) else None,
    }
