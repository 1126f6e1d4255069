"""What the broker-published status tells an endpoint's submitters, and nothing more.

The manager's full status (`Manager.status`) answers the local control socket, where
SO_PEERCRED decides who sees what. The copy on the broker is read by every user allowed to
submit to the endpoint, so it is built from a list of fields, never by removing the secret
ones: user-endpoint keys (they hold local account names), pids, uids, failure reasons of
other users, the host name, the broker URL and its errors all stay local.

A local user of a multi-user endpoint who asks its control socket sees `peer_view`: their own
user endpoints and tasks, and of the endpoint what concerns all its users.
"""

from __future__ import annotations

import functools
import platform
from typing import Any, Callable

from gce.daemon.status import EndpointStatus, LinkStatus, SpoolStatus
from gce.transport import bundles


@functools.lru_cache(maxsize=1)
def cloudpickle_version() -> str | None:
    """The installed cloudpickle's version, read from its metadata: root's manager never imports it."""
    try:
        from importlib.metadata import version

        return version("cloudpickle")
    except Exception:  # not installed as a distribution: say nothing rather than guess
        return None


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
        # What the SDK compares with its own before the first task (gce.sdk.versions): the Python and
        # cloudpickle of this interpreter, which the user endpoints and local workers run by default.
        "python_version": platform.python_version(),
        "cloudpickle_version": cloudpickle_version(),
        "engine_type": status.engine_type,
        # A count over all users, so a submitter can judge the load; whose tasks stays local.
        "tasks_in_flight": status.tasks.in_flight,
        # What this manager reads besides one task per message: an Executor that sees it here,
        # before its first task, sends a burst as bundles from the start (gce.transport.bundles).
        "reads": [bundles.TASK_BUNDLES_HEADER],
    }


def peer_view(status: EndpointStatus, uid: int, owner_of: Callable[[str], int | None],
              task_uid: Callable[[str], int | None]) -> EndpointStatus:
    """STATUS as the local user UID sees it on a multi-user endpoint's control socket: their own
    user endpoints (OWNER_OF a key gives its account's uid) and recent tasks (TASK_UID), and of the
    endpoint as a whole what any of its users may know. Built from a list of fields, like
    public_view: the spool's path, the manager's local reason and other users' lines stay out;
    the task counts are over all users (counts only, nobody's names)."""
    reason = status.public_reason or ("not taking tasks: the endpoint cannot write its spool"
                                      if status.spool.error else "")
    return EndpointStatus(
        name=status.name, endpoint_id=status.endpoint_id, display_name=status.display_name, state=status.state,
        reason=reason, public_reason=status.public_reason, accepting_tasks=status.accepting_tasks,
        spool=SpoolStatus(error="the spool cannot be written" if status.spool.error else None,
                          since=status.spool.since),
        pid=status.pid, host=status.host, started_at=status.started_at, uptime=status.uptime,
        gce_version=status.gce_version, engine_type=status.engine_type,
        broker=LinkStatus(status.broker.url, status.broker.connected, status.broker.last_error,
                          dict(status.broker.refused)),
        tasks=status.tasks,
        user_endpoints=tuple(u for u in status.user_endpoints if owner_of(u.key) == uid),
        recent_tasks=tuple(t for t in status.recent_tasks if task_uid(t.task_id) == uid),
        protocol=status.protocol,
        blocks_failing=status.blocks_failing,  # over all users: a count tells whose it is to none
    )
