"""The Tasks screen: the latest tasks, newest first; Enter opens a failed task's error."""

from __future__ import annotations

from gce.tui import rows
from gce.tui.collect import Snapshot
from gce.tui.table import LiveTable


class TasksTable(LiveTable):
    COLUMNS = rows.TASKS

    def rows_of(self, snap: Snapshot, endpoint: str | None) -> list[rows.Row]:
        return rows.task_rows(snap, endpoint)
