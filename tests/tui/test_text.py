"""User-controlled text is shown as it was written: no markup, no terminal escape sequences."""

from __future__ import annotations

from rich.console import Console

from gce.tui.text import cell, literal


def _shown(text: str) -> str:
    console = Console(width=80, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(cell(text))
    return console.export_text().rstrip("\n")


def test_markup_is_text():
    assert literal("[bold red]x[/]") == "[bold red]x[/]"
    assert _shown("[bold red]x[/]") == "[bold red]x[/]"


def test_an_osc_title_sequence_is_stripped():
    assert literal("out\x1b]0;pwned\x07put") == "output"
    assert "\x1b" not in _shown("\x1b]0;pwned\x07ok") and _shown("\x1b]0;pwned\x07ok") == "ok"


def test_csi_and_control_characters_are_stripped():
    assert literal("\x1b[31mred\x1b[0m\x1b[2J \x9b31m\x08!") == "red !"
    assert literal("a\tb\nc\rd") == "a b c d"  # one line per cell
    assert literal(None) == "-" and literal("") == "-" and literal(3) == "3"


def test_an_unterminated_sequence_eats_nothing_after_it():
    assert literal("x\x1b]0;no end") == "x"
    assert literal("x\x1b") == "x"
