"""gce status: what a running endpoint is doing, asked of the endpoint itself.

Exit codes follow the LSB for init scripts: 0 running, 3 not running (stopped or failed),
4 status unknown (the manager did not report it); and 150 (of the LSB's application range
150-199) running but degraded: not taking tasks, for a reason the manager gives (its spool's
disk is full, say). No such endpoint is 78, as from every other command: LSB has no code that
means it for both status and start/stop (4 is "insufficient privilege" for those).
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg, own_or_shared_paths
from gce.errors import GceError

LSB_NOT_RUNNING = 3
LSB_UNKNOWN = 4
LSB_DEGRADED = 150
UEP_COLUMNS = ("USER ENDPOINT", "PID", "STATE", "BLOCKS", "MANAGERS", "WORKERS", "IDLE",
               "OUTSTANDING", "RUNNING", "DONE", "FAILED")
_TASK_COUNTS = (("received", "received"), ("completed", "completed"), ("failed", "failed"),
                ("in_flight", "in flight"), ("unconfirmed_results", "results awaiting the broker's confirmation"))


class Format(str, enum.Enum):
    text = "text"
    json = "json"
    openmetrics = "openmetrics"


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def status_fields(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The manager's status reply as (label, text) pairs; missing keys are left out."""
    fields: list[tuple[str, str]] = []
    if data.get("endpoint_id"):
        fields.append(("endpoint id", str(data["endpoint_id"])))
    if data.get("pid"):
        fields.append(("pid", f"{data['pid']} on {data['host']}" if data.get("host") else str(data["pid"])))
    if isinstance(data.get("uptime"), (int, float)):
        fields.append(("uptime", output.duration(data["uptime"])))
    if data.get("gce_version"):
        fields.append(("gce version", str(data["gce_version"])))
    broker = data.get("broker")
    if isinstance(broker, dict) and broker.get("url"):
        if broker.get("connected"):
            state = "connected"
        else:
            state = "not connected" + (f": {broker['last_error']}" if broker.get("last_error") else "")
        fields.append(("broker", f"{broker['url']} ({state})"))
    if data.get("engine_type"):
        fields.append(("engine", str(data["engine_type"])))
    spool = data.get("spool")
    if isinstance(spool, dict) and spool.get("error"):
        fields.append(("spool", f"{spool.get('path')} (cannot be written: {spool['error']})"))
    audit = data.get("audit")
    if isinstance(audit, dict) and (audit.get("error") or audit.get("lost")):
        trouble = [f"cannot be written: {audit['error']}" if audit.get("error") else "",
                   f"{audit.get('waiting')} lines waiting" if audit.get("waiting") else "",
                   f"{audit.get('lost')} lines lost" if audit.get("lost") else ""]
        fields.append(("audit", f"{audit.get('path')} ({', '.join(t for t in trouble if t)})"))
    tasks = data.get("tasks")
    if isinstance(tasks, dict):
        counts = [f"{tasks[k]} {label}" for k, label in _TASK_COUNTS if k in tasks]
        if counts:
            fields.append(("tasks", ", ".join(counts)))
    return fields


def _breaker(uep: Any) -> dict[str, Any] | None:
    """A user endpoint's open breaker (its blocks kept failing), or None."""
    breaker = _get(_get(uep, "engine"), "breaker")
    return breaker if isinstance(breaker, dict) else None


def breaker_lines(key: str, breaker: dict[str, Any]) -> list[str]:
    """What people read of a user endpoint whose blocks kept failing: why, the last block, its output."""
    from gce.daemon.client import BreakerStatus

    b = BreakerStatus.from_dict(breaker) or BreakerStatus()
    lines = [f"user endpoint {key}: blocks failing: {b.short_reason()}"]
    job = f" (job {b.job_id})" if b.job_id else ""
    facts = [f"exit code {b.exit_code}" if b.exit_code is not None else "",
             f"scheduler state {b.raw_state}" + (f" ({b.scheduler_reason})" if b.scheduler_reason else "")
             if b.raw_state else "",
             f"{b.failures} failed in a row" + (f" (limit {b.limit})" if b.limit else "") if b.failures else ""]
    lines.append(f"  last block {b.block_id or '?'}{job}: " + (", ".join(f for f in facts if f) or "no details"))
    for name, text in (("stdout", b.stdout_tail), ("stderr", b.stderr_tail)):
        tail = text.strip().splitlines()[-5:]
        if tail:
            lines.append(f"  its {name} ended with:")
            lines.extend("    " + t for t in tail)
    return lines


def uep_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for uep in data.get("user_endpoints") or []:
        if not isinstance(uep, dict):
            continue
        engine = uep.get("engine") or {}
        state = "blocks failing" if _breaker(uep) else uep.get("state")
        rows.append([uep.get("key"), uep.get("pid"), state]
                    + [_get(engine, k) for k in ("blocks", "managers", "workers_total", "workers_idle",
                                                 "outstanding", "running", "done", "failed")])
    return rows


