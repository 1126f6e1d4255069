"""The help screen (?): every key."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("1-6, Tab", "Endpoints, User endpoints, Blocks, Workers, Tasks, Log"),
    ("arrows, j/k", "move"),
    ("Enter", "open: an endpoint's user endpoints, a user endpoint's blocks, a block's script and "
              "output, a task's error"),
    ("Esc", "back: every endpoint again, or close what Enter opened"),
    ("/", "filter the rows by text (Enter keeps it, Esc clears it)"),
    ("s", "sort by the next column"),
    ("p", "pause or resume the refresh"),
    ("x", "stop the endpoint or user endpoint, or cancel the block, under the cursor (asks first)"),
    ("R", "restart the endpoint under the cursor (asks first)"),
    ("q", "quit"),
)


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Back")]
    DEFAULT_CSS = """
    Help { align: center middle; }
    Help > Vertical { width: 76; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
                      padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        text = Text()
        for key, what in KEYS:
            text.append(f"{key:<12}", style="bold")
            text.append(what + "\n")
        with Vertical():
            yield Static(Text("gce monitor keys", style="bold"))
            yield Static(text)
