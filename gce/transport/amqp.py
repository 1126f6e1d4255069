"""The manager's broker link: pika on asyncio, with reconnects and publisher confirms.

One connection, one channel. The link declares the endpoint's own queues idempotently,
consumes tasks with manual acks, publishes results with asynchronous publisher confirms
(the confirm callback is what lets the spool retire a task), and reconnects with
jittered exponential backoff after the broker goes away. Delivery tags belong to one
channel "generation": acks for a previous connection are dropped, since the broker has
already requeued those messages.

Each new channel sets up the endpoint's queues (gce/transport/topology.py); publisher
confirms are matched to their publishes by gce/transport/confirms.py, shared with the SDK.

A connection counts as up only once the broker confirmed a publish to each exchange the
endpoint writes (gce/transport/publish_check.py). A permission refused at start fails the
start; one lost later leaves the link connected but "refused": it takes no tasks (their
results could not be sent), holds results in the spool, retries the check with a capped,
jittered backoff and logs only when the refusal changes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from gce.transport import connect, names, topology, urls
from gce.transport.confirms import Confirms
from gce.transport.link_errors import LinkError, explain, quiet_pika_logs
from gce.transport.publish_check import Refusals, refusals
from gce.transport.urls import broker_user, redact

log = logging.getLogger(__name__)


quiet_pika_logs()


@dataclass
class Delivery:
    generation: int
    tag: int
    properties: Any
    body: bytes
    exchange: str = ""  # where the broker says the message was published, and with which key
    routing_key: str = ""


class EndpointLink:
    def __init__(
        self,
        *,
        url: str,
        endpoint_id: str,
        queue_type: str = "classic",
        prefetch: int = 1000,
        heartbeat: int = 30,
        on_delivery: Callable[[Delivery], None],
        on_connected: Callable[[], None],
        on_disconnected: Callable[[str], None],
    ) -> None:
        self.url = url
        self.endpoint_id = endpoint_id
        self.queue_type = queue_type
        self.prefetch = prefetch
        self.heartbeat = heartbeat
        self.on_delivery = on_delivery
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.user = broker_user(url)
        self.generation = 0
        self.connected = False
        self.last_error = ""
        self._conn: AsyncioConnection | None = None
        self._ch: Any = None
        self._op = topology.Pending()  # channel methods whose replies are awaited
        self._lost: asyncio.Event | None = None
        self._closing = False
        self.confirms: Confirms[Callable[[bool], None]] = Confirms()
        self.paused = False  # not consuming: the manager cannot take tasks now (its spool's disk is full)
        self._consumer: str | None = None  # the consumer tag of the task queue on this channel
        self.refusals = Refusals(check=self._check_publishing, on_allowed=self._publishing_allowed)
        self._ever = False  # connected once: a refusal from now on is a state, not a failed start
        self._refused_close = ""  # the broker closed our channel for a permission
        self._up_since = 0.0
        self._hosts = connect.Hosts()  # which of the URL's broker hosts (a cluster's nodes) is next
        self.node = ""  # HOST:PORT of the broker node reached, while connected
        self.where = url  # the URL of that node (of a cluster's), else the whole URL: for status

    # -- connecting ------------------------------------------------------------------
    def parameters(self) -> list[pika.URLParameters]:
        """pika's parameters for each broker host; a fatal LinkError when the URL cannot be used."""
        try:
            return connect.parameters(self.url, heartbeat=self.heartbeat, name=f"gce endpoint {self.endpoint_id}")
        except connect.UnusableUrl as e:
            raise LinkError(str(e), fatal=True) from None

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future = loop.create_future()
        params = self._hosts.pick(self.parameters())
        self._lost = asyncio.Event()

        def on_open_error(_c: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(explain(exc, self.url))

        def on_closed(_c: Any, exc: BaseException) -> None:
            reason = self._refused_close or str(exc) or type(exc).__name__  # not our own abort's words
            self._op.fail(LinkError(f"connection closed: {reason}"))
            if not opened.done():
                opened.set_exception(explain(exc, self.url))
            self._connection_lost(reason)

        self._conn = AsyncioConnection(
            params, on_open_callback=opened.set_result, on_open_error_callback=on_open_error,
            on_close_callback=on_closed, custom_ioloop=loop,
        )
        try:
            await asyncio.wait_for(opened, timeout=20)
        except asyncio.TimeoutError:
            self._abort()
            raise LinkError(f"the broker node {connect.node(params)} did not answer within 20 s") from None
        try:
            await self._setup_channel()
        except LinkError:
            self._abort()
            raise
        self.node, self.where = connect.node(params), urls.hosts(self.url)[self._hosts.index]
        self._hosts.reached()

    def reconnect(self, why: str) -> None:
        """Drop the connection (the link reconnects, to the next node of a cluster's URL)."""
        if self.connected and not self._closing:
            log.warning("%s: reconnecting", why)
            self._abort()

    def _abort(self) -> None:
        if self._conn is not None:
            connect.abort(self._conn)

    async def _setup_channel(self) -> None:
        assert self._conn is not None
        loop = asyncio.get_running_loop()
        ready: asyncio.Future = loop.create_future()
        self._conn.channel(on_open_callback=ready.set_result)
        ch = await ready
        ch.add_on_close_callback(self._on_channel_closed)
        self._ch = ch
        await topology.set_up(self._op, ch, self.endpoint_id, self.queue_type, self.prefetch, self._on_confirm)
        refused = await refusals(self._conn)
        if refused and not self._ever:  # readiness includes a confirmed publish to each exchange
            ex, why = next(iter(refused.items()))
            raise LinkError(f"could not publish to exchange {ex!r}: {why}; publishing needs write permission "
                            f"on {ex!r} for broker user {self.user!r}", fatal=True)
        self.refusals.update(refused)
        self._consumer = None if self.paused or self.refused else self._consume(ch)

    # -- publishing refused ------------------------------------------------------------
    @property
    def refused(self) -> dict[str, str]:
        """Exchange -> the broker's refusal to let the endpoint publish there now."""
        return self.refusals.refused

    def problems(self) -> list[str]:
        """What the endpoint cannot do now for want of a permission, in fixed words."""
        return self.refusals.problems()

    async def _check_publishing(self) -> dict[str, str] | None:
        if not self.connected or self._closing or self._conn is None:
            return None  # that connection went; the next one checks at its start
        try:
            return await refusals(self._conn)
        except LinkError as e:
            log.debug("the publish check failed: %s", e)
            return None  # the connection is going: its loss reconnects

    def _publishing_allowed(self) -> None:
        self.resume()
        self.on_connected()  # no task was taken on this channel: re-send what the spool holds

    def _on_channel_closed(self, _ch: Any, reason: BaseException) -> None:
        text = getattr(reason, "reply_text", "") or str(reason)
        code = getattr(reason, "reply_code", 0)
        hint = ""
        if code == 404:
            hint = " (the broker is not provisioned for gce: run 'gce broker provision')"
        elif code == 403:
            hint = f" (broker user {self.user!r} lacks a permission)"
            if self.connected and not self._closing:
                self._refused_close = f"{text}{hint}"
        self._op.fail(LinkError(f"{text}{hint}"))
        if not self._closing:
            self._abort()

    def _connection_lost(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        self._ch = None
        self._consumer = None
        self.generation += 1
        self.refusals.cancel()
        for cb in self.confirms.new_channel():
            cb(False)
        if self._lost is not None:
            self._lost.set()
        if was:
            self.last_error = reason
            self.on_disconnected(reason)

    async def run(self, first_failure_fatal: bool = False, on_first_failure: Callable[[str], None] | None = None) -> None:
        """Stay connected until close(); raise LinkError when retrying is pointless."""
        attempt, ever = 0, False
        while not self._closing:
            try:
                await self._connect_once()
            except LinkError as e:
                if self._closing:  # close() ended the attempt: nothing failed
                    return
                self.last_error = str(e)
                if e.fatal and not ever:
                    raise
                if not self._hosts.failed():  # the URL lists another broker node: try it at once
                    log.warning("%s; trying the next broker node", e)
                    continue
                if first_failure_fatal and not ever:
                    raise
                delay = connect.reconnect_delay(attempt)
                attempt += 1
                log.warning("%s; retrying in %.1f s (attempt %d)", e, delay, attempt)
                await asyncio.sleep(delay)
                continue
            ever, attempt, self._ever = True, 0, True
            self.connected, self.last_error = True, ""
            self._up_since = asyncio.get_running_loop().time()
            log.info("connected to the broker node %s of %s as %r", self.node, redact(self.url), self.user)
            self.on_connected()
            assert self._lost is not None
            await self._lost.wait()
            refused, self._refused_close = self._refused_close, ""
            self.node, self.where = "", self.url
            if self._closing:
                continue
            self._hosts.failed()  # the node that dropped us may be going down: reconnect to the next one
            if not refused:
                log.warning("lost the broker connection (%s); reconnecting", self.last_error)
                continue
            # The broker closed the channel for a permission: reconnecting at once would be
            # refused again, ~30 times a second. Wait, longer each time in a row.
            if asyncio.get_running_loop().time() - self._up_since > 60:
                self.refusals.in_a_row = 0
            delay = self.refusals.next_delay()
            log.debug("refused by the broker (%s); reconnecting in %.1f s", refused, delay)
            await asyncio.sleep(delay)

    # -- traffic ---------------------------------------------------------------------
    def _on_message(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        self.on_delivery(Delivery(self.generation, method.delivery_tag, props, body, method.exchange, method.routing_key))

    def ack(self, generation: int, tag: int, multiple: bool = False) -> None:
        if generation == self.generation and self._ch is not None and self._ch.is_open:
            self._ch.basic_ack(tag, multiple=multiple)

    def nack(self, generation: int, tag: int, multiple: bool = False) -> None:
        """Give deliveries back to the broker, to the head of the queue (requeued)."""
        if generation == self.generation and self._ch is not None and self._ch.is_open:
            self._ch.basic_nack(tag, multiple=multiple, requeue=True)

    def pause(self) -> None:
        """Stop consuming: tasks wait on the broker. pika itself requeues the ones already under way."""
        self.paused = True
        if self._consumer is not None and self._ch is not None and self._ch.is_open:
            self._ch.basic_cancel(self._consumer)
        self._consumer = None

    def resume(self) -> None:
        """Consume again (also done by every reconnect while not paused)."""
        self.paused = False
        if self.refused:
            return  # results could not be sent: tasks wait on the broker until publishing is allowed
        if self._consumer is None and self.connected and self._ch is not None and self._ch.is_open:
            self._consumer = self._consume(self._ch)

    def _consume(self, ch: Any) -> str:
        """Consume the endpoint's task queue on CH (manual acks); the consumer tag."""
        return str(ch.basic_consume(names.endpoint_task_queue(self.endpoint_id), self._on_message, auto_ack=False))

    def reject(self, generation: int, tag: int) -> None:
        if generation == self.generation and self._ch is not None and self._ch.is_open:
            self._ch.basic_reject(tag, requeue=False)

    def _on_confirm(self, frame: Any) -> None:
        done, ok = self.confirms.settle(frame)
        for cb in done:
            cb(ok)

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict, *, correlation_id: str,
                content_type: str, on_confirm: Callable[[bool], None] | None = None, persistent: bool = True) -> bool:
        """Publish; False if not connected now, or not allowed to publish to EXCHANGE (the broker
        would close the channel). on_confirm(ok) runs once the broker decided."""
        if not self.connected or self._ch is None or not self._ch.is_open or exchange in self.refused:
            return False
        props = pika.BasicProperties(
            correlation_id=correlation_id, user_id=self.user, headers=headers, content_type=content_type,
            delivery_mode=2 if persistent else 1,
        )
        self._ch.basic_publish(exchange, routing_key, body, props)
        self.confirms.published(on_confirm)
        return True

    async def close(self) -> None:
        self._closing = True
        self.refusals.cancel()
        conn = self._conn
        if conn is not None and not (conn.is_closed or conn.is_closing):
            was_open = conn.is_open  # an aborted handshake reports itself at once, not through _lost
            self._abort()
            if was_open and self._lost is not None:
                try:
                    await asyncio.wait_for(self._lost.wait(), timeout=5)
                except asyncio.TimeoutError:
                    pass
