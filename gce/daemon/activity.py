"""What an endpoint is doing, typed: the blocks and nodes a user endpoint's engine reports, the task
events the manager keeps, and the typed reads every status class shares.

A user endpoint runs its user's code, and a reader may be a newer or older gce than the writer: so
each class reads its JSON form with ``from_dict`` tolerantly (unknown keys ignored, missing ones
defaulted) and refuses a value of the wrong type with a StatusError naming the field.

This module imports no other part of gce: gce.daemon.status builds the endpoint's status (and the
Snapshot that wraps it with events) on top of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EVENTS = ("received", "dispatched", "success", "failed")  # what a TaskEvent's `event` says


class StatusError(ValueError):
    """A status that cannot be read: FIELD holds a value of the wrong type."""

    def __init__(self, field_name: str, expected: str, value: object) -> None:
        super().__init__(f"field {field_name!r} should be {expected}, not {type(value).__name__}")
        self.field = field_name


class Reader:
    """Typed reads from one JSON object; WHERE names it in errors ("user_endpoints[0].engine")."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise StatusError(where or "status", "an object", data)
        self.data: Mapping[str, Any] = data
        self.where = where

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _value(self, key: str, types: tuple[type, ...], expected: str) -> Any:
        value = self.data.get(key)
        # bool is an int to Python, never to us
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise StatusError(self.name(key), expected, value)
        return value

    def opt_text(self, key: str) -> str | None:
        value: str | None = self._value(key, (str,), "a string")
        return value

    def text(self, key: str, default: str = "") -> str:
        value = self.opt_text(key)
        return default if value is None else value

    def opt_integer(self, key: str) -> int | None:
        value: int | None = self._value(key, (int,), "an integer")
        return value

    def integer(self, key: str, default: int = 0) -> int:
        value = self.opt_integer(key)
        return default if value is None else value

    def opt_number(self, key: str) -> float | None:
        value = self._value(key, (int, float), "a number")
        return None if value is None else float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value: bool | None = self._value(key, (bool,), "true or false")
        return default if value is None else value

    def obj(self, key: str) -> Reader:
        value = self.data.get(key)
        return Reader({} if value is None else value, self.name(key))

    def objects(self, key: str) -> list[Reader]:
        value = self._value(key, (list,), "a list") or []
        return [Reader(item, f"{self.name(key)}[{i}]") for i, item in enumerate(value)]

    def words(self, key: str) -> dict[str, str] | None:
        """A JSON object of strings (e.g. what the broker refused, by exchange)."""
        if self.data.get(key) is None:
            return None
        inner = self.obj(key)
        return {k: inner.text(k) for k in inner.data}


def present(pairs: Mapping[str, Any]) -> dict[str, Any]:
    """PAIRS without the ones that are None (what a writer did not know stays out of the JSON)."""
    return {k: v for k, v in pairs.items() if v is not None}


@dataclass(frozen=True)
class BlockTransition:
    """One change of a block's state, with the scheduler's own word and reason when known."""

    at: float | None = None
    state: str = ""
    raw_state: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "state": self.state, "raw_state": self.raw_state, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: object, where: str = "transition") -> BlockTransition:
        r = Reader(data, where)
        return cls(r.opt_number("at"), r.text("state"), r.opt_text("raw_state"), r.text("reason"))


@dataclass(frozen=True)
class BlockStatus:
    """A block (one batch job, or a local pool's slot) a user endpoint's engine submitted."""

    block_id: str = ""
    job_id: str | None = None
    provider: str = ""
    state: str = ""  # pending, running, completed, failed, cancelled, vanished, submitted
    raw_state: str | None = None  # the scheduler's own word
    reason: str = ""  # why the last transition
    submitted_at: float | None = None
    updated_at: float | None = None
    walltime: str | None = None
    walltime_left: float | None = None
    workers: int = 0
    transitions: tuple[BlockTransition, ...] = ()
    submit_script: str | None = None
    stdout: str | None = None
    stderr: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"block_id": self.block_id, "job_id": self.job_id, "provider": self.provider, "state": self.state,
                "raw_state": self.raw_state, "reason": self.reason, "submitted_at": self.submitted_at,
                "updated_at": self.updated_at, "walltime": self.walltime, "walltime_left": self.walltime_left,
                "workers": self.workers, "transitions": [t.to_dict() for t in self.transitions],
                "submit_script": self.submit_script, "stdout": self.stdout, "stderr": self.stderr}

    @classmethod
    def from_dict(cls, data: object, where: str = "block") -> BlockStatus:
        r = Reader(data, where)
        return cls(r.text("block_id"), r.opt_text("job_id"), r.text("provider"), r.text("state"),
                   r.opt_text("raw_state"), r.text("reason"), r.opt_number("submitted_at"),
                   r.opt_number("updated_at"), r.opt_text("walltime"), r.opt_number("walltime_left"),
                   r.integer("workers"),
                   tuple(BlockTransition.from_dict(t.data, t.where) for t in r.objects("transitions")),
                   r.opt_text("submit_script"), r.opt_text("stdout"), r.opt_text("stderr"))


@dataclass(frozen=True)
class NodeTask:
    """A task a busy worker of a node runs."""

    task_id: str = ""
    started_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "started_at": self.started_at}

    @classmethod
    def from_dict(cls, data: object, where: str = "task") -> NodeTask:
        r = Reader(data, where)
        return cls(r.text("task_id"), r.opt_number("started_at"))


