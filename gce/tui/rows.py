"""The rows of each screen, from a Snapshot: (row key, cells) per row, cells as plain strings.

The screens, --once's tables and --plain's lines all show these, so they cannot disagree. Every
cell that a user controls goes through gce.tui.text.literal.
"""

from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

from gce.tui.collect import EndpointView, Snapshot, failed_lately
from gce import output
from gce.tui.text import literal

Row = tuple[str, tuple[str, ...]]

ENDPOINTS = ("NAME", "STATE", "BROKER", "HOST", "ENGINE", "UPTIME", "GCE", "IN/s", "OUT/s", "OUTSTANDING",
             "FAILED 5m")
USER_ENDPOINTS = ("ENDPOINT", "USER ENDPOINT", "LOCAL USER", "IDENTITY", "PID", "STATE", "IDLE / STOPS IN", "DONE",
                  "FAILED", "RSS")
BLOCKS = ("ENDPOINT", "USER ENDPOINT", "BLOCK", "JOB", "PROVIDER", "STATE", "SCHEDULER", "AGE", "WALLTIME LEFT",
          "WORKERS", "REASON")
WORKERS = ("ENDPOINT", "USER ENDPOINT", "HOST", "BLOCK", "BUSY", "IDLE", "RUNNING", "HEARTBEAT")
TASKS = ("TASK", "FUNCTION", "SUBMITTER", "STATE", "QUEUED FOR", "RAN FOR", "CODE", "ENDPOINT", "MESSAGE")


def activity(rates: Sequence[tuple[float, float]]) -> list[float]:
    """The sparkline of tasks in and out per second; empty while nothing moves, since textual
    draws a flat series as full bars and an idle endpoint must not look fully loaded."""
    total = [a + b for a, b in rates]
    return total if any(total) else []


def duration(seconds: Any) -> str:
    """'4.5s', '45s', '12m03s', '5h07m', '3d04h' ('-' when unknown): short enough for 80 columns."""
    return output.duration(seconds, sep="", tenths_below=10)


