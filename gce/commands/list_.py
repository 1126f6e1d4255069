"""gce list: every configured endpoint, whether it runs, and why not."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from gce import output
from gce.config.paths import EndpointPaths, config_root, endpoint_paths, list_endpoint_names
from gce.errors import GceError, PermissionDenied

COLUMNS = ("NAME", "ENDPOINT ID", "STATE", "PID", "HOST", "ENGINE", "UPTIME")
CONTROL_TIMEOUT = 2.0


def summarize(paths: EndpointPaths, now: float) -> dict[str, Any]:
    """One endpoint's line: its id and engine from its files, its state from its lock."""
    from gce.config import model
    from gce.daemon.client import EndpointClient

    try:
        live = EndpointClient(paths).liveness()
    except PermissionDenied as e:
        return _unreadable(paths, e)
    running = live.state == "running"
    row: dict[str, Any] = {
        "name": paths.name, "endpoint_id": None, "display_name": None, "state": live.state,
        "reason": live.reason, "pid": live.pid, "host": live.host or None, "engine_type": None,
        "started_at": live.started_at,
        "uptime": now - live.started_at if running and live.started_at else None,
        "config_error": None,
    }
    if running and not live.reason:  # here: the manager says whether it takes tasks
        row.update(_degraded(paths))
    try:
        config = model.load(paths)
        row.update(endpoint_id=config.endpoint_id, display_name=config.display_name,
                   engine_type=config.engine.get("type"))
    except PermissionDenied as e:
        return _unreadable(paths, e)
    except GceError as e:
        row["config_error"] = e.why or str(e)
        try:
            row["endpoint_id"] = model.read_endpoint_id(paths)
        except GceError:
            pass  # already reported through config_error
    return row


def _unreadable(paths: EndpointPaths, e: PermissionDenied) -> dict[str, Any]:
    """The row of an endpoint whose files this user may not read: the others still show."""
    return {"name": paths.name, "endpoint_id": None, "display_name": None, "state": "unreadable",
            "reason": e.why, "pid": None, "host": None, "engine_type": None, "started_at": None,
            "uptime": None, "config_error": None}


def _degraded(paths: EndpointPaths) -> dict[str, Any]:
    """state and reason of a running endpoint that does not take tasks (a full spool disk) or whose one
    user endpoint's blocks keep failing; and its user endpoints whose blocks keep failing (those this
    user may see: {"uep", "reason"} each, and how many more of other users)."""
    from gce.daemon.client import EndpointClient

    try:
        status = EndpointClient(paths, timeout=CONTROL_TIMEOUT).status()
    except (GceError, OSError):
        return {}  # `gce status NAME` says why it does not answer
    failing = [{"uep": u.key, "reason": u.shown_reason()} for u in status.user_endpoints if u.blocks_failing]
    row: dict[str, Any] = {"blocks_failing": failing}
    if status.blocks_failing > len(failing):
        row["others_blocks_failing"] = status.blocks_failing - len(failing)
    if status.state == "degraded":
        row.update(state="degraded", reason=status.reason)
    return row


def state_cell(row: dict[str, Any]) -> str:
    if row["config_error"] and row["state"] not in ("running", "degraded"):
        return "invalid config"
    return str(row["state"])


def note(row: dict[str, Any]) -> str | None:
    """Why the endpoint is in its state, when that needs saying (printed under the table)."""
    if row["config_error"]:
        now = "now " if row["state"] in ("running", "degraded") else ""
        return f"{row['name']}: config.yaml is {now}invalid: {row['config_error']}"
    if row["state"] in ("failed", "degraded", "unreadable") and row["reason"]:
        return f"{row['name']}: {row['state']}: {row['reason']}"
    return None


def failing_notes(row: dict[str, Any]) -> list[str]:
    """A line per user endpoint whose blocks keep failing, unless the endpoint's own note says it."""
    said = row["reason"] if row["state"] == "degraded" else ""
    lines = [f"{row['name']}: user endpoint {f['uep']}: blocks failing: {f['reason']}"
             for f in row.get("blocks_failing") or [] if f["reason"] not in said]
    if row.get("others_blocks_failing"):
        lines.append(f"{row['name']}: {row['others_blocks_failing']} user endpoint(s) of other users: blocks failing")
    return lines


def table_row(row: dict[str, Any]) -> list[Any]:
    engine = row["engine_type"]
    return [
        row["name"], row["endpoint_id"], state_cell(row), row["pid"], row["host"],
        output.SHORT_ENGINE.get(engine, engine), output.duration(row["uptime"]) if row["uptime"] is not None else None,
    ]


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array, one object per endpoint.")] = False,
) -> None:
    """List the endpoints and their states.

    For each endpoint configured here: its id, whether it runs (and where), or why it failed,
    or why it runs degraded (not taking tasks), or why its files cannot be read (unreadable).
    """
    now = time.time()
    rows = [summarize(endpoint_paths(name), now) for name in list_endpoint_names()]
    if as_json:
        output.json(rows)
        return
    if not rows:
        output.line(f"no endpoints are configured in {config_root()}")
        output.hint("gce configure NAME creates one")
        return
    output.table(COLUMNS, (table_row(r) for r in rows), no_wrap=("ENDPOINT ID",))
    notes = [n for n in map(note, rows) if n] + [n for r in rows for n in failing_notes(r)]
    if notes:
        output.line("")
        for n in notes:
            output.line(n)
    failing = [r["name"] for r in rows if r.get("blocks_failing")]
    if failing:
        name = failing[0] if len(failing) == 1 else "NAME"
        output.hint(f"fix the engine's worker_init or provider (gce status {name} shows the last block's output), "
                    f"then: gce resume {name}")
