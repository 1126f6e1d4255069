"""gce audit: an endpoint's audit log (gce.auditlog), oldest first."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Annotated, Any, Optional

import typer

from gce import auditlog, logview
from gce.commands import DEFAULT_NAME, DefaultNameArg, configured_paths, shared_endpoint
from gce.errors import ConfigError, PermissionDenied

_SHOWN = ("submitter", "function_name", "function_id", "local_user", "uid", "uep", "status", "code", "reason")


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    user: Annotated[Optional[str], typer.Option(
        "--user", metavar="LOCALUSER", help="Only the tasks mapped to local account LOCALUSER.",
        show_default=False)] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", metavar="T", help="Only events from T on: an ISO time (2026-12-06T20:00) or an age (10m, 2h).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, as the log holds them.")] = False,
) -> None:
    """Show the audit log of endpoint NAME, oldest first (its rotated files too): one line per task
    event (received, mapped, sent, started, finished, refused) with who sent which function, the
    local account it ran as and what became of it. A multi-user endpoint's audit log is root's."""
    start = logview.parse_since(since) if since else None
    try:
        paths = configured_paths(name)
    except (ConfigError, PermissionDenied):
        if shared_endpoint(name) is not None:  # a multi-user endpoint of root's, which this user only submits to
            raise PermissionDenied(f"cannot show the audit log of endpoint {name}",
                                   "a multi-user endpoint's audit log is for its administrator (root)",
                                   hint=f"sudo gce audit {name} --user {_me()}") from None
        raise
    path = auditlog.audit_path(paths)
    try:
        records = list(auditlog.read(path, start, user))
    except PermissionError:
        raise PermissionDenied(f"cannot read the audit log {path}", f"it is readable by its owner only (you are "
                               f"{_me()})", hint=f"sudo gce audit {name}" + (f" --user {user}" if user else "")) from None
    if not records and not auditlog.files(path):
        typer.echo(f"gce audit: endpoint {name} has no audit log yet ({path})", err=True)
    for record in records:
        sys.stdout.write((json.dumps(record, separators=(",", ":")) if as_json else render(record)) + "\n")
    sys.stdout.flush()


def render(record: dict[str, Any]) -> str:
    """One event as a line for people: local time, event, task id, then its fields as key=value."""
    ts = record.get("ts")
    when = datetime.fromtimestamp(ts).isoformat(timespec="milliseconds") if isinstance(ts, (int, float)) else "?"
    fields = [f"{k}={_quoted(record[k])}" for k in _SHOWN if record.get(k) not in (None, "")]
    return f"{when} {str(record.get('event', '?')):<8} {record.get('task_id', '?')} {' '.join(fields)}".rstrip()


def _quoted(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in "\"=" for c in text) else text


def _me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
