"""One check's verdict, and how a report of them is printed.

Every check gives PASS, WARN, FAIL or SKIP with a one-line reason and, when there is
something to do, a hint. ``details`` holds what a support engineer wants next to the
verdict (addresses, versions, log lines); it goes to ``--json`` and into the bundle.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
STYLES = {PASS: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}


@dataclass
class Result:
    check: str
    status: str
    reason: str
    hint: str = ""
    endpoint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ("check", "endpoint", "status", "reason", "hint", "details")}


def ok(check: str, reason: str, **details: Any) -> Result:
    return Result(check, PASS, reason, details=details)


def warn(check: str, reason: str, hint: str = "", **details: Any) -> Result:
    return Result(check, WARN, reason, hint, details=details)


def fail(check: str, reason: str, hint: str = "", **details: Any) -> Result:
    return Result(check, FAIL, reason, hint, details=details)


def skip(check: str, reason: str, hint: str = "", **details: Any) -> Result:
    return Result(check, SKIP, reason, hint, details=details)


def guarded(check: str, fn: Callable[[], Result | list[Result]]) -> list[Result]:
    """Run one check; a bug in it becomes its FAIL instead of ending the whole report."""
    try:
        got = fn()
    except Exception as e:
        return [fail(check, f"the check itself failed: {type(e).__name__}: {e}",
                     "this is a bug in gce diagnostic; rerun with GCE_DEBUG=1 and report it")]
    return got if isinstance(got, list) else [got]


def timed_ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


def summary(results: Iterable[Result]) -> str:
    counts = {s: 0 for s in (PASS, WARN, FAIL, SKIP)}
    for r in results:
        counts[r.status] += 1
    return (f"{counts[PASS]} passed, {counts[WARN]} warning{'s' * (counts[WARN] != 1)}, "
            f"{counts[FAIL]} failed, {counts[SKIP]} skipped")


CHECK_WIDTH = 16  # the longest check name: every section's columns line up


def section_table(title: str, results: list[Result]) -> Any:
    """A title line, then a grid of STATUS  CHECK  REASON rows with hints beneath."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, min_width=6)
    grid.add_column(no_wrap=True, min_width=CHECK_WIDTH)
    grid.add_column(overflow="fold")
    for r in results:
        grid.add_row(Text("  " + r.status, style=STYLES[r.status]), Text(r.check), Text(r.reason))
        if r.hint and r.status != PASS:
            grid.add_row(Text(""), Text(""), Text("hint: " + r.hint, style="cyan"))
        if r.status in (WARN, FAIL):  # a failing log check shows its last lines
            for line in r.details.get("tail", []):
                grid.add_row(Text(""), Text(""), Text("| " + line, style="dim"))
    return Group(Text(title, style="bold"), grid)


def section_title(endpoint: str | None) -> str:
    return "this host" if endpoint is None else f"endpoint {endpoint}"
