"""The one terminal helper: every command prints through these functions.

Data goes to stdout; ``warning:``, ``error:`` and ``hint:`` lines go to stderr. Text that a
user, a config file or a server controls (names, paths, reasons) is never parsed as rich
markup, emoji codes or highlighted, so ``[red]`` in an endpoint's display name stays text.
Colour follows rich's rules: only on a terminal, and never when ``NO_COLOR`` is set.

rich is imported inside the functions: ``gce --help`` and ``gce version`` stay fast.
"""

from __future__ import annotations

import json as _json
import os
import re
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from gce.errors import GceError

# Output that is not a terminal is not wrapped at 80 columns: a table piped into grep or a
# log file keeps one line per row (rich otherwise assumes 80 columns).
_PIPE_WIDTH = 200


# Terminal escape sequences in text users control could retitle the terminal, move the cursor or
# hide what follows (ECMA-48: CSI, OSC, DCS, SOS, PM and APC strings, two-byte escapes, and the C0
# and C1 control characters but tab and line ends): rich's Text drops some control characters,
# not ESC, so they are taken out before printing.
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clears
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|$)"  # OSC, DCS, SOS, PM, APC up to their terminator (or the end)
    r"|\x1b[ -/]*[0-~]?"  # two-byte escapes (and a lone ESC)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the 8-bit CSI
    r"|[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]",  # the other control characters
    re.DOTALL,
)
_BLANKS = re.compile(r"[\t\n\v\f\r]")


def literal(value: Any, missing: str = "-") -> str:
    """VALUE as one line of plain text (MISSING when None or empty)."""
    if value is None or value == "":
        return missing
    return _BLANKS.sub(" ", _SEQUENCE.sub("", str(value)))


def lines(value: str) -> list[str]:
    """Several lines of user text (a traceback, a block's stdout), each made literal."""
    return [_SEQUENCE.sub("", ln).replace("\t", "    ") for ln in value.splitlines()]


def plain(text: str) -> str:
    """TEXT without escape sequences and control characters; tabs and line ends are kept."""
    return _SEQUENCE.sub("", text)


# Engine types as tables show them, where a column is narrow.
SHORT_ENGINE = {"HighThroughputEngine": "htex", "ProcessPoolEngine": "process", "ThreadPoolEngine": "thread",
                "MPIEngine": "mpi", "GlobusMPIEngine": "mpi"}


def duration(seconds: Any, sep: str = " ", tenths_below: float = 0.0) -> str:
    """A short human duration: '45s', '12m 03s', '5h 07m', '3d 04h' ('-' when unknown). SEP goes
    between the units ('' where a column is narrow: '12m03s'); below TENTHS_BELOW seconds it
    counts tenths ('0.3s')."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return "-"
    if seconds < tenths_below:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{sep}{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{sep}{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{sep}{s % 86400 // 3600:02d}h"


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) for the current streams and environment."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not _isatty(stream) and not os.environ.get("COLUMNS"):
        width = _PIPE_WIDTH
    # No styles at all (bold included) with NO_COLOR (https://no-color.org); off a terminal rich adds none.
    colours: Literal["auto"] | None = None if os.environ.get("NO_COLOR") else "auto"
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, width=width, color_system=colours)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _styled(prefix: str, style: str, text: str) -> Any:
    from rich.text import Text

    line = Text()
    line.append(prefix, style=style)
    line.append(plain(text))  # appended as plain text: no markup is interpreted
    return line


def line(text: str, style: str = "") -> None:
    """Print one line of (possibly user-controlled) text on stdout."""
    _hush()
    from rich.text import Text

    console().print(Text(plain(text), style=style), soft_wrap=True)


def success(text: str) -> None:
    line(text, style="green")


def hint(text: str) -> None:
    _hush()
    console(stderr=True).print(_styled("hint: ", "bold cyan", text), soft_wrap=True)


def warning(text: str) -> None:
    _hush()
    console(stderr=True).print(_styled("warning: ", "bold yellow", text), soft_wrap=True)


def error(exc: GceError) -> None:
    """Render a GceError as ``error: <what>: <why>`` and ``hint: <hint>`` on stderr."""
    _hush()
    err = console(stderr=True)
    err.print(_styled("error: ", "bold red", str(exc)), soft_wrap=True)
    if exc.hint:
        hint(exc.hint)


def internal_error(exc: BaseException, traceback_shown: bool = False) -> None:
    """Report an unexpected exception (a bug) in one line, and what to do about it."""
    _hush()
    err = console(stderr=True)
    err.print(_styled("error: ", "bold red", f"internal error: {type(exc).__name__}: {exc}"), soft_wrap=True)
    if traceback_shown:
        hint("this is a bug in gce; please include the traceback above in a bug report")
    else:
        hint("this is a bug in gce; rerun with GCE_DEBUG=1 to see the traceback and include it in a bug report")


def traceback(exc: BaseException) -> None:
    """Print EXC's traceback without local variables (they may hold secrets)."""
    _hush()
    import traceback as tb

    sys.stderr.write("".join(tb.format_exception(type(exc), exc, exc.__traceback__)))
    sys.stderr.flush()


