"""What a running manager says about itself, typed: the snapshot its control socket answers with,
read by `gce status`, `gce list`, the diagnostic and systemd's STATUS= line (and, filtered by
gce.daemon.public_status, the broker's status queue).

Each class reads its JSON form with ``from_dict``, tolerantly, because the reader may be a
newer or older gce than the manager that wrote it: unknown keys (a newer manager's) are
ignored and missing ones take their default; a value of the wrong type is refused with a
StatusError naming the field, never passed on to be misread later. The JSON field names are
those `gce status --json` has always printed. A user endpoint's blocks and nodes, and the task
events a Snapshot carries beside the status, are typed in gce.daemon.activity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gce.daemon.activity import BlockStatus, BreakerStatus, NodeStatus, Reader, TaskEvent, present
from gce.daemon.activity import StatusError as StatusError  # where readers have always found it

# The version of the status and control messages. Raise it when a field changes meaning or type
# (adding one does not need it: readers ignore what they do not know).
PROTOCOL = 1
RECENT_TASKS = 50  # results the outbox remembers for the status


@dataclass(frozen=True)
class LinkStatus:
    """The manager's broker connection; the URL's password is never in it."""

    url: str = ""
    connected: bool = False
    last_error: str | None = None
    refused: dict[str, str] = field(default_factory=dict)  # exchange -> why publishing there is refused

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "connected": self.connected, "last_error": self.last_error,
                "refused": dict(self.refused)}

    @classmethod
    def from_dict(cls, data: object, where: str = "broker") -> LinkStatus:
        r = Reader(data, where)
        return cls(r.text("url"), r.flag("connected"), r.opt_text("last_error"), r.words("refused") or {})


@dataclass(frozen=True)
class SpoolStatus:
    """The spool's directory, and why it cannot be written (then the manager takes no tasks)."""

    path: str = ""
    error: str | None = None
    since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error, "since": self.since}

    @classmethod
    def from_dict(cls, data: object, where: str = "spool") -> SpoolStatus:
        r = Reader(data, where)
        return cls(r.text("path"), r.opt_text("error"), r.opt_number("since"))


@dataclass(frozen=True)
class AuditStatus:
    """The audit log's file, and its lines not written: waiting (for a full or unwritable disk) and
    lost (dropped while more waited than the manager keeps); ERROR: why the last write failed."""

    path: str = ""
    waiting: int = 0
    lost: int = 0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "waiting": self.waiting, "lost": self.lost, "error": self.error}

    @classmethod
    def from_dict(cls, data: object, where: str = "audit") -> AuditStatus:
        r = Reader(data, where)
        return cls(r.text("path"), r.integer("waiting"), r.integer("lost"), r.text("error"))


@dataclass(frozen=True)
class TaskCounts:
    received: int = 0
    completed: int = 0
    failed: int = 0
    malformed: int = 0
    duplicates: int = 0
    violations: int = 0
    in_flight: int = 0
    unconfirmed_results: int = 0  # results spooled, not yet confirmed by the broker

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "completed": self.completed, "failed": self.failed,
                "malformed": self.malformed, "duplicates": self.duplicates, "violations": self.violations,
                "in_flight": self.in_flight, "unconfirmed_results": self.unconfirmed_results}

    @classmethod
    def from_dict(cls, data: object, where: str = "tasks") -> TaskCounts:
        r = Reader(data, where)
        return cls(*(r.integer(key) for key in ("received", "completed", "failed", "malformed", "duplicates",
                                                 "violations", "in_flight", "unconfirmed_results")))


