"""The endpoint manager: one broker connection, a spool, and its user endpoints
(gce.daemon.dispatch hands the tasks to them and takes back what they send).

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
from gce.auditlog import audit_path
from gce.daemon.audit import AuditLog
from gce.daemon.cancel import Control
from gce.daemon.children import UepChild
from gce.daemon.commit import GroupCommit
from gce.daemon.control_commands import Commands
from gce.daemon.dispatch import Dispatcher
from gce.daemon.outbox import Outbox
from gce.daemon.privileges import LocalUser
from gce.daemon.public_status import public_view
from gce.daemon.routing import Router
from gce.daemon.snapshot import TaskEvents, snapshot
from gce.daemon.status import EndpointStatus
from gce.daemon.spool import Spool
from gce.transport import bundles, names
from gce.transport.amqp import Delivery, EndpointLink
from gce.transport.control import is_control
from gce.transport.message import BadMessage, ErrorCode, ResultHeaders, failure, parse_task, reply_to_belongs

log = logging.getLogger(__name__)


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
        self.router = Router(paths, config)
        self.stop_event = asyncio.Event()
        self.started_at = time.time()
        self.counts = {"received": 0, "completed": 0, "failed": 0, "malformed": 0, "duplicates": 0, "violations": 0}
        self.commit = GroupCommit(self.spool, self.link)  # pauses the link while the spool is unwritable
        self.outbox = Outbox(self.spool, self.link, self.commit.schedule)
        self.audit = AuditLog(audit_path(paths), paths.name, config.endpoint_id)
        self.events = TaskEvents(audit=self.audit)  # the last tasks, for gce monitor (`snapshot`) and the audit
        self.dispatcher = Dispatcher(config, self.router, self.spool, self.stop_event, self._on_result, self.counts,
                                     events=self.events)
        self.control = Control(self)  # questions about tasks, and cancels (gce.daemon.cancel)
        self.dispatcher.on_task_states = self.control.on_task_states

    # -- intake ----------------------------------------------------------------------
    def on_delivery(self, d: Delivery) -> None:
        """One task message. Whatever it holds, it ends here as an answer (where one can be sent)
        and an ack: no exception from one message reaches the broker connection (DESIGN.md,
        "Delivery guarantees")."""
        self.commit.delivered(d.generation, d.tag)
        if is_control(d.properties.headers):  # not a task: a question about tasks, or a cancel
            return self.control.handle(d)
        if d.properties.content_type == names.TASK_BUNDLE_CONTENT_TYPE:  # several tasks: each as if alone
            tasks, why = bundles.tasks_of(d.properties, d.body)
            if why:
                self.counts["malformed"] += 1
                log.warning("a bundle of tasks (message_id=%.80r, user_id=%.80r) could not be read whole: %s; "
                            "%d of its tasks were", d.properties.message_id, d.properties.user_id, why, len(tasks))
            for properties, body in tasks:
                self._take(Delivery(d.generation, d.tag, properties, body, d.exchange, d.routing_key))
            return
        self._take(d)

    def _take(self, d: Delivery) -> None:
        """One task; a task message's, or one of a bundle's."""
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
        self.events.received(th.task_id, th.function_name, th.user_id, *self._account_of(th.user_id),
                             function_id=th.function_id)
        if self.control.cancelled_early(th):  # its cancel came first: answered CANCELLED, never run
            return
        self.dispatcher.dispatch(th.task_id, body=d.body)

    def _answer_refused(self, p: Any, code: str, sentence: str) -> None:
        """Tell the submitter why a message was refused, when it names one of its sender's own
        result queues: never into another user's queue, whatever reply_to says."""
        try:
            if isinstance(p.message_id, str) and p.message_id and reply_to_belongs(p.user_id, p.reply_to):
                rh = failure(p.message_id[:100], self.config.endpoint_id, code, sentence)
                self.events.refused(rh.task_id, str(p.user_id or "")[:100], code, sentence)
                self.outbox.send_result(rh, p.reply_to, b"", spooled=False)
        except Exception:
            log.exception("could not answer a refused task message")

    def _account_of(self, identity: str) -> tuple[str, int | None]:
        """The local account IDENTITY's tasks run as, when known yet: ("", None) while a multi-user
        endpoint has not mapped it (its task's later events say whose it is)."""
        if not self.config.multi_user:
            return self.dispatcher.own_account
        target = self.router.known_target(identity)
        return (target.name, target.uid) if isinstance(target, LocalUser) else ("", None)

    # -- user endpoints (gce.daemon.dispatch) ---------------------------------------
    @property
    def uep(self) -> UepChild | None:
        """A personal endpoint's one UEP."""
        return self.dispatcher.uep

    @property
    def ueps(self) -> dict[tuple[int, str], UepChild]:
        """A multi-user endpoint's UEPs: (uid, canonical user config) -> UEP."""
        return self.dispatcher.ueps

    def route_unrouted(self) -> None:
        self.dispatcher.route_unrouted()

    def stop_idle(self) -> None:
        self.dispatcher.stop_idle()

    def replace_changed(self) -> None:
        self.dispatcher.replace_changed()

    async def stop_ueps(self, timeout: float) -> None:
        await self.dispatcher.stop_all(timeout)

    # -- what the control socket asks (gce.daemon.control.Endpoint) ------------------
    def owner_of(self, key: str) -> int | None:
        return self.dispatcher.owner_of(key)

    def stop_uep(self, key: str) -> bool:
        return self.dispatcher.stop_uep(key)

    def cancel_block(self, key: str, block_id: str) -> bool:
        return self.dispatcher.cancel_block(key, block_id)

    def resume(self, key: str) -> bool:
        return self.dispatcher.resume(key)

    def commands(self) -> Commands:
        """The control socket's commands, answered from this manager."""
        return Commands(self.status, self.stop_event.set, self)

    # -- results ---------------------------------------------------------------------
    def _on_result(self, rh: ResultHeaders, body: bytes) -> None:
        entry = self.spool.entries.get(rh.task_id)
        task = entry.header.get("task", {}) if entry is not None else {}
        if self.outbox.put(rh, body):
            self.counts["completed" if rh.status == "success" else "failed"] += 1
            started = rh.timings.get("started")  # when its user endpoint handed it to its engine
            if isinstance(started, (int, float)):
                self.events.started(rh.task_id, float(started))
            self.events.finished(rh.task_id, rh.status, rh.error_code, rh.error_message,
                                 function_name=str(task.get("function_name") or ""),
                                 submitter=str(task.get("user_id") or ""))

    def on_connected(self) -> None:
        self.commit.forget_acks()  # tags of the previous channel are void; the broker requeued them
        self.outbox.republish()
        self.publish_status()

    def on_disconnected(self, reason: str) -> None:
        log.warning("broker connection lost: %s", reason)

    # -- status ----------------------------------------------------------------------
    def status(self) -> EndpointStatus:
        return snapshot(self)

    def publish_status(self) -> None:
        body = json.dumps({**public_view(self.status()), "timestamp": time.time()}).encode()
        self.link.publish(names.STATUS_EXCHANGE, self.config.endpoint_id, body, {}, correlation_id="status",
                          content_type=names.STATUS_CONTENT_TYPE, persistent=False)
