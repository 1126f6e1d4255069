"""gce tasks: the latest tasks of a running endpoint, or one task's error and remote traceback.

The manager keeps a bounded ring of task events (received, dispatched, success, failed); each
task shows as its latest event. The function name is the one the submitter's SDK put in the
task's header: root never unpickles a task to learn it. On a multi-user endpoint, root sees every
user's tasks and a user their own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg
from gce.commands.blocks import running_client
from gce.errors import GceError

if TYPE_CHECKING:
    from gce.daemon.client import TaskDetail, TaskEvent

COLUMNS = ("TIME", "TASK", "FUNCTION", "SUBMITTER", "USER", "STATE", "QUEUED FOR", "RAN FOR", "CODE", "MESSAGE")


def seconds(value: float | None) -> str | None:
    """A task's time: tenths of a second while short ('0.3s'), then gce's usual '12m 03s'."""
    if value is None:
        return None
    return output.duration(value, tenths_below=60)


def clock(at: float | None) -> str | None:
    return None if not at else time.strftime("%H:%M:%S", time.localtime(at))


def latest(events: tuple[TaskEvent, ...] | list[TaskEvent], failed: bool, limit: int) -> list[TaskEvent]:
    """Each task's last event, oldest first: the LIMIT newest tasks (the failed ones only, if FAILED)."""
    last: dict[str, TaskEvent] = {}
    for ev in events:
        last.pop(ev.task_id, None)  # re-inserted: a dict keeps the order of each task's last event
        last[ev.task_id] = ev
    chosen = [ev for ev in last.values() if not failed or ev.event == "failed"]
    return chosen[-limit:]


def task_rows(events: list[TaskEvent]) -> list[list[Any]]:
    return [[clock(ev.at), ev.task_id, ev.function_name, ev.submitter, ev.local_user, ev.event,
             seconds(ev.queued_for), seconds(ev.ran_for), ev.code, ev.message] for ev in events]


def detail_fields(detail: TaskDetail) -> list[tuple[str, Any]]:
    ev = detail.event
    return [("function", ev.function_name), ("submitter", ev.submitter), ("local user", ev.local_user),
            ("user endpoint", ev.uep), ("state", f"{ev.event} at {clock(ev.at)}" if ev.at else ev.event),
            ("queued for", seconds(ev.queued_for)), ("ran for", seconds(ev.ran_for)), ("code", ev.code),
            ("message", ev.message)]


def render_detail(task_id: str, detail: TaskDetail) -> None:
    from rich.table import Table
    from rich.text import Text

    from gce.tui.text import lines, literal

    output.line(f"task {literal(task_id)}", style="bold")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in detail_fields(detail):
        if value not in (None, ""):
            grid.add_row(Text("  " + label), Text(literal(value)))
    output.render(grid)
    if detail.error:
        output.line("error:", style="bold")
        for ln in lines(detail.error):
            output.line(("  " + ln).rstrip())
    if detail.traceback:
        output.line("remote traceback:", style="bold")
        for ln in lines(detail.traceback):
            output.line(("  " + ln).rstrip())


def _one(name: str, task_id: str, as_json: bool) -> None:
    from gce.daemon.client import ManagerError

    _paths, client = running_client(name)
    try:
        detail = client.task(task_id)
    except ManagerError as e:
        if e.code != "NOT_FOUND":
            raise
        raise GceError(f"no task {task_id} on endpoint {name!r}", e.why or "the endpoint holds nothing of it",
                       hint=f"gce tasks {name} lists the tasks the endpoint still remembers") from None
    if as_json:
        output.json(detail.to_dict())
    else:
        render_detail(task_id, detail)


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    failed: Annotated[bool, typer.Option("--failed", help="Only the tasks that failed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print each task's latest event as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, metavar="N",
                                       help="Show the N most recent tasks.")] = 20,
    task: Annotated[Optional[str], typer.Option("--task", metavar="ID", help="Show one task: its latest event, "
                                                "and for a failure its error and remote traceback.")] = None,
) -> None:
    """Show the latest tasks of a running endpoint, or one task's error and traceback.

    Each task shows as its latest event: received, dispatched (to a user endpoint), success
    or failed, with how long it waited (QUEUED FOR) and ran (RAN FOR), its error code and
    message. Then `gce tasks NAME --task ID` shows a failed task's remote traceback.

    Exit status: 0, 1 no such task (--task), 3 the endpoint is not running, 78 no such endpoint.
    """
    if task is not None:
        _one(name, task, as_json)
        return
    from gce.tui.text import literal

    _paths, client = running_client(name)
    shown = latest(client.snapshot(since=0).events, failed, limit)
    if as_json:
        output.json([ev.to_dict() for ev in shown])
    elif not shown:
        output.line(f"endpoint {name} has no {'failed ' if failed else ''}tasks to show")
    else:
        output.table(COLUMNS, [[literal(cell) for cell in row] for row in task_rows(shown)])
