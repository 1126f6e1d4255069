"""The journal of an endpoint's systemd unit: where its manager logs under systemd.

Under systemd the manager writes to stderr, which the journal keeps (DESIGN.md, "Files"),
so there is no log file to read: journalctl gives the same last lines, time-bounded.
A user's endpoint is a unit of that user's own systemd manager, read with ``--user``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

TIMEOUT = 5.0
SYSTEMD_BOOTED = Path("/run/systemd/system")  # exists only when systemd is PID 1 (sd_booted(3))


class Unreadable(Exception):
    """journalctl is missing, failed, or did not answer in time; the message says which."""


def unit_of(name: str) -> str:
    from gce.commands.systemd import unit_name

    return unit_name(name)


def scope() -> tuple[str, ...]:
    """Root's endpoints are units of the system manager; anyone else's, of their user manager."""
    return () if os.geteuid() == 0 else ("--user",)


def command(unit: str, lines: int) -> list[str]:
    return ["journalctl", *scope(), "-u", unit, "-n", str(lines), "--no-pager", "-o", "short-iso"]


def booted() -> bool:
    return SYSTEMD_BOOTED.is_dir() and shutil.which("journalctl") is not None


def tail(unit: str, lines: int) -> list[str]:
    """The last LINES lines UNIT logged, oldest first; [] when the journal holds none."""
    argv = command(unit, lines)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=TIMEOUT)
    except FileNotFoundError:
        raise Unreadable("journalctl is not installed") from None
    except subprocess.TimeoutExpired:
        raise Unreadable(f"journalctl gave no answer within {TIMEOUT:g} s") from None
    # journalctl's own notes ("-- No entries --", "-- Boot ... --") are not the unit's lines.
    out = [ln for ln in proc.stdout.splitlines() if not (ln.startswith("-- ") and ln.endswith(" --"))]
    if proc.returncode != 0:
        why = (proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()[0]
        raise Unreadable(f"{' '.join(argv)} failed: {why}")
    if not out and proc.stderr.strip():
        # e.g. "No journal files were opened due to insufficient permissions."
        raise Unreadable(proc.stderr.strip().splitlines()[0])
    return out[-lines:]