def render_status(data: dict[str, Any]) -> None:
    """Print a running endpoint's status reply for people."""
    from rich.table import Table
    from rich.text import Text

    name = str(data.get("name") or "?")
    shown = data.get("display_name")
    title = f"endpoint {name}" + (f" ({shown})" if shown and shown != name else "")
    if data.get("state") == "degraded":
        output.line(f"{title} is degraded: {data.get('reason') or 'the manager gives no reason'}", style="yellow")
    else:
        output.success(f"{title} is {data.get('state') or 'running'}")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, text in status_fields(data):
        grid.add_row(Text("  " + label), Text(text))
    output.render(grid)
    rows = uep_rows(data)
    if rows:
        output.line("")
        output.table(UEP_COLUMNS, rows)
    for uep in data.get("user_endpoints") or []:
        breaker = _breaker(uep)
        if breaker is not None:
            for line in breaker_lines(str(uep.get("key")), breaker):
                output.line(line, style="yellow")
        elif isinstance(uep, dict) and uep.get("reason") and uep.get("state") != "running":
            output.line(f"user endpoint {uep.get('key')}: {uep.get('state')}: {uep['reason']}", style="yellow")
    shown = sum(1 for uep in data.get("user_endpoints") or [] if _breaker(uep))
    counted = data.get("blocks_failing")
    others = counted if isinstance(counted, int) else 0
    if others > shown:  # a local user of a multi-user endpoint sees only a count of the others'
        output.line(f"{others - shown} user endpoint(s) of other users have failing blocks too")


def _write(text: str) -> None:
    """Text in a format of its own (OpenMetrics): as it is, never through rich."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _not_running(name: str, live: Any, endpoint_id: str | None, form: Format) -> None:
    if form is Format.openmetrics:
        from gce.commands import openmetrics

        _write(openmetrics.stopped(name))
    elif form is Format.json:
        output.json({"name": name, "endpoint_id": endpoint_id, "state": live.state,
                     "reason": live.reason, "host": live.host or None})
    else:
        output.line(f"endpoint {name} is {live.state}" + (f": {live.reason}" if live.reason else ""))
        output.hint(f"gce start {name} --detach")
    raise typer.Exit(LSB_NOT_RUNNING)


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    as_json: Annotated[bool, typer.Option("--json", help="Print the endpoint's full status as JSON "
                                          "(the same as --format json).")] = False,
    form: Annotated[Format, typer.Option("--format", help="text for people, json (the manager's full status), or "
                                         "openmetrics (its figures for node_exporter's textfile collector: "
                                         "gce_up 0 when it does not run).")] = Format.text,
) -> None:
    """Show what a running endpoint is doing.

    Its broker connection, its tasks, and its user endpoints with their blocks and workers.

    Exit status: 0 running, 3 not running (stopped or failed), 4 status unknown,
    150 running but degraded (not taking tasks; the reason is printed),
    78 no such endpoint (as from every command).

    For node_exporter's textfile collector, from cron (an endpoint that does not run reads gce_up 0):

    \b
      gce status NAME --format openmetrics > DIR/gce-NAME.prom.tmp
      mv DIR/gce-NAME.prom.tmp DIR/gce-NAME.prom
    """
    from gce.config import model
    from gce.daemon.client import EndpointClient, ManagerError

    if as_json:
        form = Format.json
    # A local user of a multi-user endpoint of root's: its files are root's, but its socket
    # answers them about their own user endpoints (and says whether it runs).
    paths, shared = own_or_shared_paths(name)
    client = EndpointClient(paths)
    live = client.liveness() if not shared else None
    if live is not None and live.state != "running":
        try:
            endpoint_id: str | None = model.read_endpoint_id(paths)
        except GceError:
            endpoint_id = None
        _not_running(name, live, endpoint_id, form)
    try:
        reply = client.status_reply()
    except ManagerError as e:
        raise GceError(e.what, e.why, exit_code=LSB_UNKNOWN) from None
    status = reply.status
    if form is Format.openmetrics:
        from gce.commands import openmetrics

        _write(openmetrics.exposition(name, status))
    elif form is Format.json:
        output.json(reply.data)  # the manager's own words, with any field this gce does not know
    else:
        render_status(status.to_dict())
    if form is Format.text and any(u.blocks_failing for u in status.user_endpoints):
        output.hint(f"fix the engine's worker_init or provider (the block's output above says why), then: "
                    f"gce resume {name}")
    if status.state == "degraded":
        if form is Format.text and status.spool.error:
            output.hint(f"make room on (or remount read-write) the file system of {status.spool.path}; "
                        "the endpoint takes tasks again by itself")
        raise typer.Exit(LSB_DEGRADED)
