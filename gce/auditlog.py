"""An endpoint's audit log: where it lives, how it is rotated and how it is read back.

One JSON object per line, one line per task event, written by the manager alone
(gce.daemon.audit) and read by `gce audit` (gce.commands.audit): neither imports the other, both
import this. It lives under the endpoint's log directory, in ``audit/NAME.jsonl``, with its
rotated files beside it (``NAME.jsonl.1`` is the newest of those, ``NAME.jsonl.BACKUPS`` the
oldest): /var/log/gce/audit/NAME.jsonl for root's endpoints, ~/.gce/NAME/audit/NAME.jsonl for a
user's.

A line holds who sent which function to which endpoint, to whom it was mapped and what became of
it; never a payload, an argument, a user endpoint config value or a broker URL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from gce.config.paths import EndpointPaths

MAX_BYTES = 10 * 1024 * 1024  # a file is rotated before it would grow past this
BACKUPS = 5  # rotated files kept: at most (BACKUPS + 1) x MAX_BYTES of audit per endpoint
EVENTS = ("received", "mapped", "sent", "started", "finished", "refused")


def audit_path(paths: EndpointPaths) -> Path:
    """Where endpoint PATHS writes its audit log."""
    return paths.log_file.parent / "audit" / f"{paths.name}.jsonl"


def rotated(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.{i}")


def rotate(path: Path, backups: int = BACKUPS) -> None:
    """Move PATH to ``.1``, shifting the rotated files one place older up to the first free number
    (when none is free, the oldest, ``.BACKUPS``, is dropped).

    Each step is one rename, oldest first, so a crash between two of them leaves every line in some
    file, with a number free; the next rotation fills that gap instead of dropping a file."""
    gap = next((i for i in range(1, backups + 1) if not rotated(path, i).exists()), backups)
    for i in range(gap - 1, 0, -1):
        os.replace(rotated(path, i), rotated(path, i + 1))
    if path.exists():
        os.replace(path, rotated(path, 1))


def files(path: Path, backups: int = BACKUPS) -> list[Path]:
    """PATH's files that exist, oldest first."""
    found = [rotated(path, i) for i in range(backups, 0, -1)] + [path]
    return [p for p in found if p.exists()]


def read(path: Path, since: float | None = None, local_user: str | None = None) -> Iterator[dict[str, Any]]:
    """The records of PATH and its rotated files, oldest first: from SINCE (a time) on and, with
    LOCAL_USER, only the tasks mapped to that account (each of its events, the earlier ones of its
    tasks too). A line that is not a JSON object (one cut by a crash) is skipped."""
    mine: set[str] = set()
    records: list[dict[str, Any]] = []
    for p in files(path):
        with open(p, "rb") as f:
            for raw in f:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                if local_user is not None and record.get("local_user") == local_user:
                    mine.add(str(record.get("task_id")))
                records.append(record)
    # A task's start is learnt from its result, after events of other tasks that came later: in
    # time order, not in the order written (a stable sort keeps the order of equal times).
    records.sort(key=_time)
    for record in records:
        if since is not None and _time(record) < since:
            continue
        if local_user is not None and str(record.get("task_id")) not in mine:
            continue
        yield record


def _time(record: dict[str, Any]) -> float:
    ts = record.get("ts")
    return float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else 0.0
