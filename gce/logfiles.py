"""The log files gce writes, whoever writes them (a manager, a user endpoint): bounded in size.

Each file is rotated at LOG_BYTES and LOG_BACKUPS old ones are kept (``name.log.1`` ...), so
one endpoint's logs never take more than (LOG_BACKUPS + 1) x LOG_BYTES of its disk.

A process may also write to its log file through its stdout and stderr (a user endpoint's
are opened on it by its manager, so a traceback or a print lands there). Those descriptors
would keep writing into the renamed file after a rollover, without bound once it is deleted;
the handler moves them onto the new file with it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


class _RotatingHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that takes this process's stdout and stderr along when they
    write to the same file. The size check already counts their writes: it looks at the
    file's end, not at what the handler wrote (CPython's shouldRollover seeks to the end)."""

    def doRollover(self) -> None:
        old = _identity(self.stream.fileno()) if self.stream else None
        followers = [fd for fd in (1, 2) if old is not None and _identity(fd) == old]
        super().doRollover()
        if self.stream is None:  # delay=True keeps the new file closed until the next record
            self.stream = self._open()
        for fd in followers:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None and _fileno(stream) == fd:
                    stream.flush()  # what was buffered belongs to the old file
            os.dup2(self.stream.fileno(), fd)


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


def rotating_handler(path: str | Path, fmt: str) -> logging.Handler:
    """A handler appending to PATH (created 0600 in a 0700 directory), rotated by size; this
    process's stdout and stderr follow it to the new file when they were writing to PATH."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handler = _RotatingHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def rotate_if_large(path: str | Path) -> None:
    """Rotate PATH like a log handler would when it has reached LOG_BYTES: for files a process
    writes to directly (a child's stderr), checked each time one is started on it."""
    path = Path(path)
    try:
        if path.stat().st_size < LOG_BYTES:
            return
    except FileNotFoundError:
        return
    for i in range(LOG_BACKUPS - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
