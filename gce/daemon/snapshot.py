"""What a running manager says about itself, taken from the manager as it is now: the typed
status (gce.daemon.status) its control socket, `gce status`, `gce list`, the diagnostic and
systemd's STATUS= line read (and, filtered by gce.daemon.public_status, the broker's status queue).

It reads the manager through the small Protocol below, so that this module does not import the
manager (which imports it). It also keeps the manager's history of tasks (TaskEvents), which a
snapshot sends along.
"""

from __future__ import annotations

import os
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from itertools import islice
from typing import Any, Callable, Protocol

from gce import __version__
from gce.daemon.activity import TaskDetail, TaskEvent
from gce.daemon.audit import REFUSALS, AuditLog, audit_reason
from gce.daemon.spool import RESULT, TASK
from gce.daemon.status import (AuditStatus, EndpointStatus, EngineStatus, LinkStatus, SpoolStatus, StatusError,
                               TaskCounts, UepStatus)
from gce.transport.urls import redact


class _Uep(Protocol):
    key: str
    pid: int | None
    state: Any  # a word, or a str Enum whose value is that word
    reason: str
    python: str
    engine_status: dict[str, Any]
    in_flight: dict[str, int]
    queued: list[str]
    started_at: float

    def idle_for(self) -> float: ...


class _Manager(Protocol):
    """What the snapshot reads of gce.daemon.manager.Manager."""

    paths: Any  # EndpointPaths: .name
    config: Any  # EndpointConfig: endpoint_id, display_name, broker_url, engine
    link: Any  # EndpointLink: connected, last_error, refused, problems()
    commit: Any  # GroupCommit: error, error_since
    spool: Any  # Spool: dir, entries
    outbox: Any  # Outbox: recent
    started_at: float
    events: TaskEvents  # and the audit log they feed

    @property
    def uep(self) -> Any: ...  # _Uep | None: a personal endpoint's one UEP

    @property
    def counts(self) -> Mapping[str, int]: ...

    @property
    def ueps(self) -> Mapping[Any, Any]: ...  # key -> _Uep


def _word(state: object) -> str:
    return str(state.value) if isinstance(state, Enum) else str(state)


def _engine(uep: _Uep) -> EngineStatus:
    # A UEP runs its user's code: what it reports is read, never trusted to be well formed. One
    # that is not spoils its own line of the status, not the status of the whole endpoint.
    try:
        return EngineStatus.from_dict(uep.engine_status or {})
    except StatusError as e:
        return EngineStatus(error=f"the user endpoint reported an unreadable engine status: {e}")


def uep_status(uep: _Uep, idle_timeout: float | None = None) -> UepStatus:
    """UEP's status; IDLE_TIMEOUT when the endpoint stops it after that long without work (the
    UEPs of a multi-user endpoint: gce.daemon.dispatch.Dispatcher.stop_idle)."""
    idle = uep.idle_for()
    return UepStatus(
        key=uep.key, pid=uep.pid, state=_word(uep.state), reason=uep.reason, python=uep.python,
        in_flight=len(uep.in_flight), queued=len(uep.queued), started_at=uep.started_at or None,
        idle_for=idle, stops_in=max(0.0, idle_timeout - idle) if idle_timeout is not None and idle > 0 else None,
        engine=_engine(uep),
    )


def snapshot(m: _Manager) -> EndpointStatus:
    """The manager's status now: what it is and does, with its user endpoints."""
    personal = () if m.uep is None else (uep_status(m.uep),)
    idle_timeout = float(m.config.idle_timeout)
    ueps = personal + tuple(uep_status(u, idle_timeout) for u in m.ueps.values())
    refused = m.link.problems()  # fixed words: the broker's copy of the status shows them to submitters
    problems = ([f"not taking tasks: {m.commit.error}"] if m.commit.error else []) + refused
    # A personal endpoint whose one user endpoint answers every task BLOCKS_FAILING does nothing
    # useful: it is degraded (it still takes tasks, and answers them at once). A multi-user one
    # still serves its other users; its failing user endpoints show on their own lines.
    failing = [u.shown_reason() for u in personal if u.blocks_failing]
    entries = m.spool.entries.values()
    return EndpointStatus(
        name=m.paths.name, endpoint_id=m.config.endpoint_id, display_name=m.config.display_name,
        state="degraded" if problems or failing else "running",
        reason="; ".join(problems + [f"blocks failing: {r}" for r in failing]), public_reason="; ".join(refused),
        accepting_tasks=not problems and m.link.connected,
        spool=SpoolStatus(str(m.spool.dir), m.commit.error, m.commit.error_since),
        pid=os.getpid(), host=socket.gethostname(), started_at=m.started_at, uptime=time.time() - m.started_at,
        gce_version=__version__, engine_type=m.config.engine.get("type"),
        broker=LinkStatus(redact(m.link.where), m.link.connected, m.link.last_error, dict(m.link.refused)),
        tasks=TaskCounts(**{k: v for k, v in m.counts.items() if k in TaskCounts.__dataclass_fields__},
                         in_flight=sum(1 for e in entries if e.kind == TASK),
                         unconfirmed_results=sum(1 for e in entries if e.kind == RESULT)),
        user_endpoints=ueps, recent_tasks=tuple(m.outbox.recent),
        blocks_failing=sum(1 for u in ueps if u.blocks_failing),
        audit=_audit(m.events.audit),
    )


