"""What Enter opens over a screen: a failed task's error and remote traceback, a block's submit
script and the tail of its output. Every line is user text, shown literally; Esc closes."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, RichLog, Static

from gce.tui.text import cell, lines


class Detail(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Back")]
    DEFAULT_CSS = """
    Detail { align: center middle; }
    Detail > Vertical { width: 100%; height: 100%; border: round $accent; }
    Detail #title { text-style: bold; }
    """

    def __init__(self, title: str, sections: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.sections = sections  # (heading, text)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(cell(self.title_text), id="title")
            yield RichLog(markup=False, highlight=False, wrap=True, id="body")
        yield Footer()

    def on_mount(self) -> None:
        body = self.query_one(RichLog)
        for heading, text in self.sections:
            body.write(cell(heading, style="bold"))
            for ln in lines(text) or ["-"]:
                body.write(Text(ln))  # built, not parsed: a traceback's "[red]" is text
            body.write(Text(""))
