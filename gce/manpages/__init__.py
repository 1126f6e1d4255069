"""gce's manual pages and shell completion scripts, generated from the CLI itself.

``python -m gce.manpages man/`` writes ``gce.1``, one ``gce-<command>.1`` per command and
``gce-config.5``; ``python -m gce.manpages --completion packaging/completion/`` writes the bash,
zsh and fish completion scripts. Both outputs are committed and a test regenerates them, so a
change of the CLI that was not followed by these commands fails the tests.

The pages are plain man(7): no build date and no version in them, so that they are the same
bytes on every run and only a change of what they say makes a diff.

This module holds the roff helpers the pages are written with.
"""

from __future__ import annotations

import re
from typing import Iterable

# A '-' that starts a word is an option's dash (or a minus sign) and must be typed as such when
# copied from the page: roff's plain '-' may render as a hyphen (U+2010), '\-' is the ASCII one.
# So are the dashes inside an option's name (--dry-run); a hyphen inside a word stays one.
_OPTION = re.compile(r"(?<![A-Za-z0-9_\-])-{1,2}[A-Za-z0-9][A-Za-z0-9_-]*")
_DASH = re.compile(r"(?<![A-Za-z0-9\\])-")
# click's marker for a paragraph it must not rewrap (in a docstring, a line holding only '\b').
NO_REWRAP = "\b"


def escape(text: str) -> str:
    """TEXT as roff prose: backslashes and option dashes escaped, no line read as a request."""
    text = text.replace("\\", "\\e")
    text = _OPTION.sub(lambda m: m.group(0).replace("-", "\\-"), text)
    text = _DASH.sub(r"\\-", text)
    return "\n".join(_line(line) for line in text.split("\n"))


def _line(line: str) -> str:
    # A line starting with '.' or "'" would be a request; \& is a zero-width character.
    return "\\&" + line if line.startswith((".", "'")) else line


def bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


def header(title: str, section: int, summary: str) -> list[str]:
    """The .TH line (no date: see the module's docstring) and the NAME section. No hyphenation and
    a ragged right margin: option, key and variable names stay whole, to be copied as they are."""
    return [
        f'.TH {escape(title.upper())} {section} "" "gce" "gce manual"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{escape(title)} \\- {escape(summary)}",
    ]


def section(name: str) -> str:
    return f'.SH "{name}"' if " " in name else f".SH {name}"


def paragraphs(text: str) -> list[str]:
    """Paragraphs of a docstring as roff: filled text, and verbatim blocks where click keeps the
    lines as they are (a paragraph that starts with its no-rewrap marker)."""
    out: list[str] = []
    for para in split_paragraphs(text):
        if out:
            out.append(".PP")
        if para.startswith(NO_REWRAP):
            out.extend(verbatim(para[len(NO_REWRAP):].strip("\n").splitlines()))
        else:
            out.append(escape(" ".join(line.strip() for line in para.splitlines())))
    return out


def split_paragraphs(text: str) -> list[str]:
    return [p.strip(" ") for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def verbatim(lines: Iterable[str]) -> list[str]:
    """LINES shown as they are (indented, not filled), e.g. commands to type."""
    lines = list(lines)
    width = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return [".RS 4", ".nf", *(escape(line[width:]) for line in lines), ".fi", ".RE"]


def tagged(tag: str, body: Iterable[str]) -> list[str]:
    """One .TP item: TAG (already roff) on its line, BODY (roff lines) indented below it."""
    return [".TP", tag, *body]


def page(lines: Iterable[str]) -> str:
    return "\n".join(lines) + "\n"
