"""The Endpoints screen: one row per endpoint, its state, broker link, tasks in and out per second."""

from __future__ import annotations

from gce.tui import rows
from gce.tui.collect import Snapshot
from gce.tui.table import LiveTable


class EndpointsTable(LiveTable):
    COLUMNS = rows.ENDPOINTS

    def rows_of(self, snap: Snapshot, endpoint: str | None) -> list[rows.Row]:
        return rows.endpoint_rows(snap)  # every endpoint, whichever is opened
