"""The manager's audit log writer: one JSON line per task event (gce.auditlog says where and what).

It is fed by the manager's task events (gce.daemon.snapshot.TaskEvents), the same calls that feed
`gce monitor`, so each event has one place in the code where it happens. An audit line must never
stop a task: when the disk is full, read-only or the file unwritable, lines wait in memory (at most
WAITING_MAX; older ones beyond that are dropped and counted as lost) and are written once a later
attempt succeeds (the next event, or the manager's housekeeping tick). What waits and what was lost
shows in `gce status`.

The lines of one turn of the manager's loop are one write() on an O_APPEND descriptor (a write each
cost the manager a tenth of its time in a burst), so a reader never sees two lines interleaved;
a short write (a disk that filled mid-line) is cut back off, so the file holds only whole lines.
They are written before anything that turn did leaves the manager (asyncio runs the flush, queued
with call_soon, before the socket writes the next poll finds): a kill -9 loses no line of an event
whose effect (an ack, a result, a frame to a user endpoint) left the manager.
The file is created 0600 by the manager's account: root's for a multi-user endpoint, the owner's for
a personal one (gce.logfiles.open_log: never through a symlink, never another user's file).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from gce import auditlog
from gce.errors import GceError
from gce.logfiles import open_log
from gce.transport.message import ErrorCode
from gce.transport.urls import redact_all

log = logging.getLogger(__name__)
WAITING_MAX = 10_000  # lines kept in memory while the file cannot be written
RETRY_AFTER = 1.0  # seconds between two attempts at an unwritable file
REASON_MAX = 500
USER_CONFIG_INVALID = "USER_CONFIG_INVALID"  # gce.config.user_schema.UserConfigInvalid.code
# Answers the endpoint gives before a task runs, by its own rules: audited as "refused", with the
# endpoint's sentence. Any other failure is audited as "finished" with its code alone.
REFUSALS = frozenset({ErrorCode.BAD_MESSAGE, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.VERSION_MISMATCH,
                      ErrorCode.FUNCTION_NOT_ALLOWED, ErrorCode.IDENTITY_NOT_MAPPED, ErrorCode.IDENTITY_REFUSED,
                      USER_CONFIG_INVALID, "USER_CONFIG_TEMPLATE_ERROR", ErrorCode.SERIALIZER_NOT_ALLOWED})


def audit_reason(code: str, sentence: str) -> str:
    """The endpoint's sentence for a refusal, as the audit keeps it: no URL password, and not the
    schema's complaint about a user endpoint config, which quotes the user's values."""
    if code == USER_CONFIG_INVALID:
        return "the user endpoint config does not fit the endpoint's user config schema (values are not audited)"
    return redact_all(sentence)[:REASON_MAX]


class AuditLog:
    def __init__(self, path: Path, endpoint: str, endpoint_id: str, *, max_bytes: int = auditlog.MAX_BYTES,
                 backups: int = auditlog.BACKUPS, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.endpoint = endpoint
        self.endpoint_id = endpoint_id
        self.max_bytes = max_bytes
        self.backups = backups
        self.clock = clock
        self.lost = 0  # lines dropped: they waited while WAITING_MAX newer ones came
        self.error = ""  # why the last attempt failed; "" once a line was written again
        self._waiting: deque[bytes] = deque()
        self._turn: list[bytes] = []  # this loop turn's lines, written together at its end
        self._fd: int | None = None
        self._size = 0
        self._retry_at = 0.0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def write(self, event: str, task_id: str, **fields: Any) -> None:
        """Append EVENT of TASK_ID with FIELDS (empty ones left out). Never raises."""
        try:
            record = {"ts": round(self.clock(), 6), "event": event, "task_id": task_id, "endpoint": self.endpoint,
                      "endpoint_id": self.endpoint_id, **{k: v for k, v in fields.items() if v not in ("", None)}}
            line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        except Exception:  # a bug here must not cost the task
            log.exception("could not make the audit line of task %s (%s)", task_id, event)
            self.lost += 1
            return
        if not self._waiting:  # the usual case: to the file at the end of this loop turn
            self._turn.append(line)
            if len(self._turn) == 1:
                try:
                    asyncio.get_running_loop().call_soon(self.write_turn)
                except RuntimeError:  # no loop runs (a test, a command): at once
                    self.write_turn()
            return
        self._waiting.append(line)
        self._trim()
        self.flush()

    def write_turn(self) -> None:
        """Write this loop turn's lines in one write(); if the file refuses them, they wait."""
        lines, self._turn = self._turn, []
        if not lines:
            return
        if self._waiting:  # older lines wait for the file: these go after them
            self._waiting.extend(lines)
            self._trim()
            return self.flush()
        try:
            self._append(b"".join(lines))
        except (OSError, GceError) as e:
            self._waiting.extend(lines)
            self._trim()
            self._failed(e)

    def _trim(self) -> None:
        while len(self._waiting) > WAITING_MAX:
            self._waiting.popleft()
            self.lost += 1

    def flush(self) -> None:
        """Write what waits, oldest first, as far as the file takes it."""
        if not self._waiting or time.monotonic() < self._retry_at:
            return
        try:
            while self._waiting:
                self._append(self._waiting[0])
                self._waiting.popleft()
        except (OSError, GceError) as e:
            self._failed(e)
            return
        if self.error:
            log.warning("the audit log %s is written again (%d lines were lost meanwhile)", self.path, self.lost)
            self.error = ""

    def check(self) -> None:
        """On the manager's housekeeping tick: write what waits, and reopen the file if it was moved
        or removed under us (lines written to a removed file would be lost unseen)."""
        if self._fd is not None:
            try:
                st, mine = os.stat(self.path), os.fstat(self._fd)
                moved = (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino)
            except OSError:
                moved = True
            if moved:
                self._close()
        self.flush()

    def _failed(self, e: Exception) -> None:
        why = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
        if why != self.error:
            log.error("cannot write the audit log %s: %s; %d lines wait for it", self.path, why, len(self._waiting))
        self.error = why
        self._retry_at = time.monotonic() + RETRY_AFTER
        if self._fd is not None and not (isinstance(e, OSError) and e.errno == errno.ENOSPC):
            self._close()  # a file made unwritable or replaced: opened afresh next time

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            self._open()
        if self._size and self._size + len(line) > self.max_bytes:
            self._close()
            auditlog.rotate(self.path, self.backups)
            self._open()
        assert self._fd is not None
        written = os.write(self._fd, line)
        if written != len(line):  # the disk filled mid-line: the file keeps whole lines only
            os.ftruncate(self._fd, self._size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._size += written

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = open_log(self.path)
        self._size = os.fstat(self._fd).st_size

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def close(self) -> None:
        """Write what can be written; what cannot is lost (counted, and said in the log)."""
        self._retry_at = 0.0
        self.write_turn()
        self.flush()
        if self._waiting:
            self.lost += len(self._waiting)
            log.error("%d audit lines could not be written to %s: %s", len(self._waiting), self.path, self.error)
            self._waiting.clear()
        self._close()
