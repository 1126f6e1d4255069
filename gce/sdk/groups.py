"""Task groups: what lets a new process reattach to an Executor's tasks (``reload_tasks``).

Every Executor belongs to a task group (``task_group_id``, made when not given). The group's
results go to a durable queue named by the group, ``gce.results.<broker user>.group-<id>``, which
outlives the process by DEFAULT_EXPIRES_DAYS; an Executor created later with the same
``task_group_id`` consumes it, so results that came back while no Executor was attached wait there.

Which tasks the group still waits for is kept in a file, ``$GCE_HOME/sdk/groups/<id>.log`` (0600):
one line per task when it is published, one when its result is taken (or its task failed to
publish or was cancelled). Why a file and not the broker: a broker account may publish only tasks
(its write on ``gce.results`` is ``^$``), so keeping the list there would need a new permission and
a message per task; the file costs a write(2) per batch of tasks, in the same process, before the
batch is published. The records of a batch are in the kernel before its first task reaches the
broker, so a process killed at any point (SIGKILL included) leaves every published task listed;
they are fsync'd at most FSYNC_SECONDS apart (and at close), which bounds what a host crash can
lose without an fsync per task. A result is acked only after its "taken" line is written, so each
result is either still in the queue or listed as taken: a reload gets each exactly once. The list
lives on the submitting host: reattach from the same account there (or a shared home directory).

One Executor at a time may hold a group (an flock on ``<id>.lock``): two consumers of one queue
would each drop the other's results as unknown.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from gce.sdk.errors import ExecutorFailed, SdkError
from gce.sdk.settings import gce_home
from gce.transport import names

log = logging.getLogger(__name__)
# How long a group's result queue is kept after its last consumer left: long enough that results
# of a job started on a Friday wait over a long weekend and a missed Monday, as a Client's queue
# does (names.CLIENT_QUEUE_EXPIRES_MS). The broker holds only what the endpoints answered.
DEFAULT_EXPIRES_DAYS = 14.0
FSYNC_SECONDS = 0.2  # an fsync costs 2-5 ms here: once per batch of submits would halve a burst's rate
COMPACT_AT = 100_000  # records written before the log is rewritten with only what is outstanding
_MAGIC = "gce-task-group 1"


class TaskGroupInUse(SdkError):
    code = "TASK_GROUP_IN_USE"


class TaskGroupUnlisted(SdkError, OSError):
    """The task list of a task_group_id the caller named cannot be kept: reloading it would fail."""

    code = "TASK_GROUP_UNLISTED"


def groups_dir() -> Path:
    return gce_home() / "sdk" / "groups"


def group_id(value: str | uuid.UUID | None) -> str:
    """VALUE as a canonical UUID string; a new one when None."""
    if value is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"task_group_id must be a UUID, got {value!r}") from None


def group_queue(broker_user: str, gid: str) -> str:
    return names.result_queue(broker_user, f"group-{gid}")


def read_log(text: str) -> tuple[int | None, dict[str, str]]:
    """(expires_ms, outstanding task id -> endpoint id) from a log's TEXT; a torn last line is ignored."""
    expires_ms, endpoint, outstanding = None, "", {}
    lines = text.split("\n")
    for line in lines[:-1]:  # whatever follows the last newline was cut short by a crash
        kind, _, value = line.partition(" ")
        if kind == "t":
            outstanding[value] = endpoint
        elif kind == "d":
            outstanding.pop(value, None)
        elif kind == "e":
            endpoint = value
        elif line.startswith(_MAGIC) and "expires_ms=" in line:
            expires_ms = int(line.rsplit("expires_ms=", 1)[1])
    return expires_ms, outstanding


