"""Where a task runs: its working directory, its own sandbox directory, and what it is told.

Globus Compute's layout, which its users know: an engine's ``working_dir`` (default
``tasks_working_dir``, relative to the user endpoint's run directory; an absolute path or ``~``
as written) is where tasks run, and with ``run_in_sandbox: true`` each task runs in
``<working_dir>/<task id>``, a directory of its own created 0700 by the worker (so by the mapped
user). Sandboxes are kept after the task, as Globus Compute keeps them: they hold its output.

Every task sees ``GCE_TASK_ID``, and ``GCE_TASK_SANDBOX_DIR`` when sandboxed, plus what the user
endpoint adds for it (the submitter's versions: gce.uep.setup_teardown). The working directory
and the environment belong to a process, so they are set by the function wrapper on the worker
(a process pool's or parsl's) around one task and put back after it. A thread pool runs its tasks
in one process at once: it takes neither option (refused when its config is checked) and sets no
variable, which would be another task's a moment later.

The task id becomes a path only when it is a UUID in canonical form; a sandbox that exists as a
symlink is refused (a directory is opened with O_NOFOLLOW and entered by its descriptor); a
directory that cannot be made (a full disk) answers the task with a sentence saying so.
"""

from __future__ import annotations

import errno
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from gce.transport.message import ErrorCode
from gce.transport.payload import pack_err

ENV_TASK_ID = "GCE_TASK_ID"
ENV_SANDBOX = "GCE_TASK_SANDBOX_DIR"
DEFAULT_WORKING_DIR = "tasks_working_dir"
KEYS = ("run_in_sandbox", "working_dir")  # engine options gce takes for itself


class SandboxError(Exception):
    """The task's directory cannot be used; str() is the sentence its submitter gets."""


@dataclass(frozen=True)
class TaskDirs:
    """An engine's choice: tasks run in WORKING_DIR (None: where the worker started), each in a
    sandbox of its own below it when SANDBOX."""

    working_dir: str | None = None
    sandbox: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # for every task (the submitter's versions)

    def context(self, task_id: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """What the worker needs to place task TASK_ID (plain data: it is pickled to the worker)."""
        return {"task_id": task_id, "working_dir": self.working_dir, "sandbox": self.sandbox,
                "env": {**self.env, **(env or {})}}


def take(options: dict[str, Any], run_dir: str, engine_type: str) -> TaskDirs:
    """Remove gce's own keys from an engine's OPTIONS and say where its tasks run. ValueError for a
    thread pool given either: its tasks share one process, and so one working directory."""
    sandbox = bool(options.pop("run_in_sandbox", False))
    working = options.pop("working_dir", None)
    if engine_type == "ThreadPoolEngine" and (sandbox or working is not None):
        raise ValueError("run_in_sandbox and working_dir need a process per task (the working directory "
                         "belongs to a process, and a thread pool runs its tasks in one): use a "
                         "ProcessPoolEngine or a HighThroughputEngine")
    if not sandbox and working is None:
        return TaskDirs()
    base = os.path.join(run_dir, os.path.expanduser(str(working or DEFAULT_WORKING_DIR)))  # absolute wins
    return TaskDirs(os.path.abspath(base), sandbox)


def _directory(path: str, what: str) -> int:
    """A descriptor of directory PATH, made 0700 if missing; SandboxError naming WHAT otherwise."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # a task sent again after its worker died finds its sandbox
    except OSError as e:
        if e.errno == errno.ENOENT and what == "working directory":
            try:
                os.makedirs(path, 0o700, exist_ok=True)
            except OSError as e2:
                raise SandboxError(_cannot(what, path, e2)) from None
        else:
            raise SandboxError(_cannot(what, path, e)) from None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise SandboxError(f"the task's {what} {path} is a symbolic link: refusing to run the task there "
                               "(a link could send its files anywhere)") from None
        raise SandboxError(_cannot(what, path, e)) from None


def _cannot(what: str, path: str, e: OSError) -> str:
    why = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        why += " (the disk or your quota is full: free some space there)"
    return f"the task's {what} {path} could not be created: {why}"


class Placed:
    """A task entered into its directory and environment; leave() puts the worker back."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.saved = {k: os.environ.get(k) for k in (ENV_TASK_ID, ENV_SANDBOX, *context.get("env", {}))}
        self.cwd: int | None = None
        task_id = str(context.get("task_id") or "")
        base = context.get("working_dir")
        sandbox_dir = None
        if context.get("sandbox"):
            if not _is_uuid(task_id):
                raise SandboxError(f"the task id {task_id[:80]!r} is not a UUID: it cannot name a sandbox directory")
            sandbox_dir = os.path.join(str(base), task_id)
        if base:
            fd = _directory(str(base), "working directory")
            if sandbox_dir is not None:
                os.close(fd)
                fd = _directory(sandbox_dir, "sandbox directory")
            try:
                self.cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                os.fchdir(fd)
            finally:
                os.close(fd)
        os.environ.update({str(k): str(v) for k, v in context.get("env", {}).items()})
        if task_id:
            os.environ[ENV_TASK_ID] = task_id
        os.environ.pop(ENV_SANDBOX, None)
        if sandbox_dir is not None:
            os.environ[ENV_SANDBOX] = sandbox_dir

    def leave(self) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.cwd is not None:
            try:
                os.fchdir(self.cwd)
            finally:
                os.close(self.cwd)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def run_task(payload: bytes, max_result_bytes: int, max_output_bytes: int, time_limit: float | None,
             context: Mapping[str, Any] | None) -> bytes:
    """gce.uep.execute.run_task in the task's directory and environment (CONTEXT; None: as it is).
    Runs on a worker: a directory that cannot be used answers the task, and the worker goes on."""
    from gce.uep.execute import run_task as run

    if context is None:
        return run(payload, max_result_bytes, max_output_bytes, time_limit)
    try:
        placed = Placed(context)
    except SandboxError as e:
        return pack_err(ErrorCode.ENDPOINT_FAILED, str(e))
    try:
        return run(payload, max_result_bytes, max_output_bytes, time_limit)
    finally:
        placed.leave()


def run_batch(payloads: list[bytes], max_result_bytes: int, max_output_bytes: int,
              contexts: list[Mapping[str, Any] | None]) -> list[bytes]:
    """Several small tasks one after the other on one worker, each in its own place (parsl batches)."""
    return [run_task(p, max_result_bytes, max_output_bytes, None, c) for p, c in zip(payloads, contexts)]
