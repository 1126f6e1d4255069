"""What a running manager says about itself, taken from the manager as it is now: the typed
status (gce.daemon.status) its control socket, `gce status`, `gce list`, the diagnostic and
systemd's STATUS= line read (and, filtered by gce.daemon.public_status, the broker's status queue).

It reads the manager through the small Protocol below, so that this module does not import the
manager (which imports it).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Protocol

from gce import __version__
from gce.daemon.spool import RESULT, TASK
from gce.daemon.status import (EndpointStatus, EngineStatus, LinkStatus, SpoolStatus, StatusError, TaskCounts,
                               UepStatus)
from gce.transport.urls import redact


class _Uep(Protocol):
    key: str
    pid: int | None
    state: Any  # a word, or a str Enum whose value is that word
    reason: str
    python: str
    engine_status: dict[str, Any]
    in_flight: dict[str, int]
    queued: list[str]
    started_at: float

    def idle_for(self) -> float: ...


class _Manager(Protocol):
    """What the snapshot reads of gce.daemon.manager.Manager."""

    paths: Any  # EndpointPaths: .name
    config: Any  # EndpointConfig: endpoint_id, display_name, broker_url, engine
    link: Any  # EndpointLink: connected, last_error, refused, problems()
    commit: Any  # GroupCommit: error, error_since
    spool: Any  # Spool: dir, entries
    outbox: Any  # Outbox: recent
    started_at: float

    @property
    def uep(self) -> Any: ...  # _Uep | None: a personal endpoint's one UEP

    @property
    def counts(self) -> Mapping[str, int]: ...

    @property
    def ueps(self) -> Mapping[Any, Any]: ...  # key -> _Uep


def _word(state: object) -> str:
    return str(state.value) if isinstance(state, Enum) else str(state)


def _engine(uep: _Uep) -> EngineStatus:
    # A UEP runs its user's code: what it reports is read, never trusted to be well formed. One
    # that is not spoils its own line of the status, not the status of the whole endpoint.
    try:
        return EngineStatus.from_dict(uep.engine_status or {})
    except StatusError as e:
        return EngineStatus(error=f"the user endpoint reported an unreadable engine status: {e}")


def uep_status(uep: _Uep) -> UepStatus:
    return UepStatus(
        key=uep.key, pid=uep.pid, state=_word(uep.state), reason=uep.reason, python=uep.python,
        in_flight=len(uep.in_flight), queued=len(uep.queued), started_at=uep.started_at or None,
        idle_for=uep.idle_for(), engine=_engine(uep),
    )


def snapshot(m: _Manager) -> EndpointStatus:
    """The manager's status now: what it is and does, with its user endpoints."""
    ueps: Iterable[_Uep] = (u for u in (m.uep, *m.ueps.values()) if u is not None)
    refused = m.link.problems()  # fixed words: the broker's copy of the status shows them to submitters
    problems = ([f"not taking tasks: {m.commit.error}"] if m.commit.error else []) + refused
    entries = m.spool.entries.values()
    return EndpointStatus(
        name=m.paths.name, endpoint_id=m.config.endpoint_id, display_name=m.config.display_name,
        state="degraded" if problems else "running", reason="; ".join(problems), public_reason="; ".join(refused),
        accepting_tasks=not problems and m.link.connected,
        spool=SpoolStatus(str(m.spool.dir), m.commit.error, m.commit.error_since),
        pid=os.getpid(), host=socket.gethostname(), started_at=m.started_at, uptime=time.time() - m.started_at,
        gce_version=__version__, engine_type=m.config.engine.get("type"),
        broker=LinkStatus(redact(m.config.broker_url), m.link.connected, m.link.last_error, dict(m.link.refused)),
        tasks=TaskCounts(**{k: v for k, v in m.counts.items() if k in TaskCounts.__dataclass_fields__},
                         in_flight=sum(1 for e in entries if e.kind == TASK),
                         unconfirmed_results=sum(1 for e in entries if e.kind == RESULT)),
        user_endpoints=tuple(uep_status(u) for u in ueps),
        recent_tasks=tuple(m.outbox.recent),
    )