@dataclass(frozen=True)
class EngineStatus:
    """What a user endpoint's engine reports (gce/uep/engines.py ``status()``); each engine fills
    what it knows, so every field may be missing (None), and missing ones stay out of the JSON."""

    type: str | None = None
    outstanding: int | None = None
    done: int | None = None
    failed: int | None = None
    blocks: int | None = None
    managers: int | None = None
    workers_total: int | None = None
    workers_idle: int | None = None
    running: int | None = None
    block_states: dict[str, str] | None = None  # block id -> parsl's state name
    error: str | None = None  # why the engine could not say more (its interchange was busy, say)
    versions: dict[str, str] | None = None  # python, parsl, gce of the user endpoint
    block_list: tuple[BlockStatus, ...] = ()  # its blocks that are not long gone
    nodes: tuple[NodeStatus, ...] = ()  # its connected parsl managers (or its local pool)
    breaker: BreakerStatus | None = None  # open: its blocks kept failing, it submits no more

    def to_dict(self) -> dict[str, Any]:
        return present({"type": self.type, "outstanding": self.outstanding, "done": self.done,
                        "failed": self.failed, "blocks": self.blocks, "managers": self.managers,
                        "workers_total": self.workers_total, "workers_idle": self.workers_idle,
                        "running": self.running,
                        "block_states": None if self.block_states is None else dict(self.block_states),
                        "error": self.error, "versions": None if self.versions is None else dict(self.versions),
                        "block_list": [b.to_dict() for b in self.block_list] if self.block_list else None,
                        "nodes": [n.to_dict() for n in self.nodes] if self.nodes else None,
                        "breaker": None if self.breaker is None else self.breaker.to_dict()})

    @classmethod
    def from_dict(cls, data: object, where: str = "engine") -> EngineStatus:
        r = Reader(data, where)
        return cls(r.opt_text("type"), r.opt_integer("outstanding"), r.opt_integer("done"), r.opt_integer("failed"),
                   r.opt_integer("blocks"), r.opt_integer("managers"), r.opt_integer("workers_total"),
                   r.opt_integer("workers_idle"), r.opt_integer("running"), r.words("block_states"), r.opt_text("error"),
                   r.words("versions"),
                   tuple(BlockStatus.from_dict(b.data, b.where) for b in r.objects("block_list")),
                   tuple(NodeStatus.from_dict(n.data, n.where) for n in r.objects("nodes")),
                   BreakerStatus.from_dict(r.data.get("breaker")))


@dataclass(frozen=True)
class UepStatus:
    """One user endpoint (a child process running one user's tasks)."""

    key: str = ""
    pid: int | None = None
    state: str = ""
    reason: str = ""
    python: str = ""
    in_flight: int = 0
    queued: int = 0
    started_at: float | None = None
    idle_for: float | None = None
    engine: EngineStatus = field(default_factory=EngineStatus)
    stops_in: float | None = None  # a multi-user endpoint's idle UEP: seconds until it is stopped for idleness

    @property
    def blocks_failing(self) -> bool:
        return self.engine.breaker is not None

    def shown_state(self) -> str:
        """The state people see: "blocks failing" while its breaker is open (the process runs, but
        its tasks are all answered with BLOCKS_FAILING), else the process's state."""
        return self.engine.breaker.state if self.engine.breaker is not None else self.state

    def shown_reason(self) -> str:
        """Why it is in its shown state, in one line; "" for a running one."""
        if self.engine.breaker is not None:
            return self.engine.breaker.short_reason()
        return self.reason if self.state != "running" else ""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "pid": self.pid, "state": self.state, "reason": self.reason,
                "python": self.python, "engine": self.engine.to_dict(), "in_flight": self.in_flight,
                "queued": self.queued, "started_at": self.started_at, "idle_for": self.idle_for,
                "stops_in": self.stops_in}

    @classmethod
    def from_dict(cls, data: object, where: str = "user_endpoint") -> UepStatus:
        r = Reader(data, where)
        return cls(r.text("key"), r.opt_integer("pid"), r.text("state"), r.text("reason"), r.text("python"),
                   r.integer("in_flight"), r.integer("queued"), r.opt_number("started_at"), r.opt_number("idle_for"),
                   EngineStatus.from_dict(r.obj("engine").data, r.name("engine")), r.opt_number("stops_in"))


@dataclass(frozen=True)
class RecentTask:
    """A task the endpoint answered lately: how it ended, in one line."""

    task_id: str = ""
    status: str = ""  # "success" or "failed"
    code: str = ""  # the error code of a failure (gce.transport.message.ErrorCode)
    message: str = ""
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "status": self.status, "code": self.code, "message": self.message,
                "finished_at": self.finished_at}

    @classmethod
    def from_dict(cls, data: object, where: str = "recent_task") -> RecentTask:
        r = Reader(data, where)
        return cls(r.text("task_id"), r.text("status"), r.text("code"), r.text("message"), r.opt_number("finished_at"))


