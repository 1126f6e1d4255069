"""Results on their way to the submitters: spooled first, published with publisher confirms,
and published again after a reconnect or a restart until the broker has confirmed them.

A result leaves the spool only once confirmed; its task id is then remembered for a while,
so that a redelivery of a task already answered is dropped instead of run again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from typing import Callable

from gce.daemon.spool import RESULT, TASK, Spool
from gce.daemon.status import RECENT_TASKS, RecentTask
from gce.transport import names
from gce.transport.amqp import EndpointLink
from gce.transport.confirms import NACKS_BEFORE_NEW_CONNECTION
from gce.transport.message import ResultHeaders

log = logging.getLogger(__name__)
RECENT_DONE = 100_000  # task ids remembered to drop redeliveries of finished tasks
NACK_RETRY_SECONDS = 1.0  # after a nack of results, before publishing them again


class Outbox:
    def __init__(self, spool: Spool, link: EndpointLink, on_spooled: Callable[[], None]) -> None:
        self.spool = spool
        self.link = link
        self._on_spooled = on_spooled  # the spool has something new to commit
        self.recent_done: OrderedDict[str, None] = OrderedDict()
        self.unpublished: set[str] = set()  # results waiting for a connection
        self.recent: deque[RecentTask] = deque(maxlen=RECENT_TASKS)  # the last results, for the status
        self._retry_armed = False  # a re-publish of nacked results is scheduled
        self._nacked_rounds = 0  # re-publishes in a row that were nacked again

    def answered(self, task_id: str) -> bool:
        """Whether TASK_ID's result was published and confirmed lately (a redelivery to drop)."""
        return task_id in self.recent_done

    def put(self, rh: ResultHeaders, body: bytes) -> bool:
        """Spool and publish the result of a task in the spool; False if it was answered already."""
        entry = self.spool.entries.get(rh.task_id)
        if entry is None or entry.kind != TASK:
            return False  # already answered (a retried task finishing twice)
        reply_to = entry.header["task"]["reply_to"]
        self.spool.add_result({"task_id": rh.task_id, "result": rh.to_dict(), "reply_to": reply_to}, body)
        self._on_spooled()
        self._record(rh)
        self.send_result(rh, reply_to, body)
        return True

    def _record(self, rh: ResultHeaders) -> None:
        lines = rh.error_message.strip().splitlines()
        message = lines[0][:200] if lines else ""
        self.recent.append(RecentTask(rh.task_id, rh.status, rh.error_code, message, time.time()))

    def send_result(self, rh: ResultHeaders, reply_to: str, body: bytes, spooled: bool = True) -> bool:
        """Publish a result; one SPOOLED leaves the spool when the broker confirms it. False if it
        could not be sent now (no connection, or publishing results is refused): it waits."""
        tid = rh.task_id

        def confirmed(ok: bool) -> None:
            if not spooled:
                return
            if ok:
                self.spool.done(tid)
                self._remember_done(tid)
                self._nacked_rounds = 0
            else:
                self.unpublished.add(tid)
                if self.link.connected:  # a nack, not a lost connection: no reconnect will re-send it
                    self._retry_soon()

        sent = self.link.publish(names.RESULTS_EXCHANGE, reply_to, body, rh.amqp_headers(), correlation_id=tid,
                                 content_type=names.RESULT_CONTENT_TYPE, on_confirm=confirmed)
        if not sent and spooled:
            self.unpublished.add(tid)
        return sent

    def _retry_soon(self) -> None:
        """Re-publish the nacked results in a second: a quorum queue whose leader's node went down
        nacks what it cannot take until the survivors have elected a new leader."""
        if not self._retry_armed:
            self._retry_armed = True
            asyncio.get_running_loop().call_later(NACK_RETRY_SECONDS, self._retry_nacked)

    def _retry_nacked(self) -> None:
        self._retry_armed = False
        if not self.link.connected:
            return  # the reconnect re-publishes them
        self._nacked_rounds += 1
        if self._nacked_rounds >= NACKS_BEFORE_NEW_CONNECTION:
            # A channel whose quorum queue leader went away may nack every publish from then on
            # (seen on RabbitMQ 3.10): a new connection, to the next node, re-publishes them.
            self._nacked_rounds = 0
            self.link.reconnect("the broker nacks results again and again")
        else:
            self.republish()

    def _remember_done(self, tid: str) -> None:
        self.recent_done[tid] = None
        if len(self.recent_done) > RECENT_DONE:
            self.recent_done.popitem(last=False)

    def republish(self) -> None:
        """After a (re)connect: publish every spooled result the broker has not confirmed."""
        pending, self.unpublished = self.unpublished, set()
        sent = 0
        for tid in pending:
            entry = self.spool.entries.get(tid)
            if entry is not None and entry.kind == RESULT:
                rh = ResultHeaders.from_dict(entry.header["result"])
                sent += self.send_result(rh, entry.header["reply_to"], self.spool.body(tid))
        if sent:
            log.info("re-published %d result(s) kept while the broker was away", sent)
