"""The Workers screen: per node (a parsl manager), its busy and idle workers and what the busy ones run."""

from __future__ import annotations

from gce.tui import rows
from gce.tui.collect import Snapshot
from gce.tui.table import LiveTable


class WorkersTable(LiveTable):
    COLUMNS = rows.WORKERS

    def rows_of(self, snap: Snapshot, endpoint: str | None) -> list[rows.Row]:
        return rows.worker_rows(snap, endpoint)
