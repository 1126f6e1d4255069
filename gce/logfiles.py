"""The log files gce writes, whoever writes them (a manager, a user endpoint): bounded in size.

Each file is rotated at LOG_BYTES and LOG_BACKUPS old ones are kept (``name.log.1`` ...), so
one endpoint's logs never take more than (LOG_BACKUPS + 1) x LOG_BYTES of its disk.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def rotating_handler(path: str | Path, fmt: str) -> logging.Handler:
    """A handler appending to PATH (created 0600 in a 0700 directory), rotated by size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
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
