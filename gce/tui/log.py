"""The Log screen: an endpoint's logs merged in time order and followed, as `gce logs -f` prints
them: the manager's, and the user endpoints' (root sees every user's), each line shown literally."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import RichLog

from gce import logview
from gce.config.paths import EndpointPaths
from gce.tui.text import lines

FIRST_LINES = 500  # what the first look shows of long logs


class LogView(RichLog):
    def __init__(self, **kw: object) -> None:
        super().__init__(markup=False, highlight=False, wrap=False, max_lines=5000, **kw)  # type: ignore[arg-type]
        self.paths: EndpointPaths | None = None
        self.sources: dict[Path, logview.Source] = {}

    def start(self, paths: EndpointPaths) -> tuple[EndpointPaths, list[logview.Source], bool]:
        """What the next look reads: PATHS's log files; the first look (True) shows only their end."""
        first = self.paths != paths
        if first:
            self.clear()
            self.paths, self.sources = paths, {}
        return paths, list(self.sources.values()), first

    def write_new(self, paths: EndpointPaths, found: tuple[list[logview.Source], list[str]]) -> None:
        """Show what read_new found (unless the view follows another endpoint by now)."""
        if paths != self.paths:
            return
        sources, new = found
        self.sources = {s.path: s for s in sources}
        for ln in new:
            self.write(Text(ln))


def read_new(paths: EndpointPaths, known: list[logview.Source], first: bool) -> tuple[list[logview.Source], list[str]]:
    """(the sources with their new offsets, the lines written since the last look). Log files that
    appeared since (a new user endpoint's) are read from their start; unreadable ones are said once."""
    sources = {s.path: s for s in known}
    said: list[str] = []
    multi_user = True  # every user endpoint's log is looked for; a personal endpoint has none elsewhere
    for found in logview.sources(paths, multi_user):
        if found.path not in sources:
            why = logview.unreadable(found)
            if why:
                said.append(f"cannot read {found.path}: {why}")
                found.offset = -1  # never read
            sources[found.path] = found
    batches = []
    for s in sources.values():
        if s.offset >= 0:
            try:
                batches.append(logview.read(s))
            except OSError as e:
                said.append(f"cannot read {s.path}: {e.strerror or e}")
                s.offset = -1
    merged = [logview.render(ln) for ln in logview.merge(batches)]
    if first:
        merged = merged[-FIRST_LINES:]
    return list(sources.values()), said + [ln for text in merged for ln in lines(text)]
