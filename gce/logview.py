"""Where an endpoint's logs are, and their lines merged in time order.

One endpoint writes to several places (DESIGN.md, "Files"): the manager's file (or, for a
system endpoint under systemd, its unit's journal), one file per user endpoint (in the
endpoint's state directory, or for a multi-user endpoint run by root in each user's
``~/.gce/uep-logs/NAME/``), and parsl's side below each user endpoint's run directory
(gce/daemon/routing.py picks it): ``<run_dir>/<executor label>/interchange.log`` and
``<run_dir>/submit_scripts/*.sh.out|*.sh.err`` of the blocks. Each writes its own time
format; every line is parsed to a time, a line without one keeps the previous line's time
(a traceback stays with the line that logged it).
"""

from __future__ import annotations

import os
import pwd
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

from gce.config.paths import EndpointPaths
from gce.errors import UsageError

# 2026-12-06 21:00:00,123 (logging's asctime), 2026-12-06 21:00:00.123 (parsl),
# 2026-12-06T21:00:00+0000 (journalctl -o short-iso); no zone means local time.
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:[.,](\d{1,6}))?\s?(Z|[+-]\d\d:?\d\d)?(?=\s|$)")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EPOCH = re.compile(r"^(\d{9,11}\.\d+) ")  # parsl's interchange.log: the epoch, then its own date
_BLOCK = re.compile(r"block-(\d+)\.")  # parsl.htex.block-0.<time>.sh.out


@dataclass
class Source:
    label: str  # what each of its lines is prefixed with
    path: Path
    owner: int | None = None  # the uid that must own it (a user's file read by root), or None
    where: str = ""  # parsl's files: the path below the run directory (user/ first for a user's)
    offset: int = field(default=0, repr=False)  # how far -f has read


@dataclass(frozen=True)
class Line:
    when: float
    label: str
    text: str


def parse_time(line: str) -> float | None:
    """The time LINE starts with (seconds since the epoch), None if it starts with none."""
    e = _EPOCH.match(line)
    if e:
        return float(e.group(1))
    m = _STAMP.match(line)
    if not m:
        return None
    day, clock, frac, zone = m.groups()
    try:
        t = datetime.fromisoformat(f"{day}T{clock}")
    except ValueError:
        return None
    if zone:
        zone = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
        t = t.replace(tzinfo=datetime.fromisoformat(f"2000-01-01T00:00:00{zone}").tzinfo)
    stamp = t.timestamp()  # naive: local time, as the writing process's logging used
    return stamp + (float(f"0.{frac}") if frac else 0.0)


def parse_since(text: str, now: float | None = None) -> float:
    """--since: an ISO time (2026-12-06T20:00, local unless it has a zone) or an age (90s, 10m, 2h, 1d)."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text.strip())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"cannot use --since {text!r}", "it is neither an ISO time nor an age",
                         hint="give e.g. --since 10m, --since 2h or --since 2026-12-06T20:00") from None
    return t.timestamp()


def sources(paths: EndpointPaths, multi_user: bool, user: str | None = None) -> list[Source]:
    """Every log file of the endpoint PATHS that exists; with USER, that user's endpoints only."""
    found: list[Source] = []
    if user is None:
        found += [Source("manager", p) for p in (paths.log_file, _sibling(paths.log_file, ".stderr"))]
        found += [Source(f"uep {p.stem}", p) for p in _files(paths.uep_log_dir, "*.log", "*.stderr")]
    found += parsl_files(paths, multi_user, user, everything=False)
    if multi_user and os.geteuid() == 0:
        for name, uid, home in _accounts(user):
            logs = Path(home, ".gce", "uep-logs", paths.name)
            found += [Source(f"uep {name}/{p.stem}", p, uid) for p in _files(logs, "*.log")]
    return [s for s in found if s.path.exists()]


