"""The log check: the last lines of an endpoint's log file, or of its unit's journal under
systemd, where the manager logs to the journal only (DESIGN.md, "Files").
"""

from __future__ import annotations

import re
from typing import Any

from gce.commands.diagnostic import journal
from gce.commands.diagnostic.checks import UNIT, Context
from gce.commands.diagnostic.result import Result, ok, skip, warn
from gce.config.paths import refusal, system_mode


def _errors(lines: list[str]) -> list[str]:
    return [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln or ln.lstrip().startswith("Traceback")]


# Every line a manager logs names its process: "manager[PID]" in its file, "gce[PID]:" in the journal.
_PID = re.compile(r"[\w.@-]+\[(\d+)\]")


def current_run(lines: list[str]) -> tuple[list[str], list[str]]:
    """LINES split into (earlier runs, the current run): the current run is the last lines logged
    by the process that logged last; lines naming no process (a traceback's) belong to the one before."""
    pids: list[str | None] = []
    pid = None
    for ln in lines:
        m = _PID.search(ln)
        pid = m.group(1) if m else pid
        pids.append(pid)
    start = len(lines)
    while start > 0 and pids[start - 1] in (pid, None):
        start -= 1
    return lines[:start], lines[start:]


def _log_verdict(where: str, last: list[str], hint: str, **details: Any) -> Result:
    earlier, current = current_run(last)
    errors, old = _errors(current), _errors(earlier)
    details["tail"] = last
    note = f"; note: earlier runs logged {len(old)} error line{'s' * (len(old) != 1)}" if old else ""
    if errors:
        among = "the current run's last" if earlier else "the last"
        return warn("log", f"{len(errors)} error line{'s' * (len(errors) != 1)} among {among} {len(current)}; "
                    f"the last: {errors[-1]}{note}", hint, **details)
    if old:
        return ok("log", f"{where}: no errors in the current run's {len(current)} lines{note}, the last: {old[-1]}",
                  **details)
    return ok("log", f"{where}: no errors in the last {len(last)} lines", **details)


def unit_log(unit: str, lines: int) -> Result:
    """The last lines of the endpoint's UNIT in the journal (it logs there under systemd)."""
    shown = " ".join(journal.command(unit, lines))
    try:
        last = journal.tail(unit, lines)
    except journal.Unreadable as e:
        return skip("log", f"cannot read the journal of {unit}: {e}", "run gce diagnostic as root, or as the "
                    "endpoint's owner; a user reads the system journal in group systemd-journal", unit=unit)
    if not last:
        return skip("log", f"the journal holds no lines of {unit}", f"{shown}", unit=unit)
    return _log_verdict(f"the journal of {unit}", last, shown, unit=unit, source="journal")


def log(ctx: Context, lines: int) -> Result:
    from gce.logfiles import tail

    if ctx.unit is not None:
        return unit_log(ctx.unit, lines)
    path = ctx.paths.log_file
    why = refusal(path)
    if why:
        return skip("log", f"cannot read {path}: {why}", "run gce diagnostic as the endpoint's owner, or root")
    if not path.exists():
        running = ctx.live is not None and ctx.live.state == "running"
        if running and system_mode():
            return skip("log", f"no {path}: under systemd the log is in the journal",
                        f"journalctl -u {UNIT.format(name=ctx.paths.name)}")
        return skip("log", f"no log yet ({path} does not exist)")
    return _log_verdict(str(path), tail(path, lines).splitlines(), f"less {path}", file=str(path))