@dataclass(frozen=True)
class EndpointStatus:
    """A running manager: what it is, what it does, its broker link, spool, tasks and user endpoints."""

    name: str = ""
    endpoint_id: str | None = None
    display_name: str | None = None
    state: str = ""  # "running", or "degraded" when it takes no tasks (REASON says why)
    reason: str = ""
    public_reason: str = ""  # fixed words for submitters: no paths, no user names
    accepting_tasks: bool = False
    spool: SpoolStatus = field(default_factory=SpoolStatus)
    pid: int | None = None
    host: str = ""
    started_at: float | None = None
    uptime: float | None = None
    gce_version: str = ""
    engine_type: str | None = None
    broker: LinkStatus = field(default_factory=LinkStatus)
    tasks: TaskCounts = field(default_factory=TaskCounts)
    user_endpoints: tuple[UepStatus, ...] = ()
    recent_tasks: tuple[RecentTask, ...] = ()
    protocol: int = PROTOCOL
    blocks_failing: int = 0  # user endpoints (of every user) whose breaker is open: a count, no names
    audit: AuditStatus = field(default_factory=AuditStatus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "endpoint_id": self.endpoint_id, "display_name": self.display_name,
            "state": self.state, "reason": self.reason, "public_reason": self.public_reason,
            "accepting_tasks": self.accepting_tasks, "spool": self.spool.to_dict(), "pid": self.pid,
            "host": self.host, "started_at": self.started_at, "uptime": self.uptime,
            "gce_version": self.gce_version, "engine_type": self.engine_type, "broker": self.broker.to_dict(),
            "tasks": self.tasks.to_dict(), "user_endpoints": [u.to_dict() for u in self.user_endpoints],
            "recent_tasks": [t.to_dict() for t in self.recent_tasks], "protocol": self.protocol,
            "blocks_failing": self.blocks_failing, "audit": self.audit.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: object) -> EndpointStatus:
        """Read a status; StatusError names the first field of the wrong type."""
        r = Reader(data, "")
        return cls(
            name=r.text("name"), endpoint_id=r.opt_text("endpoint_id"), display_name=r.opt_text("display_name"),
            state=r.text("state"), reason=r.text("reason"), public_reason=r.text("public_reason"),
            accepting_tasks=r.flag("accepting_tasks"), spool=SpoolStatus.from_dict(r.obj("spool").data),
            pid=r.opt_integer("pid"), host=r.text("host"), started_at=r.opt_number("started_at"),
            uptime=r.opt_number("uptime"), gce_version=r.text("gce_version"), engine_type=r.opt_text("engine_type"),
            broker=LinkStatus.from_dict(r.obj("broker").data),
            tasks=TaskCounts.from_dict(r.obj("tasks").data),
            user_endpoints=tuple(UepStatus.from_dict(u.data, u.where) for u in r.objects("user_endpoints")),
            recent_tasks=tuple(RecentTask.from_dict(t.data, t.where) for t in r.objects("recent_tasks")),
            protocol=r.integer("protocol", 0),  # none: a manager from before the protocol had a number
            blocks_failing=r.integer("blocks_failing"), audit=AuditStatus.from_dict(r.obj("audit").data),
        )


@dataclass(frozen=True)
class Snapshot:
    """What the `snapshot` command answers: the status, the task events after the reader's cursor
    (oldest first), the cursor to ask from next time, and how many events after the reader's
    cursor the manager no longer holds (its ring of events moved past them)."""

    status: EndpointStatus = field(default_factory=EndpointStatus)
    events: tuple[TaskEvent, ...] = ()
    cursor: int = 0
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.to_dict(), "events": [e.to_dict() for e in self.events],
                "cursor": self.cursor, "dropped": self.dropped}

    @classmethod
    def from_dict(cls, data: object) -> Snapshot:
        r = Reader(data, "")
        return cls(EndpointStatus.from_dict(r.obj("status").data),
                   tuple(TaskEvent.from_dict(e.data, e.where) for e in r.objects("events")),
                   r.integer("cursor"), r.integer("dropped"))


__all__ = ["PROTOCOL", "RECENT_TASKS", "BreakerStatus", "EndpointStatus", "EngineStatus", "LinkStatus", "RecentTask", "Snapshot",
           "SpoolStatus", "StatusError", "TaskCounts", "UepStatus"]
