"""What gce monitor shows, gathered in one call: ``collect(names, previous) -> Snapshot``.

collect asks each endpoint's manager through gce.daemon.client (the only way into gce.daemon) and
folds the answer into the previous snapshot: task events into one row per task, the task counters
into rates, and how long a manager has not answered. It imports neither textual nor rich, so that
--once, --json and --plain use it as the screens do, and the screens run it in a thread worker.

A status is kept as its JSON form (``EndpointStatus.to_dict()``, what `gce status --json` prints):
the screens read the fields a newer manager adds (blocks, nodes) when they are there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from gce.errors import GceError, PermissionDenied

if TYPE_CHECKING:
    from gce.config.paths import EndpointPaths

RATE_SAMPLES = 60  # the sparkline's points (one per refresh)
TASK_ROWS = 500  # the tasks kept per endpoint: the screen pages them, memory stays bounded
FAILED_WINDOW = 300.0  # "failed in the last 5 minutes"


@dataclass(frozen=True)
class EndpointView:
    """One endpoint as last seen: STATE is running, degraded, stopped, failed, unreadable or
    "not answering" (its manager holds its lock but did not answer within the refresh)."""

    name: str
    state: str
    reason: str = ""
    status: dict[str, Any] | None = None  # the manager's last answer (kept while it does not answer)
    tasks: tuple[dict[str, Any], ...] = ()  # newest first: one per task, its latest event
    cursor: int = 0
    rates: tuple[tuple[float, float], ...] = ()  # (tasks in, tasks out) per second, oldest first
    rss: dict[str, int] = field(default_factory=dict)  # user endpoint key -> resident bytes
    silent_since: float | None = None
    seen_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "reason": self.reason, "status": self.status,
                "tasks": list(self.tasks), "rates": [list(r) for r in self.rates], "rss": dict(self.rss),
                "silent_since": self.silent_since, "seen_at": self.seen_at}


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    endpoints: tuple[EndpointView, ...] = ()

    def endpoint(self, name: str) -> EndpointView | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"taken_at": self.taken_at, "endpoints": [e.to_dict() for e in self.endpoints]}


def collect(targets: Mapping[str, EndpointPaths], previous: Snapshot | None = None, timeout: float = 2.0,
            now: float | None = None) -> Snapshot:
    """Ask every endpoint of TARGETS ({label: paths}, gce.tui.where), each within TIMEOUT
    seconds, and fold in PREVIOUS."""
    now = time.time() if now is None else now
    views = []
    for label, paths in targets.items():
        before = previous.endpoint(label) if previous else None
        views.append(_one(label, paths, before, timeout, now))
    return Snapshot(now, tuple(views))


def _one(label: str, paths: EndpointPaths, before: EndpointView | None, timeout: float, now: float) -> EndpointView:
    from gce.daemon.client import EndpointClient

    view = before or EndpointView(label, "")
    client = EndpointClient(paths, timeout=timeout)
    why = ""
    try:
        live = client.liveness()
    except (PermissionDenied, OSError) as e:
        live, why = None, getattr(e, "why", "") or getattr(e, "strerror", "") or str(e)
    if (live is None or live.state != "running") and not os.access(paths.state_dir, os.R_OK | os.X_OK):
        # Another account's endpoint (a multi-user one, which answers each user about their own
        # work): its files do not say whether it runs, its control socket does.
        try:
            status, events, cursor = _ask(client, view.cursor)
        except (GceError, OSError):
            return replace(view, state="unreadable", reason=why if live is None else live.reason, status=None)
        return _answered(view, status, events, cursor, now)
    if live is None:
        return replace(view, state="unreadable", reason=why)
    if live.state != "running":
        # a stopped endpoint says so: no figures of its last run pass for today's
        return replace(view, state=live.state, reason=live.reason or "", status=None, silent_since=None, rates=())
    try:
        status, events, cursor = _ask(client, view.cursor)
    except (GceError, OSError) as e:
        return replace(view, state="not answering", reason=str(e),
                       silent_since=view.silent_since or now)
    return _answered(view, status, events, cursor, now)


def _answered(view: EndpointView, status: dict[str, Any], events: list[dict[str, Any]], cursor: int,
              now: float) -> EndpointView:
    rates = view.rates
    if view.status is not None and view.seen_at is not None and now > view.seen_at:
        rates = (rates + (_rate(view.status, status, now - view.seen_at),))[-RATE_SAMPLES:]
    return replace(view, state=str(status.get("state") or "running"), reason=str(status.get("reason") or ""),
                   status=status, tasks=fold(view.tasks, events), cursor=cursor, rates=rates,
                   rss=_rss(status), silent_since=None, seen_at=now)


def _ask(client: Any, cursor: int) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """The manager's status, the task events after CURSOR (oldest first), and the next cursor."""
    from gce.daemon.client import ManagerError

    try:
        snap = client.snapshot(cursor)
    except ManagerError as e:
        if e.code != "UNKNOWN_COMMAND":
            raise
    else:
        return snap.status.to_dict(), [e.to_dict() for e in snap.events], snap.cursor
    # A manager that keeps no task events: the results it remembers, as events.
    status = client.status().to_dict()
    events = [{"task_id": t["task_id"], "event": t["status"], "code": t["code"], "message": t["message"],
               "at": t["finished_at"]} for t in reversed(status.get("recent_tasks") or [])]
    return status, events, cursor


def fold(tasks: tuple[dict[str, Any], ...], events: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """TASKS (newest first, one per task) with EVENTS (oldest first) applied: a task's row takes
    its latest event's state and keeps what earlier events said that the later one does not."""
    rows = {t["task_id"]: t for t in reversed(tasks)}
    for event in events:
        tid = event.get("task_id")
        if not tid:
            continue
        old = rows.pop(tid, {})
        row = {**old, **{k: v for k, v in event.items() if v not in (None, "")}}
        row["state"] = event.get("event") or old.get("state", "")
        rows[tid] = row
    return tuple(reversed(list(rows.values())[-TASK_ROWS:]))


def _rate(old: dict[str, Any], new: dict[str, Any], seconds: float) -> tuple[float, float]:
    def count(status: dict[str, Any], *keys: str) -> int:
        tasks = status.get("tasks") or {}
        return sum(int(tasks.get(k) or 0) for k in keys)

    got = count(new, "received") - count(old, "received")
    out = count(new, "completed", "failed") - count(old, "completed", "failed")
    return max(got, 0) / seconds, max(out, 0) / seconds


def failed_lately(view: EndpointView, now: float) -> int:
    return sum(1 for t in view.tasks if t.get("state") == "failed" and (t.get("at") or 0) >= now - FAILED_WINDOW)


def _rss(status: dict[str, Any]) -> dict[str, int]:
    """Resident memory of each user endpoint process this account may look at."""
    import psutil

    found = {}
    for uep in status.get("user_endpoints") or []:
        pid = uep.get("pid")
        if not pid or pid == os.getpid():
            continue
        try:
            found[str(uep.get("key"))] = psutil.Process(pid).memory_info().rss
        except (psutil.Error, OSError):
            continue  # gone, or another user's: the column says "-"
    return found
