"""Text that users control (function names, identities, reasons, block output, log lines) shown
as it was written: never parsed as rich or textual markup, and without terminal escape sequences,
which could retitle the terminal, move the cursor or hide what follows (ECMA-48: CSI, OSC, DCS,
SOS, PM and APC strings, two-byte escapes, and the C0 and C1 control characters)."""

from __future__ import annotations

import re
from typing import Any

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


def cell(value: Any, style: str = "") -> Any:
    """A rich Text of VALUE: built, not parsed, so `[bold]` stays text."""
    from rich.text import Text

    return Text(literal(value), style=style, no_wrap=True, overflow="ellipsis")
