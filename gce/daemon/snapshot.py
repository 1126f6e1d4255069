"""What a running manager says about itself: the status its control socket, `gce status`, `gce list`,
the diagnostic and systemd's STATUS= line read (and, filtered by gce.daemon.public_status, the
broker's status queue)."""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from gce import __version__
from gce.daemon.spool import RESULT, TASK
from gce.transport.urls import redact

if TYPE_CHECKING:
    from gce.daemon.manager import Manager


def snapshot(m: Manager) -> dict[str, Any]:
    """The manager's status now: plain JSON data, what it is and does, with its user endpoints."""
    ueps = []
    for uep in (u for u in (m.uep, *m.ueps.values()) if u is not None):
        ueps.append({"key": uep.key, "pid": uep.pid, "state": uep.state, "reason": uep.reason,
                     "python": uep.python, "engine": uep.engine_status, "in_flight": len(uep.in_flight)})
    refused = m.link.problems()  # fixed words: the broker's copy of the status shows them to submitters
    problems = ([f"not taking tasks: {m.commit.error}"] if m.commit.error else []) + refused
    return {
        "ok": True, "name": m.paths.name, "endpoint_id": m.config.endpoint_id,
        "display_name": m.config.display_name, "state": "degraded" if problems else "running",
        "reason": "; ".join(problems), "public_reason": "; ".join(refused),
        "accepting_tasks": not problems and m.link.connected,
        "spool": {"path": str(m.spool.dir), "error": m.commit.error, "since": m.commit.error_since},
        "pid": os.getpid(),
        "host": socket.gethostname(), "started_at": m.started_at, "uptime": time.time() - m.started_at,
        "gce_version": __version__, "engine_type": m.config.engine.get("type"),
        "broker": {"url": redact(m.config.broker_url), "connected": m.link.connected,
                   "last_error": m.link.last_error, "refused": dict(m.link.refused)},
        "tasks": {**m.counts, "in_flight": sum(1 for e in m.spool.entries.values() if e.kind == TASK),
                  "unconfirmed_results": sum(1 for e in m.spool.entries.values() if e.kind == RESULT)},
        "user_endpoints": ueps,
    }