def size(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return "-"


def state_of(view: EndpointView, now: float) -> str:
    if view.state == "not answering" and view.silent_since is not None:
        return f"not answering since {time.strftime('%H:%M:%S', time.localtime(view.silent_since))}"
    if view.state in ("failed", "degraded", "unreadable") and view.reason:
        return f"{view.state}: {view.reason}"
    return view.state


def _broker(status: dict[str, Any]) -> str:
    link = status.get("broker") or {}
    if link.get("connected"):
        return "connected"
    return "down" + (f": {link['last_error']}" if link.get("last_error") else "")


def endpoint_rows(snap: Snapshot) -> list[Row]:
    rows = []
    for view in snap.endpoints:
        s = view.status if view.state in ("running", "degraded", "not answering") else None
        inn, out = view.rates[-1] if view.rates else (None, None)
        if s is None:
            cells: list[Any] = [view.name, state_of(view, snap.taken_at)] + ["-"] * 9
        else:
            engine = str(s.get("engine_type") or "")
            cells = [view.name, state_of(view, snap.taken_at), _broker(s), s.get("host"),
                     output.SHORT_ENGINE.get(engine, engine), duration(s.get("uptime")), s.get("gce_version"),
                     "-" if inn is None else f"{inn:.1f}", "-" if out is None else f"{out:.1f}",
                     str((s.get("tasks") or {}).get("in_flight", "-")), str(failed_lately(view, snap.taken_at))]
        rows.append((view.name, tuple(literal(c) for c in cells)))
    return rows


def ueps(snap: Snapshot, endpoint: str | None = None) -> Iterator[tuple[EndpointView, dict[str, Any]]]:
    for view in snap.endpoints:
        if view.status is not None and endpoint in (None, view.name):
            for uep in view.status.get("user_endpoints") or []:
                yield view, uep


def _identity(view: EndpointView, key: str) -> str:
    """The broker identity that last sent this user endpoint a task (the status does not name it)."""
    return next((t.get("submitter", "") for t in view.tasks if t.get("uep") == key and t.get("submitter")), "")


def _short(breaker: dict[str, Any]) -> str:
    from gce.daemon.client import BreakerStatus

    return (BreakerStatus.from_dict(breaker) or BreakerStatus()).short_reason()


def uep_rows(snap: Snapshot, endpoint: str | None = None) -> list[Row]:
    rows = []
    for view, uep in ueps(snap, endpoint):
        key = str(uep.get("key") or "")
        engine = uep.get("engine") or {}
        state = uep.get("state") or ""
        breaker = engine.get("breaker")
        if isinstance(breaker, dict):  # the process runs, but its engine gave up on its failing blocks
            state = f"blocks failing: {_short(breaker)}"
        elif uep.get("reason") and state != "running":
            state = f"{state}: {uep['reason']}"
        user = key.split("/", 1)[0] if "/" in key else "-"
        idle = duration(uep.get("idle_for"))
        if uep.get("stops_in") is not None:  # a multi-user endpoint stops an idle one after its idle_timeout
            idle = f"{idle} / {duration(uep['stops_in'])}"
        cells = [view.name, key, user, _identity(view, key), uep.get("pid"), state, idle,
                 engine.get("done"), engine.get("failed"), size(view.rss.get(key))]
        rows.append((f"{view.name}/{key}", tuple(literal(c) for c in cells)))
    return rows


def block_rows(snap: Snapshot, endpoint: str | None = None) -> list[Row]:
    rows = []
    for view, uep in ueps(snap, endpoint):
        key = str(uep.get("key") or "")
        engine = uep.get("engine") or {}
        blocks = engine.get("block_list")
        if blocks is None:  # a manager that reports only each block's state
            blocks = [{"block_id": b, "state": s} for b, s in (engine.get("block_states") or {}).items()]
        for b in blocks:
            age = snap.taken_at - b["submitted_at"] if b.get("submitted_at") else None
            cells = [view.name, key, b.get("block_id"), b.get("job_id"), b.get("provider"), b.get("state"),
                     b.get("raw_state"), duration(age), duration(b.get("walltime_left")), b.get("workers"),
                     b.get("reason")]
            rows.append((f"{view.name}/{key}/{b.get('block_id')}", tuple(literal(c) for c in cells)))
    return rows


def worker_rows(snap: Snapshot, endpoint: str | None = None) -> list[Row]:
    rows = []
    for view, uep in ueps(snap, endpoint):
        key = str(uep.get("key") or "")
        engine = uep.get("engine") or {}
        nodes = engine.get("nodes")
        if nodes is None:  # a manager that reports only the counts
            total, idle = engine.get("workers_total"), engine.get("workers_idle")
            busy = total - idle if isinstance(total, int) and isinstance(idle, int) else None
            nodes = [{"manager": "", "host": "-", "busy": busy, "idle": idle}] if total is not None else []
        by_task = {t["task_id"]: t for t in view.tasks}
        for n in nodes:
            running = []
            for t in n.get("tasks") or []:
                known = by_task.get(t.get("task_id"), {})
                since = snap.taken_at - t["started_at"] if t.get("started_at") else None
                running.append(f"{known.get('function_name') or t.get('task_id', '')[:8]}"
                               f"({known.get('submitter') or '?'}, {duration(since)})")
            beat = snap.taken_at - n["last_heartbeat"] if n.get("last_heartbeat") else None
            cells = [view.name, key, n.get("host"), n.get("block_id"), n.get("busy"), n.get("idle"),
                     ", ".join(running), f"{duration(beat)} ago" if beat is not None else "-"]
            rows.append((f"{view.name}/{key}/{n.get('manager') or n.get('host')}", tuple(literal(c) for c in cells)))
    return rows


def task_rows(snap: Snapshot, endpoint: str | None = None, text: str = "") -> list[Row]:
    """The tasks, newest first; TEXT keeps those whose cells contain it (case-insensitive)."""
    rows = []
    wanted = text.lower()
    for view in snap.endpoints:
        if endpoint not in (None, view.name):
            continue
        for t in view.tasks:
            cells = tuple(literal(c) for c in (
                t.get("task_id"), t.get("function_name"), t.get("submitter"), t.get("state"),
                duration(t.get("queued_for")), duration(t.get("ran_for")), t.get("code"), view.name,
                t.get("message")))
            if not wanted or any(wanted in c.lower() for c in cells):
                rows.append((f"{view.name}/{t['task_id']}", cells))
    return rows


def banner(snap: Snapshot) -> list[str]:
    """What needs saying above every screen: a broker link that is down, version skew."""
    notes = []
    for view in snap.endpoints:
        s = view.status
        if s is None or view.state == "not answering":
            continue
        if not (s.get("broker") or {}).get("connected"):
            notes.append(f"{view.name}: broker link {_broker(s)}")
        mine = s.get("gce_version")
        for uep in s.get("user_endpoints") or []:
            versions = (uep.get("engine") or {}).get("versions") or {}
            if versions.get("gce") and mine and versions["gce"] != mine:
                notes.append(f"{view.name}: user endpoint {uep.get('key')} runs gce {versions['gce']}, "
                             f"the manager {mine}")
    return [literal(n) for n in notes]
