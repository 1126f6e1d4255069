"""The User endpoints screen: one row per user endpoint (a multi-user endpoint has one per local user)."""

from __future__ import annotations

from gce.tui import rows
from gce.tui.collect import Snapshot
from gce.tui.table import LiveTable


class UepsTable(LiveTable):
    COLUMNS = rows.USER_ENDPOINTS

    def rows_of(self, snap: Snapshot, endpoint: str | None) -> list[rows.Row]:
        return rows.uep_rows(snap, endpoint)