def _audit(audit: AuditLog | None) -> AuditStatus:
    if audit is None:
        return AuditStatus()
    return AuditStatus(str(audit.path), audit.waiting, audit.lost, audit.error)


RING = 10_000  # task events the manager keeps
FAILURES_KEPT = 200  # failed tasks whose sentence and traceback it keeps for the `task` command
TRACEBACK_MAX = 16 * 1024  # characters of a remote traceback kept
ERROR_MAX = 4 * 1024  # characters of a failure's sentence kept


@dataclass
class _Task:
    """What the events know of a task between its intake and its result."""

    function_name: str = ""
    submitter: str = ""
    local_user: str = ""
    uid: int | None = None  # the mapped account's, when known: who may see the task's events
    uep: str = ""
    received_at: float | None = None
    dispatched_at: float | None = None
    function_id: str = ""
    mapped: bool = False  # its "mapped" audit line is written (routing asks again after each wait)
    started: bool = False


def _line(text: str, limit: int = 200) -> str:
    lines = text.strip().splitlines()
    return lines[0][:limit] if lines else ""


class TaskEvents:
    """The manager's bounded ring of task events, and the last failures' sentences and tracebacks.

    Each event gets the next ``seq``; readers ask for the events after a cursor, which is a slice of
    the ring's newest end (never a scan of all of it), so being polled every second costs the
    manager only what changed. Each event refers to its task's record, whose account (uid) may be
    learnt after the task arrived (a multi-user endpoint maps its submitter meanwhile): so a reply
    holds the events a peer may see, the earlier ones of their task too.
    """

    def __init__(self, size: int = RING, failures: int = FAILURES_KEPT, audit: AuditLog | None = None) -> None:
        self.audit = audit  # the same events, one JSON line each, in the endpoint's audit log
        self._ring: deque[tuple[_Task, TaskEvent]] = deque(maxlen=size)
        self._size = size
        self._failures_kept = failures
        self.seq = 0  # the last event's
        self._tasks: dict[str, _Task] = {}  # received, not answered yet
        self._last: OrderedDict[str, tuple[_Task, TaskEvent]] = OrderedDict()  # task id -> its last event
        self._failures: OrderedDict[str, tuple[str, str]] = OrderedDict()  # task id -> (sentence, traceback)
        self._tracebacks: OrderedDict[str, str] = OrderedDict()  # a result's traceback, until the result is taken

    def _add(self, task_id: str, event: str, task: _Task, now: float, code: str = "", message: str = "",
             ran_for: float | None = None) -> TaskEvent:
        self.seq += 1
        queued_for = None
        if task.received_at is not None and task.dispatched_at is not None:
            queued_for = max(0.0, task.dispatched_at - task.received_at)
        ev = TaskEvent(self.seq, now, task_id, event, task.function_name, task.submitter, task.local_user, task.uep,
                       code, message, queued_for, ran_for)
        self._ring.append((task, ev))
        self._last[task_id] = (task, ev)
        self._last.move_to_end(task_id)
        if len(self._last) > self._size:
            self._last.popitem(last=False)
        return ev

    def received(self, task_id: str, function_name: str, submitter: str, local_user: str = "",
                 uid: int | None = None, now: float | None = None, function_id: str = "") -> TaskEvent:
        now = time.time() if now is None else now
        task = self._tasks[task_id] = _Task(function_name, submitter, local_user, uid, received_at=now,
                                            function_id=function_id)
        if self.audit is not None:
            self.audit.write("received", task_id, submitter=submitter, function_id=function_id,
                             function_name=function_name)
        return self._add(task_id, "received", task, now)

    def mapped(self, task_id: str, local_user: str, uid: int | None) -> None:
        """TASK_ID's submitter runs as LOCAL_USER (UID) here: audited once per task."""
        task = self._tasks.get(task_id)
        if task is None or task.mapped:
            return
        task.mapped = True
        if self.audit is not None:
            self.audit.write("mapped", task_id, submitter=task.submitter, local_user=local_user, uid=uid)

    def started(self, task_id: str, at: float) -> None:
        """TASK_ID was handed to its user endpoint's engine AT (a time): audited once per task."""
        task = self._tasks.get(task_id)
        if task is None or task.started:
            return
        task.started = True
        if self.audit is not None:
            self.audit.write("started", task_id, at=at, local_user=task.local_user, uep=task.uep)

    def refused(self, task_id: str, submitter: str, code: str, reason: str) -> None:
        """A task message the endpoint answered before taking it in (a malformed one)."""
        if self.audit is not None:
            self.audit.write("refused", task_id, submitter=submitter, code=code, reason=audit_reason(code, reason))

    def dispatched(self, task_id: str, uep: str, local_user: str, uid: int | None, *, function_name: str = "",
                   submitter: str = "", now: float | None = None) -> TaskEvent:
        """TASK_ID went to the user endpoint UEP; FUNCTION_NAME and SUBMITTER name a task the
        events did not see arrive (one recovered from the spool at start)."""
        now = time.time() if now is None else now
        task = self._tasks.setdefault(task_id, _Task(function_name, submitter))
        task.uep, task.local_user, task.uid, task.dispatched_at = uep, local_user, uid, now
        if self.audit is not None:
            self.audit.write("sent", task_id, submitter=task.submitter, local_user=local_user, uid=uid, uep=uep)
        return self._add(task_id, "dispatched", task, now)

    def traceback(self, task_id: str, text: str) -> None:
        """The remote traceback a user endpoint sent with TASK_ID's result, kept for finished()."""
        self._tracebacks[task_id] = text[:TRACEBACK_MAX]
        if len(self._tracebacks) > self._failures_kept:
            self._tracebacks.popitem(last=False)

    def finished(self, task_id: str, status: str, code: str, message: str, *, function_name: str = "",
                 submitter: str = "", now: float | None = None) -> TaskEvent:
        now = time.time() if now is None else now
        task = self._tasks.pop(task_id, None) or _Task(function_name, submitter)
        tb = self._tracebacks.pop(task_id, "")
        ran_for = None if task.dispatched_at is None else max(0.0, now - task.dispatched_at)
        failed = status != "success"
        if self.audit is not None:
            # Never the failure's sentence of a task that ran: it may quote its arguments.
            refusal = failed and code in REFUSALS and not task.started
            self.audit.write("refused" if refusal else "finished", task_id, submitter=task.submitter,
                             local_user=task.local_user, uid=task.uid, status=status, code=code,
                             reason=audit_reason(code, message) if refusal else "")
        ev = self._add(task_id, "failed" if failed else "success", task, now, code, _line(message), ran_for)
        if failed:
            self._failures[task_id] = (message[:ERROR_MAX], tb)
            if len(self._failures) > self._failures_kept:
                self._failures.popitem(last=False)
        return ev

    def since(self, cursor: int, visible: Callable[[int | None], bool] | None = None,
              ) -> tuple[list[TaskEvent], int, int]:
        """(the events after CURSOR that VISIBLE allows by their task's uid, oldest first; the cursor
        to ask from next; how many events after CURSOR the ring no longer holds). A cursor beyond
        the last event is one of an earlier run of the manager: it reads as 0."""
        if cursor > self.seq or cursor < 0:
            cursor = 0
        first = self._ring[0][1].seq if self._ring else self.seq + 1
        dropped = max(0, first - 1 - cursor)
        newest = list(islice(reversed(self._ring), self.seq - max(cursor, first - 1)))
        newest.reverse()
        return [ev for task, ev in newest if visible is None or visible(task.uid)], self.seq, dropped

    def detail(self, task_id: str) -> tuple[int | None, TaskDetail] | None:
        """(the uid of its account, TASK_ID's last event with its failure's sentence and traceback),
        or None when the events hold nothing of it any more."""
        last = self._last.get(task_id)
        if last is None:
            return None
        task, ev = last
        error, tb = self._failures.get(task_id, ("", ""))
        return task.uid, TaskDetail(ev, error, tb)
