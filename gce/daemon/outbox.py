"""Results on their way to the submitters: spooled first, published with publisher confirms,
and published again after a reconnect or a restart until the broker has confirmed them.

A result leaves the spool only once confirmed; its task id is then remembered for a while,
so that a redelivery of a task already answered is dropped instead of run again.

The small results of one loop turn bound for the same Executor's queue go as one message, a bundle
(gce.transport.bundles), when its tasks asked for that; a lone result goes alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from typing import Callable

from gce.daemon.spool import RESULT, TASK, Spool
from gce.daemon.status import RECENT_TASKS, RecentTask
from gce.transport import bundles, names
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
        # Results of this loop turn whose submitters read bundles: reply_to -> [(result, payload)],
        # published together at the end of the turn.
        self._bundling: dict[str, list[tuple[ResultHeaders, bytes]]] = {}

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
        if entry.header["task"].get("result_bundles") and len(body) <= bundles.SMALL:
            if not self._bundling:
                asyncio.get_running_loop().call_soon(self.send_bundled)
            self._bundling.setdefault(reply_to, []).append((rh, body))
        else:
            self.send_result(rh, reply_to, body)
        return True

    def send_bundled(self) -> None:
        """Publish the results this loop turn held for bundling: a bundle per result queue (split
        past the bounds of gce.transport.bundles), or a plain result message for a lone one."""
        waiting, self._bundling = self._bundling, {}
        for reply_to, results in waiting.items():
            for run in bundles.split(results, lambda result: len(result[1])):
                if len(run) == 1:
                    self.send_result(run[0][0], reply_to, run[0][1])
                else:
                    self._send_bundle(reply_to, run)

    def _send_bundle(self, reply_to: str, run: list[tuple[ResultHeaders, bytes]]) -> None:
        tids = [rh.task_id for rh, _ in run]
        body = bundles.encode(bundles.RESULTS, ((rh.amqp_headers(), payload) for rh, payload in run))
        sent = self.link.publish(names.RESULTS_EXCHANGE, reply_to, body,
                                 {"gce-protocol": names.PROTOCOL_VERSION, "results": str(len(tids))},
                                 correlation_id="bundle", content_type=names.RESULT_BUNDLE_CONTENT_TYPE,
                                 on_confirm=lambda ok: self._confirmed(tids, ok))
        if not sent:
            self.unpublished.update(tids)

    def _record(self, rh: ResultHeaders) -> None:
        lines = rh.error_message.strip().splitlines()
        message = lines[0][:200] if lines else ""
        self.recent.append(RecentTask(rh.task_id, rh.status, rh.error_code, message, time.time()))

    def send_result(self, rh: ResultHeaders, reply_to: str, body: bytes, spooled: bool = True) -> bool:
        """Publish a result; one SPOOLED leaves the spool when the broker confirms it. False if it
        could not be sent now (no connection, or publishing results is refused): it waits."""
        tid = rh.task_id

        def confirmed(ok: bool) -> None:
            if spooled:
                self._confirmed([tid], ok)

        sent = self.link.publish(names.RESULTS_EXCHANGE, reply_to, body, rh.amqp_headers(), correlation_id=tid,
                                 content_type=names.RESULT_CONTENT_TYPE, on_confirm=confirmed)
        if not sent and spooled:
            self.unpublished.add(tid)
        return sent

    def _confirmed(self, tids: list[str], ok: bool) -> None:
        """The broker took the results of TIDS (they leave the spool), or nacked them."""
        if ok:
            for tid in tids:
                self.spool.done(tid)
                self._remember_done(tid)
            self._nacked_rounds = 0
        else:
            self.unpublished.update(tids)
            if self.link.connected:  # a nack, not a lost connection: no reconnect will re-send it
                self._retry_soon()

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
