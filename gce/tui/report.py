"""gce monitor without the screens: one snapshot as rich tables (--once, or stdout not a terminal),
and the flat line mode (--plain) that screen readers read, which says only what changed."""

from __future__ import annotations

from typing import Callable

from gce import output
from gce.tui import rows
from gce.tui.collect import Snapshot

SECTIONS: tuple[tuple[str, tuple[str, ...], Callable[[Snapshot], list[rows.Row]]], ...] = (
    ("Endpoints", rows.ENDPOINTS, rows.endpoint_rows),
    ("User endpoints", rows.USER_ENDPOINTS, rows.uep_rows),
    ("Blocks", rows.BLOCKS, rows.block_rows),
    ("Workers", rows.WORKERS, rows.worker_rows),
    ("Tasks", rows.TASKS, rows.task_rows),
)


def print_tables(snap: Snapshot) -> None:
    """Every screen's table, one after the other (an empty one is left out, but for Endpoints)."""
    if not snap.endpoints:
        output.line("no endpoints are configured here")
        output.hint("gce configure NAME creates one")
        return
    for note in rows.banner(snap):
        output.line(note, style="bold yellow")
    for title, columns, make in SECTIONS:
        found = make(snap)
        if found or title == "Endpoints":
            output.line(title, style="bold")
            output.table(columns, (cells for _, cells in found))
            output.line("")


def plain_lines(snap: Snapshot, previous: Snapshot | None) -> list[str]:
    """One line per row that is new or changed since PREVIOUS, and one per row that went away:
    "Tasks ep/1234: STATE failed, CODE TASK_EXCEPTION, ..." (no table a reader must keep in mind)."""
    lines = [f"note: {n}" for n in rows.banner(snap) if previous is None or n not in rows.banner(previous)]
    for title, columns, make in SECTIONS:
        before = dict(make(previous)) if previous is not None else {}
        now = make(snap)
        for key, cells in now:
            if before.get(key) != cells:
                said = ", ".join(f"{c} {v}" for c, v in zip(columns, cells) if v != "-")
                lines.append(f"{title} {key}: {said}")
        for key in before.keys() - dict(now).keys():
            lines.append(f"{title} {key}: gone")
    return lines