def json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, never styled."""
    _hush()
    sys.stdout.write(_json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], no_wrap: Sequence[str] = ()) -> None:
    """Print a table; every cell is plain text (None prints as '-')."""
    render(make_table(columns, rows, no_wrap))


def make_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], no_wrap: Sequence[str] = ()) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for col in columns:
        t.add_column(col, no_wrap=col in no_wrap, overflow="fold")
    for row in rows:
        t.add_row(*(Text("-" if cell is None or cell == "" else plain(str(cell))) for cell in row))
    return t


def render(*renderables: RenderableType) -> None:
    """Print rich renderables (tables, grids) on stdout."""
    _hush()
    out = console()
    with out.capture() as captured:
        for r in renderables:
            out.print(r)
    # rich pads every row of a table to its full width; trailing blanks only get in the way of grep and diff
    sys.stdout.write("".join(ln.rstrip(" ") + "\n" for ln in captured.get().splitlines()))
    sys.stdout.flush()


# A step that ends sooner than this shows nothing: a spinner that flashes by is noise.
SPINNER_DELAY = 0.5
_spinners: list[_Steps] = []


def _hush() -> None:
    """Take any spinner off the screen before a line is printed: the line would land on the
    spinner's own (rich redirects only the writes made through the spinner's console). The
    spinner comes back, if slow, with the next step."""
    for steps in _spinners:
        steps.hide()


class _Steps:
    """The current step of a slow command, shown as a spinner on stderr once it has lasted
    SPINNER_DELAY; calling it names the next step."""

    def __init__(self, shown: bool) -> None:
        self._shown = shown
        self._lock = threading.Lock()
        self._text = ""
        self._status: Any = None
        self._timer: threading.Timer | None = None

    def __call__(self, text: str) -> None:
        with self._lock:
            self._text = text
            if not self._shown:
                return
            if self._status is not None:
                self._status.update(_plain(text))
                return
            if self._timer is not None:
                self._timer.cancel()  # the clock restarts with each step
            self._timer = threading.Timer(SPINNER_DELAY, self._show)
            self._timer.daemon = True
            self._timer.start()

    def _show(self) -> None:
        with self._lock:
            if self._status is None and self._timer is not None:
                from rich.status import Status

                # transient: the finished command's own lines are all that stays on screen
                self._status = Status(_plain(self._text), console=console(stderr=True), spinner="dots")
                self._status.start()

    def hide(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._status is not None:
                self._status.stop()
                self._status = None


def _plain(text: str) -> Any:
    from rich.text import Text

    return Text(text)  # a step names endpoints and paths: never markup


@contextmanager
def spinner(first_step: str) -> Iterator[Callable[[str], None]]:
    """Show the current step of a slow command; yields a callable that names the next step.

    Only on a terminal (stdout and stderr both): piped or logged output gets none of it.
    """
    if _spinners:  # a step inside a slow command (restart's start): one spinner, naming the innermost step
        _spinners[-1](first_step)
        yield _spinners[-1]
        return
    steps = _Steps(shown=_isatty(sys.stdout) and _isatty(sys.stderr) and os.environ.get("TERM") != "dumb")
    steps(first_step)
    _spinners.append(steps)
    try:
        yield steps
    finally:
        _spinners.remove(steps)
        steps.hide()
