"""The manager's answers to control messages (gce.transport.control): where a task is, and cancels.

A control message comes through the endpoint's task queue like a task, and like a task it only
harms itself: whatever goes wrong ends as an answer to its asker and an ack (DESIGN.md, "Delivery
guarantees"). Only a task's submitter (the broker-validated user_id) may see or cancel it; anyone
else is told the endpoint knows no such task of theirs, as if it did not exist.

Where a task is, as the manager knows it: spooled and not given to a user endpoint yet (waiting);
given to one (it is asked in an ASK_STATES frame whether a worker runs it, and since when: running,
or still waiting there); answered (done); or none of these (unknown: never seen, or long ago).

A cancel answers a waiting task CANCELLED at once, and it never runs; a task at a user endpoint is
stopped there (CANCEL_TASKS; gce.uep.cancel), whose answer says CANCELLED unless it finished first.
A cancel for a task not seen yet is remembered (the last EARLY_CANCELS of them): that task, should
it come from the same submitter, is answered CANCELLED on arrival.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from typing import Any, Protocol

from gce.config.model import EndpointConfig
from gce.daemon.children import UepChild
from gce.daemon.dispatch import Dispatcher
from gce.daemon.outbox import Outbox
from gce.daemon.snapshot import TaskEvents
from gce.daemon.spool import TASK, Spool
from gce.transport import control, frames, names
from gce.transport.control import CANCEL, DONE, RUNNING, UNKNOWN, WAITING, Request
from gce.transport.amqp import Delivery, EndpointLink
from gce.transport.message import BadMessage, ErrorCode, TaskHeaders, failure, reply_to_belongs

log = logging.getLogger(__name__)
EARLY_CANCELS = 10_000
ASK_SECONDS = 2.0  # how long a state question waits for the user endpoints' word


class _Manager(Protocol):  # what of gce.daemon.manager.Manager this reads
    config: EndpointConfig
    spool: Spool
    outbox: Outbox
    dispatcher: Dispatcher
    events: TaskEvents
    link: EndpointLink


class Control:
    def __init__(self, manager: _Manager) -> None:
        self.m = manager
        self.early: OrderedDict[str, str] = OrderedDict()  # task id -> who cancelled it before it came
        self._asks: dict[int, tuple[UepChild, frozenset[str], asyncio.Future[dict[str, Any]]]] = {}
        self._ask_ids = itertools.count(1)

    # -- intake ------------------------------------------------------------------------
    def handle(self, d: Delivery) -> None:
        """One control message (already counted for an ack): answered, whatever it holds."""
        p = d.properties
        try:
            if (d.exchange, d.routing_key) != (names.TASKS_EXCHANGE, self.m.config.endpoint_id):
                raise BadMessage(f"a control message must come through {names.TASKS_EXCHANGE!r} addressed to this "
                                 f"endpoint, not through {d.exchange[:100]!r} with key {d.routing_key[:100]!r}")
            req = control.parse_request(p.message_id, p.user_id, p.reply_to, p.headers)
        except Exception as e:
            log.warning("refused a control message (message_id=%.80r, user_id=%.80r): %s", p.message_id, p.user_id, e)
            if isinstance(p.message_id, str) and reply_to_belongs(p.user_id, p.reply_to):
                kind = str((p.headers or {}).get(control.CONTROL_HEADER, ""))[:20]
                error = str(e) if isinstance(e, BadMessage) else f"the endpoint could not read it ({type(e).__name__})"
                self._publish(p.message_id[:100], kind, p.reply_to, {}, f"the request was refused: {error}")
            return
        asyncio.ensure_future(self._serve(req))

    async def _serve(self, req: Request) -> None:
        try:
            tasks = await self._states(req)
            if req.kind == CANCEL:
                tasks = self._cancel(req, tasks)
            self._publish(req.request_id, req.kind, req.reply_to, tasks)
        except Exception as e:  # a bug costs this request only
            log.exception("answering the %s request %s failed", req.kind, req.request_id)
            self._publish(req.request_id, req.kind, req.reply_to, {}, f"the endpoint could not answer "
                          f"({type(e).__name__}; its log says more)")

    def _publish(self, request_id: str, kind: str, reply_to: str, tasks: dict[str, Any], error: str = "") -> None:
        body = control.answer_body(request_id, kind, tasks, error)
        if not self.m.link.publish(names.RESULTS_EXCHANGE, reply_to, body, {"gce-protocol": names.PROTOCOL_VERSION},
                                   correlation_id=request_id, content_type=control.ANSWER_CONTENT_TYPE,
                                   persistent=False):
            log.info("could not answer the %s request %s now: the broker link is down", kind, request_id)

    # -- where tasks are ---------------------------------------------------------------
    def _where(self, user: str, task_id: str) -> tuple[str, UepChild | None]:
        """(state, the user endpoint holding it) of USER's task TASK_ID as the manager knows it."""
        entry = self.m.spool.entries.get(task_id)
        if entry is not None and entry.kind == TASK:
            if entry.header.get("task", {}).get("user_id") != user:
                return UNKNOWN, None
            return WAITING, next((u for u in self._ueps() if task_id in u.in_flight), None)
        if entry is not None:  # answered; its result is on its way to the broker
            return (DONE if reply_to_belongs(user, entry.header.get("reply_to")) else UNKNOWN), None
        if self.m.outbox.answered(task_id):
            detail = self.m.events.detail(task_id)
            if detail is not None and detail[1].event.submitter == user:
                return DONE, None
        return UNKNOWN, None

    def _ueps(self) -> list[UepChild]:
        d = self.m.dispatcher
        return [u for u in (d.uep, *d.ueps.values()) if u is not None]

    async def _states(self, req: Request) -> dict[str, dict[str, Any]]:
        tasks: dict[str, dict[str, Any]] = {}
        at: dict[UepChild, list[str]] = {}
        for tid in req.task_ids:
            state, uep = self._where(req.user_id, tid)
            tasks[tid] = {"state": state}
            if state == WAITING:  # spooled at the manager, or given to a user endpoint
                tasks[tid]["where"] = "user endpoint" if uep is not None else "endpoint"
            if uep is not None:
                at.setdefault(uep, []).append(tid)
        if at:
            for uep, answer in zip(at, await asyncio.gather(*(self._ask(u, ids) for u, ids in at.items()))):
                for tid in at[uep]:
                    said = answer.get(tid)
                    if said is not None and said["state"] == RUNNING:
                        tasks[tid].update(state=RUNNING, since=said["since"])
        return tasks

    async def _ask(self, uep: UepChild, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """What UEP says of TASK_IDS (an empty answer if it says nothing within ASK_SECONDS)."""
        ask = next(self._ask_ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._asks[ask] = (uep, frozenset(task_ids), fut)
        try:
            if not uep.send_frame(frames.ASK_STATES, {"ask": ask, "task_ids": task_ids}):
                return {}
            return await asyncio.wait_for(fut, ASK_SECONDS)
        except asyncio.TimeoutError:
            return {}
        finally:
            self._asks.pop(ask, None)

    def on_task_states(self, uep: UepChild, header: dict[str, Any]) -> None:
        """A TASK_STATES frame: only what was asked of this very user endpoint is taken."""
        ask = header.get("ask")
        asked = self._asks.get(ask) if isinstance(ask, int) else None
        states = header.get("states")
        if asked is None or asked[0] is not uep or asked[2].done() or not isinstance(states, dict):
            return
        taken: dict[str, dict[str, Any]] = {}
        for tid, said in states.items():
            if tid in asked[1] and isinstance(said, dict) and said.get("state") in (WAITING, RUNNING, UNKNOWN):
                since = said.get("since")
                taken[tid] = {"state": said["state"],
                              "since": float(since) if isinstance(since, (int, float)) and not isinstance(since, bool)
                              else None}
        asked[2].set_result(taken)

    # -- cancelling --------------------------------------------------------------------
    def _cancel(self, req: Request, tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        stop: dict[UepChild, list[str]] = {}
        for tid, told in tasks.items():
            state, uep = self._where(req.user_id, tid)  # again: it may have moved while its user endpoint was asked
            if not (state == WAITING and told["state"] == RUNNING):  # a running task is waiting to the manager
                told["state"] = state
            if state == DONE:
                told.update(cancelled=False, reason="it had finished: its result stands")
            elif state == UNKNOWN:
                self._remember(tid, req.user_id)
                told.update(cancelled=False, reason=f"this endpoint knows no task {tid} of {req.user_id}: should "
                            "it come, it is answered CANCELLED and never runs")
            elif uep is None:
                self._unqueue(tid)
                self.m.dispatcher.answer(failure(tid, self.m.config.endpoint_id, ErrorCode.CANCELLED, "the task was "
                                                 "cancelled by its submitter before it started: it never ran"), b"")
                told.update(cancelled=True, reason="it had not started: it never runs")
            else:
                stop.setdefault(uep, []).append(tid)
                told.update(cancelled=True, reason="its user endpoint stops it: its result says CANCELLED, unless "
                            "it finished first")
        for uep, ids in stop.items():
            if not uep.send_frame(frames.CANCEL_TASKS, {"task_ids": ids}):
                for tid in ids:
                    tasks[tid].update(cancelled=False, reason="its user endpoint is not running now: try again")
        return tasks

    def _unqueue(self, task_id: str) -> None:
        """Take TASK_ID out of every line it may wait in at the manager (it is answered next)."""
        d = self.m.dispatcher
        lines: list[Any] = [d.unrouted, *d._mapping.values(), *(u.queued for u in self._ueps())]
        for line in lines:
            if task_id in line:
                line.remove(task_id)

    def _remember(self, task_id: str, user: str) -> None:
        self.early[task_id] = user
        self.early.move_to_end(task_id)
        if len(self.early) > EARLY_CANCELS:
            self.early.popitem(last=False)

    def cancelled_early(self, th: TaskHeaders) -> bool:
        """Whether TH (just spooled) was cancelled by its submitter before it came: then it is answered
        CANCELLED now and never runs."""
        if self.early.get(th.task_id) != th.user_id:
            return False
        del self.early[th.task_id]
        self.m.dispatcher.answer(failure(th.task_id, self.m.config.endpoint_id, ErrorCode.CANCELLED,
                                         "the task was cancelled by its submitter before it reached the endpoint: "
                                         "it never ran"), b"")
        return True