def parsl_files(paths: EndpointPaths, multi_user: bool, user: str | None = None,
                everything: bool = True) -> list[Source]:
    """parsl's side of the endpoint PATHS: interchange logs and the blocks' output; with
    EVERYTHING also the blocks' submit scripts and the workers' logs (for a support bundle)."""
    found: list[Source] = []
    if user is None:
        found += _parsl(paths.state_dir / "uep", None, "", everything)
    if multi_user and os.geteuid() == 0:
        for name, uid, home in _accounts(user):
            found += _parsl(Path(home, ".gce", "uep", paths.name), uid, f"{name}/", everything)
    return found


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _files(directory: Path, *patterns: str) -> list[Path]:
    try:
        return sorted(p for pattern in patterns for p in directory.glob(pattern) if not p.is_symlink())
    except OSError:
        return []


def _parsl(run_dir: Path, owner: int | None, who: str, everything: bool) -> list[Source]:
    """The parsl files of every run below RUN_DIR (a UEP's own, or one per user config digest
    in multi-user mode); WHO prefixes their labels and bundle paths."""
    found = []
    for d in [run_dir, *_files(run_dir, "*")]:
        digest = f"{who}{d.name}" if d != run_dir else who.rstrip("/")
        tag = f" {digest}" if digest else ""

        def add(label: str, path: Path) -> None:
            found.append(Source(label, path, owner, f"{who}{path.relative_to(run_dir)}"))

        for log in _files(d, "*/interchange.log"):
            add(f"interchange{tag}", log)
        for out in _files(d / "submit_scripts", "*.out", "*.err", *(("*.sh",) if everything else ())):
            m = _BLOCK.search(out.name)
            add(f"block {m.group(1) if m else out.stem}{tag}", out)
        if everything:
            for log in _files(d, "*/block-*/*/*.log"):
                add(f"worker {log.parent.parent.name}{tag}", log)
    return found


def _accounts(user: str | None) -> Iterator[tuple[str, int, str]]:
    if user is not None:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise UsageError(f"cannot show the logs of user {user!r}", "there is no such local user",
                             hint="give a local account name: getent passwd USER") from None
        yield pw.pw_name, pw.pw_uid, pw.pw_dir
        return
    seen = set()
    for pw in pwd.getpwall():
        if pw.pw_uid != 0 and pw.pw_dir.startswith("/") and pw.pw_dir not in seen:
            seen.add(pw.pw_dir)
            yield pw.pw_name, pw.pw_uid, pw.pw_dir


def unreadable(source: Source) -> str | None:
    """Why SOURCE cannot be read by us, or None."""
    try:
        _open(source).close()
    except OSError as e:
        return e.strerror or str(e)
    return None


def _open(source: Source):  # noqa: ANN202 - a binary file object
    from gce.logfiles import open_regular

    return open_regular(source.path, source.owner)  # a user's file that is not theirs: never read


def read(source: Source) -> list[Line]:
    """The lines of SOURCE from where the last read stopped (whole lines only), with their times."""
    with _open(source) as f:
        if f.seek(0, os.SEEK_END) < source.offset:
            source.offset = 0  # rotated or truncated: start the new file from its beginning
        f.seek(source.offset)
        data = f.read()
        # Until a line gives a time, the file's last write does: a block's stdout and stderr
        # carry no times at all, and parsl writes them as the block ends.
        last = os.fstat(f.fileno()).st_mtime
    end = data.rfind(b"\n") + 1
    source.offset += end
    lines: list[Line] = []
    for raw in data[:end].decode(errors="replace").splitlines():
        t = parse_time(raw)
        last = t if t is not None else last
        lines.append(Line(last, source.label, raw))
    return lines


def merge(batches: Iterable[list[Line]], since: float | None = None, count: int | None = None) -> list[Line]:
    """All lines in time order (stable: one file's order is kept for equal times), newest COUNT."""
    lines = sorted((ln for batch in batches for ln in batch), key=lambda ln: ln.when)
    if since is not None:
        lines = [ln for ln in lines if ln.when >= since]
    return lines[-count:] if count else lines


def journal_lines(unit: str, count: int) -> list[Line]:
    from gce.commands.diagnostic import journal

    lines, last = [], 0.0
    for raw in journal.tail(unit, count):
        t = parse_time(raw)
        last = t if t is not None else last
        lines.append(Line(last, "manager", raw))
    return lines


def render(line: Line) -> str:
    return f"{line.label}: {line.text}"
