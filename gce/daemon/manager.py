"""The endpoint manager: one broker connection, a spool, and its user endpoints.

The manager never deserializes payloads (DESIGN.md invariant 1): it reads AMQP
properties and headers, writes bodies to the spool and passes them on as bytes.
All work happens on one asyncio loop; signal handlers only set an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from gce.config.model import EndpointConfig
from gce.config.paths import EndpointPaths
from gce.daemon.children import UepChild
from gce.daemon.commit import GroupCommit
from gce.daemon.outbox import Outbox
from gce.daemon.public_status import public_view
from gce.daemon.routing import Refused, Router
from gce.daemon.snapshot import snapshot
from gce.daemon.spool import Spool
from gce.transport import frames, names
from gce.transport.amqp import Delivery, EndpointLink
from gce.transport.message import (BadMessage, ErrorCode, ResultHeaders, TaskHeaders, failure, parse_task,
                                   reply_to_belongs)

log = logging.getLogger(__name__)


def _stopped_for(violation: str) -> str:
    return f"the user endpoint was stopped: it broke the channel protocol ({violation})"


class Manager:
    def __init__(self, paths: EndpointPaths, config: EndpointConfig, *, detached: bool = False) -> None:
        self.paths = paths
        self.config = config
        self.detached = detached
        self.spool = Spool(paths.spool_dir)
        self.link = EndpointLink(
            url=config.broker_url, endpoint_id=config.endpoint_id, queue_type=config.queue_type,
            prefetch=config.prefetch, heartbeat=config.heartbeat, on_delivery=self.on_delivery,
            on_connected=self.on_connected, on_disconnected=self.on_disconnected,
        )
        self.uep: UepChild | None = None  # a personal endpoint's one UEP
        self.ueps: dict[tuple[int, str], UepChild] = {}  # multi_user: (uid, canonical user config) -> UEP
        self._unrouted: list[str] = []  # tasks recovered before the UEPs exist
        self._mapping: dict[str, list[str]] = {}  # identity -> its tasks waiting for it to be mapped
        self.router = Router(paths, config)
        self.stop_event = asyncio.Event()
        self.started_at = time.time()
        self.counts = {"received": 0, "completed": 0, "failed": 0, "malformed": 0, "duplicates": 0, "violations": 0}
        self.commit = GroupCommit(self.spool, self.link)  # pauses the link while the spool is unwritable
        self.outbox = Outbox(self.spool, self.link, self.commit.schedule)

    # -- intake ----------------------------------------------------------------------
    def on_delivery(self, d: Delivery) -> None:
        """One task message. Whatever it holds, it ends here as an answer (where one can be sent)
        and an ack: no exception from one message reaches the broker connection (DESIGN.md,
        "Delivery guarantees")."""
        self.commit.delivered(d.generation, d.tag)
        try:
            self._accept(d)
        except BadMessage as e:
            self.counts["malformed"] += 1
            log.warning("refused a malformed task message (message_id=%.80r, user_id=%.80r): %s",
                        d.properties.message_id, d.properties.user_id, e)
            self._answer_refused(d.properties, e.code, str(e))
        except Exception as e:  # a bug must cost this one message, not the connection
            self.counts["malformed"] += 1
            log.exception("handling the task message %.80r of %.80r failed", d.properties.message_id,
                          d.properties.user_id)
            self._answer_refused(d.properties, ErrorCode.INTERNAL, "the endpoint could not handle this task "
                                 f"message ({type(e).__name__}; the endpoint's log says more)")

    def _accept(self, d: Delivery) -> None:
        if (d.exchange, d.routing_key) != (names.TASKS_EXCHANGE, self.config.endpoint_id):
            # Topic permissions guard only this route; a CC header or an exchange bound into
            # gce.tasks gets around them (gce/transport/provision.py) and shows here.
            raise BadMessage(f"a task must come through {names.TASKS_EXCHANGE!r} addressed to this endpoint, not "
                             f"through {d.exchange[:100]!r} with routing key {d.routing_key[:100]!r}")
        p = d.properties
        th = parse_task(p.message_id, p.user_id, p.reply_to, p.headers)
        if len(d.body) > self.config.max_payload_bytes + 64 * 1024:
            raise BadMessage(
                f"the task payload is {len(d.body):,} bytes, over this endpoint's limit of "
                f"{self.config.max_payload_bytes:,} bytes (limits.max_payload_bytes)", ErrorCode.PAYLOAD_TOO_LARGE)
        if th.task_id in self.spool.entries or self.outbox.answered(th.task_id):
            self.counts["duplicates"] += 1
            return
        self.counts["received"] += 1
        self.spool.add_task({"task_id": th.task_id, "task": th.to_dict()}, d.body)
        self._dispatch(th.task_id, body=d.body)

    def _answer_refused(self, p: Any, code: str, sentence: str) -> None:
        """Tell the submitter why a message was refused, when it names one of its sender's own
        result queues: never into another user's queue, whatever reply_to says."""
        try:
            if isinstance(p.message_id, str) and p.message_id and reply_to_belongs(p.user_id, p.reply_to):
                rh = failure(p.message_id[:100], self.config.endpoint_id, code, sentence)
                self.outbox.publish(rh, p.reply_to, b"", spooled=False)
        except Exception:
            log.exception("could not answer a refused task message")

    # -- user endpoint ---------------------------------------------------------------
    @property
    def _queued(self) -> list[str]:
        """Tasks waiting for the personal endpoint's UEP (or, before any UEP exists, to be routed)."""
        return self.uep.queued if self.uep is not None and not self.config.multi_user else self._unrouted

    def _dispatch(self, task_id: str, body: bytes | None = None) -> None:
        """Hand TASK_ID to its UEP (or queue it); a failure to do so answers that task alone."""
        try:
            self._route(task_id, body)
        except Exception as e:
            log.exception("dispatching task %s failed", task_id)
            try:
                self._finish_with_error(task_id, ErrorCode.INTERNAL, f"the endpoint could not dispatch this task "
                                        f"({type(e).__name__}; the endpoint's log says more)")
            except Exception:
                log.exception("answering task %s failed too", task_id)

    def _route(self, task_id: str, body: bytes | None) -> None:
        if self.stop_event.is_set():
            return  # stays in the spool: the next start recovers it
        uep = self._uep_for(task_id) if self.config.multi_user else self.uep
        if uep is None:
            if not self.config.multi_user:
                self._unrouted.append(task_id)
            return
        if uep.state != "running":
            uep.queued.append(task_id)
            if uep.state == "stopped" and self.config.multi_user:
                asyncio.ensure_future(uep.start())
            elif uep.may_retry():
                log.info("trying user endpoint %s again after its fatal failure (%s)", uep.key, uep.reason)
                asyncio.ensure_future(uep.start())
            elif uep.state == "fatal":
                self._fail_queued(uep)
            return
        entry = self.spool.entries.get(task_id)
        if entry is None:
            return
        if body is None:
            body = self.spool.body(task_id)
        uep.in_flight[task_id] = uep.in_flight.get(task_id, 0) + 1
        uep.active_at = time.monotonic()
        uep.send(frames.TASK, {"task": entry.header["task"]}, body)

    def _uep_for(self, task_id: str) -> UepChild | None:
        """The UEP of a multi-user endpoint that runs TASK_ID; None while its submitter's identity
        is being mapped (the task is dispatched again after) and once the task is answered."""
        entry = self.spool.entries.get(task_id)
        if entry is None:
            return None
        th = TaskHeaders.from_dict(entry.header["task"])
        target = self.router.known_target(th.user_id)
        if target is None:
            waiting = self._mapping.setdefault(th.user_id, [])
            waiting.append(task_id)
            if len(waiting) == 1:
                asyncio.ensure_future(self._map(th.user_id))
            return None
        try:
            if isinstance(target, Refused):
                raise target
            canonical = self.router.canonical_config(th.user_endpoint_config or {})
            uep = self.ueps.get((target.uid, canonical))
            if uep is None:
                name, conf, stderr_file = self.router.uep_conf(target, canonical, th)
                uep = self.ueps[(target.uid, canonical)] = UepChild(
                    name, conf, stderr_file, self.on_uep_frame, self.on_uep_exit, target=target,
                    environment_file=self.config.user_environment_path)
            return uep
        except Refused as e:
            self._finish_with_error(task_id, e.code, str(e))
            return None

    async def _map(self, identity: str) -> None:
        """Map IDENTITY off the loop, then dispatch the tasks that waited for it, in order."""
        try:
            await self.router.map(identity)
        finally:
            for tid in self._mapping.pop(identity, []):
                self._dispatch(tid)

    def _fail_queued(self, uep: UepChild) -> None:
        queued, uep.queued = uep.queued, []
        code = uep.fatal_code or ErrorCode.ENDPOINT_FAILED
        for tid in queued:
            self._finish_with_error(tid, code, f"the user endpoint could not start: {uep.reason}")

    def route_unrouted(self) -> None:
        """Hand tasks recovered from the spool to their UEPs (multi-user: routed like new ones)."""
        unrouted, self._unrouted = self._unrouted, []
        for tid in unrouted:
            self._dispatch(tid)

    def stop_idle(self) -> None:
        """Stop the UEPs of a multi-user endpoint that had no task for idle_timeout seconds."""
        for key, uep in list(self.ueps.items()):
            idle = uep.idle_for() >= self.config.idle_timeout
            if idle and (uep.state in ("running", "backoff") or (uep.state == "fatal" and uep.may_retry())):
                del self.ueps[key]
                log.info("stopping user endpoint %s: idle for %.0f s", uep.key, uep.idle_for())
                asyncio.ensure_future(uep.stop())

    async def stop_ueps(self, timeout: float) -> None:
        """Stop every user endpoint (and all below them) at once."""
        children = [u for u in (self.uep, *self.ueps.values()) if u is not None]
        await asyncio.gather(*(u.stop(timeout=timeout) for u in children))

    def _finish_with_error(self, task_id: str, code: str, message: str) -> None:
        entry = self.spool.entries.get(task_id)
        if entry is None:
            return
        self._on_result(failure(task_id, self.config.endpoint_id, code, message), b"")

    def on_uep_frame(self, uep: UepChild, kind: bytes, header: dict, body: bytes) -> None:
        """A frame from a UEP, which runs its user's code and is trusted only for its own tasks: a
        result is taken only for a task sent to this very UEP and still in flight there. Anything
        else is a protocol violation: the UEP is treated as compromised and stopped."""
        if kind == frames.RESULT:
            try:
                rh = ResultHeaders.from_uep(header, self.config.endpoint_id)
            except BadMessage as e:
                return self._violation(uep, f"a malformed RESULT frame: {e}")
            if rh.task_id not in uep.in_flight:
                return self._violation(uep, f"a result for task {rh.task_id!r}, which it is not running")
            if len(body) > self.config.max_result_bytes + 64 * 1024:
                return self._violation(uep, f"a result of {len(body):,} bytes, over the endpoint's limit")
            uep.in_flight.pop(rh.task_id)
            uep.active_at = time.monotonic()
            self._on_result(rh, body)
        elif kind == frames.READY:
            queued, uep.queued = uep.queued, []
            for tid in queued:
                self._dispatch(tid)

    def _violation(self, uep: UepChild, what: str) -> None:
        """UEP sent WHAT, which no honest UEP sends: its tasks fail now (a retry would run the same
        code in a fresh UEP again) and it is stopped, with all below it."""
        self.counts["violations"] += 1
        log.error("protocol violation: user endpoint %s (pid %s) sent %s; stopping it as compromised",
                  uep.key, uep.pid, what)
        lost, uep.in_flight = uep.in_flight, {}
        for tid in lost:
            self._finish_with_error(tid, ErrorCode.ENDPOINT_FAILED, _stopped_for(what))
        uep.kill_compromised(what)

    def on_uep_exit(self, uep: UepChild, reason: str) -> None:
        lost, uep.in_flight = uep.in_flight, {}
        for tid, attempts in lost.items():
            if uep.violation:  # its own tasks made it break the protocol: running them again would too
                self._finish_with_error(tid, ErrorCode.ENDPOINT_FAILED, _stopped_for(uep.violation))
            elif attempts >= self.config.task_attempts:
                self._finish_with_error(tid, ErrorCode.WORKER_LOST, f"{reason} while running this task "
                                        f"({attempts} attempt{'s' if attempts > 1 else ''})")
            else:
                uep.queued.append(tid)
        if uep.state == "fatal":
            self._fail_queued(uep)
        elif uep.state == "backoff" and not self.stop_event.is_set():
            delay = min(30.0, 2.0 ** len(uep.failures))
            log.info("restarting the user endpoint in %.0f s", delay)
            asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self._restart_uep(uep)))

    async def _restart_uep(self, uep: UepChild) -> None:
        if uep.state == "backoff" and not self.stop_event.is_set():
            await uep.start()

    # -- results ---------------------------------------------------------------------
    def _on_result(self, rh: ResultHeaders, body: bytes) -> None:
        if self.outbox.put(rh, body):
            self.counts["completed" if rh.status == "success" else "failed"] += 1

    def on_connected(self) -> None:
        self.commit.forget_acks()  # tags of the previous channel are void; the broker requeued them
        self.outbox.republish()
        self.publish_status()

    def on_disconnected(self, reason: str) -> None:
        log.warning("broker connection lost: %s", reason)

    # -- status ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return snapshot(self)

    def publish_status(self) -> None:
        body = json.dumps({**public_view(self.status()), "timestamp": time.time()}).encode()
        self.link.publish(names.STATUS_EXCHANGE, self.config.endpoint_id, body, {}, correlation_id="status",
                          content_type=names.STATUS_CONTENT_TYPE, persistent=False)

    async def on_control(self, command: str, args: dict, uid: int) -> dict:
        if command == "status":
            return self.status()
        if command == "stop":
            self.stop_event.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {command!r}"}