@dataclass(frozen=True)
class NodeStatus:
    """One connected parsl manager (a node's workers), or a local pool."""

    manager: str = ""
    host: str = ""
    block_id: str | None = None
    workers: int = 0
    busy: int = 0
    idle: int = 0
    last_heartbeat: float | None = None
    python: str | None = None
    parsl: str | None = None
    tasks: tuple[NodeTask, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"manager": self.manager, "host": self.host, "block_id": self.block_id, "workers": self.workers,
                "busy": self.busy, "idle": self.idle, "last_heartbeat": self.last_heartbeat,
                "python": self.python, "parsl": self.parsl, "tasks": [t.to_dict() for t in self.tasks]}

    @classmethod
    def from_dict(cls, data: object, where: str = "node") -> NodeStatus:
        r = Reader(data, where)
        return cls(r.text("manager"), r.text("host"), r.opt_text("block_id"), r.integer("workers"),
                   r.integer("busy"), r.integer("idle"), r.opt_number("last_heartbeat"), r.opt_text("python"),
                   r.opt_text("parsl"), tuple(NodeTask.from_dict(t.data, t.where) for t in r.objects("tasks")))


SHORT_REASON = 160  # characters of a breaker's reason that a one-line view shows


@dataclass(frozen=True)
class BreakerStatus:
    """Why a user endpoint's engine stopped submitting blocks: its last ones failed one after the
    other (gce/uep/breaker.py). While it is open, the user endpoint answers every task itself with
    BLOCKS_FAILING and REASON; `gce resume` or a change of its config closes it.

    Read leniently, unlike the other classes: it comes from the user's own process and matters
    most when things go wrong, so a field of the wrong type takes its default rather than hiding
    that the breaker is open."""

    state: str = "blocks failing"
    since: float | None = None
    reason: str = ""  # the whole sentence the tasks are answered with
    failures: int | None = None  # failed blocks in a row
    limit: int | None = None  # engine.block_failure_limit
    block_id: str = ""
    job_id: str | None = None
    exit_code: int | None = None
    raw_state: str | None = None  # the scheduler's own word for the last block
    scheduler_reason: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""

    def short_reason(self, limit: int = SHORT_REASON) -> str:
        """The reason's first line, cut to LIMIT characters, for a table's cell or a status line."""
        lines = self.reason.strip().splitlines()
        first = lines[0] if lines else f"{self.failures or 'several'} blocks in a row failed"
        if first.lower().startswith(self.state + ":"):  # the views say the state before it
            first = first[len(self.state) + 1:].strip()
        return first if len(first) <= limit else first[:limit - 1] + "…"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "reason": self.reason, "failures": self.failures,
                "limit": self.limit, "block_id": self.block_id, "job_id": self.job_id, "exit_code": self.exit_code,
                "raw_state": self.raw_state, "scheduler_reason": self.scheduler_reason,
                "stdout_tail": self.stdout_tail, "stderr_tail": self.stderr_tail}

    @classmethod
    def from_dict(cls, data: object) -> BreakerStatus | None:
        """The open breaker DATA describes; None for a closed one (null) or anything not an object."""
        if not isinstance(data, Mapping):
            return None

        def pick(key: str, types: tuple[type, ...], default: Any) -> Any:
            value = data.get(key)
            return value if isinstance(value, types) and not isinstance(value, bool) else default

        since = pick("since", (int, float), None)
        return cls(pick("state", (str,), "blocks failing") or "blocks failing",
                   None if since is None else float(since), pick("reason", (str,), ""),
                   pick("failures", (int,), None), pick("limit", (int,), None),
                   str(pick("block_id", (str, int), "")), pick("job_id", (str,), None),
                   pick("exit_code", (int,), None), pick("raw_state", (str,), None),
                   pick("scheduler_reason", (str,), None), pick("stdout_tail", (str,), ""),
                   pick("stderr_tail", (str,), ""))


@dataclass(frozen=True)
class TaskEvent:
    """One step of a task through the manager; SEQ grows by one per event (a reader's cursor)."""

    seq: int = 0
    at: float = 0.0
    task_id: str = ""
    event: str = ""  # one of EVENTS
    function_name: str = ""  # from the task header the SDK sets; never from the payload
    submitter: str = ""  # the broker identity
    local_user: str = ""
    uep: str = ""
    code: str = ""
    message: str = ""
    queued_for: float | None = None
    ran_for: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "task_id": self.task_id, "event": self.event,
                "function_name": self.function_name, "submitter": self.submitter, "local_user": self.local_user,
                "uep": self.uep, "code": self.code, "message": self.message, "queued_for": self.queued_for,
                "ran_for": self.ran_for}

    @classmethod
    def from_dict(cls, data: object, where: str = "event") -> TaskEvent:
        r = Reader(data, where)
        return cls(r.integer("seq"), r.opt_number("at") or 0.0, r.text("task_id"), r.text("event"),
                   r.text("function_name"), r.text("submitter"), r.text("local_user"), r.text("uep"),
                   r.text("code"), r.text("message"), r.opt_number("queued_for"), r.opt_number("ran_for"))


@dataclass(frozen=True)
class TaskDetail:
    """What the `task` command answers: the task's last event, and for a failure its sentence and
    the remote traceback text its user endpoint sent (empty when it sent none)."""

    event: TaskEvent = field(default_factory=TaskEvent)
    error: str = ""
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**self.event.to_dict(), "error": self.error, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: object, where: str = "task") -> TaskDetail:
        r = Reader(data, where)
        return cls(TaskEvent.from_dict(data, where), r.text("error"), r.text("traceback"))
