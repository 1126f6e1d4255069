"""The Log screen: the endpoint's log, following, as tail -f would (lines shown literally)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import RichLog

from gce.tui.text import lines

TAIL_BYTES = 64 * 1024  # what the first look reads of a long log


class LogView(RichLog):
    def __init__(self, **kw: object) -> None:
        super().__init__(markup=False, highlight=False, wrap=False, max_lines=5000, **kw)  # type: ignore[arg-type]
        self.path: Path | None = None
        self.read_at = 0

    def start(self, path: str) -> tuple[Path, int]:
        """The file to read and where from: PATH's last TAIL_BYTES when it is new to this view."""
        if self.path != Path(path):
            self.clear()
            self.path, self.read_at = Path(path), -1
        return self.path, self.read_at

    def write_new(self, path: Path, found: tuple[int, str]) -> None:
        """Append what read_new found (unless the view follows another file by now)."""
        if path != self.path:
            return
        self.read_at, text = found
        for ln in lines(text):
            self.write(Text(ln))


def read_new(path: Path, offset: int) -> tuple[int, str]:
    """(the new offset, the complete lines of PATH after OFFSET); OFFSET -1: the file's tail.
    A file that shrank was rotated: it is read again from its start."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, 2)
            if offset < 0:
                offset = max(0, end - TAIL_BYTES)
            elif offset > end:
                offset = 0
            f.seek(offset)
            data = f.read(end - offset)
    except OSError as e:
        # said once (offset -2 marks it said); looked at again on every refresh
        return -2, "" if offset == -2 else f"cannot read {path}: {e.strerror or e}\n"
    complete = data.rfind(b"\n") + 1  # a half-written last line waits for the next look
    return offset + complete, data[:complete].decode("utf-8", "replace")
