"""What the broker-published status tells an endpoint's submitters, and nothing more.

The manager's full status (`Manager.status`) answers the local control socket, where
SO_PEERCRED decides who sees what. The copy on the broker is read by every user allowed to
submit to the endpoint, so it is built from a list of fields, never by removing the secret
ones: user-endpoint keys (they hold local account names), pids, uids, failure reasons of
other users, the host name, the broker URL and its errors all stay local.
"""

from __future__ import annotations

from typing import Any

from gce.daemon.status import EndpointStatus


def public_view(status: EndpointStatus) -> dict[str, Any]:
    """The fields of STATUS a submitter needs to decide whether to send tasks here."""
    return {
        "endpoint_id": status.endpoint_id,
        "display_name": status.display_name,
        "state": status.state or None,
        # The manager's own say: one that stopped taking tasks (a full spool disk, publishing
        # refused, the broker away) sets it False.
        "accepting_tasks": status.accepting_tasks,
        # Fixed words the manager chose for submitters (e.g. "cannot publish results (permission)"),
        # never its local reason, which may name paths or users.
        "reason": status.public_reason or None,
        "gce_version": status.gce_version or None,
        "engine_type": status.engine_type,
        # A count over all users, so a submitter can judge the load; whose tasks stays local.
        "tasks_in_flight": status.tasks.in_flight,
    }
