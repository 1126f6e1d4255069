"""Text that users control (function names, identities, reasons, block output, log lines) shown
as it was written: never parsed as rich or textual markup, and without terminal escape sequences,
which could retitle the terminal, move the cursor or hide what follows (ECMA-48: CSI, OSC, DCS,
SOS, PM and APC strings, two-byte escapes, and the C0 and C1 control characters)."""

from __future__ import annotations

from typing import Any

from gce.output import lines, literal, plain

__all__ = ["cell", "lines", "literal", "plain"]  # the rules live in gce.output, for every command


def cell(value: Any, style: str = "") -> Any:
    """A rich Text of VALUE: built, not parsed, so `[bold]` stays text."""
    from rich.text import Text

    return Text(literal(value), style=style, no_wrap=True, overflow="ellipsis")