class GroupLog:
    """The open, locked log of one task group; thread-safe."""

    def __init__(self, gid: str, expires_days: float | None = None, directory: Path | None = None,
                 required: bool = True) -> None:
        """REQUIRED: the caller named the group, so a list that cannot be kept is an error; else (a
        group made for this Executor) it runs without one, as Executors did before groups existed."""
        self.id = gid
        self.dir = directory or groups_dir()
        self.path, self.lock_path = self.dir / f"{gid}.log", self.dir / f"{gid}.lock"
        self._lock = threading.Lock()
        self.outstanding: dict[str, str] = {}
        self.expires_ms = int((expires_days or DEFAULT_EXPIRES_DAYS) * 24 * 3600 * 1000)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = self._take_lock()
        except OSError as e:  # a read-only or missing home directory (a compute node's)
            why = (f"error: cannot keep the task list of task group {gid} in {self.dir}: {e.strerror or e}\n"
                   "hint: set GCE_HOME to a writable directory (the list is what reload_tasks() reads)")
            if required:
                raise TaskGroupUnlisted(why) from None
            log.warning("%s; this Executor's tasks cannot be reloaded by another process", why.split("\nhint")[0])
            self.closed = True  # every method below does nothing
            return
        try:
            text = self.path.read_text() if self.path.exists() else ""
        except (OSError, UnicodeDecodeError) as e:
            os.close(self._lock_fd)
            raise ExecutorFailed(f"error: cannot read task group {gid}'s log {self.path}: {e}") from None
        logged_ms, self.outstanding = read_log(text)
        # The queue's expiry is fixed when it is first declared (RabbitMQ refuses another): a group
        # keeps the one it started with, whatever a later Executor asks.
        self.expires_ms = logged_ms or self.expires_ms
        self._endpoint, self._synced, self.closed = "", 0.0, False
        self._records, self._compact_at = text.count("\n"), COMPACT_AT
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if logged_ms is None:
            self._write(f"{_MAGIC} {gid} expires_ms={self.expires_ms}\n")

    def _take_lock(self) -> int:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise TaskGroupInUse(
                    f"error: task group {self.id} is in use: another Executor (in this or another process) holds "
                    f"{self.lock_path}\nhint: shut that Executor down first, or use another task_group_id") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else its holder removed it as we opened it: take the new one
                return fd
            os.close(fd)

    def _write(self, text: str) -> None:
        try:
            os.write(self._fd, text.encode())
        except OSError as e:
            raise ExecutorFailed(f"error: cannot record the tasks of task group {self.id} in {self.path}: {e}\n"
                                 f"hint: free space under {self.dir}") from None
        self._records += text.count("\n")

    def published(self, tasks: list[tuple[str, str]]) -> None:
        """TASKS (task id, endpoint id) are about to be published: list them before they are."""
        lines = []
        with self._lock:
            if self.closed:
                return
            for task_id, endpoint in tasks:
                if endpoint != self._endpoint:
                    lines.append(f"e {endpoint}\n")
                    self._endpoint = endpoint
                lines.append(f"t {task_id}\n")
            self._write("".join(lines))
            now = time.monotonic()
            if now - self._synced >= FSYNC_SECONDS:
                os.fsync(self._fd)
                self._synced = now

    def taken(self, task_id: str, outstanding: Callable[[], dict[str, str]]) -> None:
        """TASK_ID's result was taken (or it will never have one); OUTSTANDING gives what is left,
        read only when the log is rewritten."""
        with self._lock:
            if self.closed:
                return
            self._write(f"d {task_id}\n")
            if self._records >= self._compact_at:
                self._compact(outstanding())

    def _compact(self, outstanding: dict[str, str]) -> None:
        tmp = self.dir / f".{self.id}.tmp"
        lines = [f"{_MAGIC} {self.id} expires_ms={self.expires_ms}\n"]
        endpoint = ""
        for task_id, ep in outstanding.items():
            if ep != endpoint:
                lines.append(f"e {ep}\n")
                endpoint = ep
            lines.append(f"t {task_id}\n")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)  # whole or not at all: the old log stays until then
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._endpoint, self._records = endpoint, len(lines)
        self._compact_at = max(COMPACT_AT, 4 * len(outstanding))

    def sync(self) -> None:
        with self._lock:
            if not self.closed:
                os.fsync(self._fd)

    def close(self, remove: bool) -> None:
        """Release the group; REMOVE its files when it has nothing outstanding (its queue is deleted too)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            os.fsync(self._fd)
            os.close(self._fd)
            if remove:
                for path in (self.path, self.lock_path):
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        pass
            os.close(self._lock_fd)
