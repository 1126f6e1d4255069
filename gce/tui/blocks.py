"""The Blocks screen: every block a user endpoint submitted, its scheduler job and state; Enter opens its submit script and output."""

from __future__ import annotations

from gce.tui import rows
from gce.tui.collect import Snapshot
from gce.tui.table import LiveTable


class BlocksTable(LiveTable):
    COLUMNS = rows.BLOCKS

    def rows_of(self, snap: Snapshot, endpoint: str | None) -> list[rows.Row]:
        return rows.block_rows(snap, endpoint)
