"""The table every screen is made of: updated in place by row key, so that the cursor, the scroll
and the sort stay where the user left them while the figures change underneath."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding
from textual.widgets import DataTable

from gce.tui.collect import Snapshot
from gce.tui.rows import Row
from gce.tui.text import cell


class LiveTable(DataTable[object]):
    """A DataTable of one screen's rows; a subclass names its COLUMNS and makes its rows."""

    COLUMNS: ClassVar[tuple[str, ...]] = ()
    BINDINGS = [Binding("j", "cursor_down", "Down", show=False), Binding("k", "cursor_up", "Up", show=False)]

    def __init__(self, **kw: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)  # type: ignore[arg-type]
        self.sorted_by: int | None = None

    def on_mount(self) -> None:
        for name in self.COLUMNS:
            self.add_column(name, key=name)

    def rows_of(self, snap: Snapshot, endpoint: str | None) -> list[Row]:
        raise NotImplementedError

    def show(self, snap: Snapshot, endpoint: str | None = None, text: str = "") -> None:
        """Make the table hold SNAP's rows (of ENDPOINT alone when given, containing TEXT when given)."""
        wanted = text.lower()
        rows = [(k, c) for k, c in self.rows_of(snap, endpoint) if not wanted or any(wanted in v.lower() for v in c)]
        keep = {k for k, _ in rows}
        for gone in [k for k in self.rows if k.value not in keep]:
            self.remove_row(gone)
        added = False
        for key, cells in rows:
            if key not in self.rows:
                self.add_row(*(cell(v) for v in cells), key=key)
                added = True
                continue
            old = self.get_row(key)
            for name, value, was in zip(self.COLUMNS, cells, old):
                if str(was) != value:
                    self.update_cell(key, name, cell(value))
        if added:  # new rows land at the bottom: put them where they belong, the cursor on its row
            was = self.selected_key()
            if self.sorted_by is not None:
                self._sort()
            else:
                place = {tuple(cells): i for i, (_, cells) in enumerate(rows)}
                self.sort(key=lambda values: place.get(tuple(str(v) for v in values), len(place)))
            if was is not None and was in self.rows:
                self.move_cursor(row=self.get_row_index(was), animate=False)

    def cycle_sort(self) -> str:
        """Sort by the next column (none after the last); the column's name, or "" when unsorted."""
        self.sorted_by = 0 if self.sorted_by is None else self.sorted_by + 1
        if self.sorted_by >= len(self.COLUMNS):
            self.sorted_by = None
            return ""
        self._sort()
        return self.COLUMNS[self.sorted_by]

    def _sort(self) -> None:
        if self.sorted_by is not None:
            self.sort(self.COLUMNS[self.sorted_by], key=lambda v: _sort_key(str(v)))

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return key


def _sort_key(text: str) -> tuple[int, float, str]:
    """Numbers by value, before words; "-" (unknown) last."""
    try:
        return (0, float(text.rstrip("BKMG%s")), text)
    except ValueError:
        return (2 if text == "-" else 1, 0.0, text)
