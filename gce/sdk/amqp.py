"""The Executor's broker link: one background thread owning a pika SelectConnection.

pika is not thread-safe, so only this thread touches the connection. ``publish_task`` queues a task and
wakes the thread once per batch, published back to back and settled by asynchronous publisher
confirms (``Basic.Ack`` with ``multiple``): no task waits for a round trip. Small tasks of a batch
bound for an endpoint that takes bundles (``bundle_tasks_to``) go several to a message
(gce.transport.bundles). Tasks are ``mandatory``:
a ``basic.return`` before the ack means no queue is bound for the endpoint. Results are consumed on
the same channel, handed to ``on_result``, then acked. Lost connections come back with jittered
backoff; unconfirmed tasks are re-published (at-least-once: the duplicate filter makes it safe).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from typing import Any, Callable, Sequence

import pika

from gce.sdk.errors import (BrokerUnavailable, ExecutorFailed, connect_error, nacked, no_task_queue, refused_login,
                            refused_routing_key, setup_error, submit_refused)
from gce.sdk.settings import broker_user, connection_parameters, redact
from gce.sdk.tasks import Outgoing
from gce.transport import bundles, connect, names
from gce.transport.confirms import NACKS_BEFORE_NEW_CONNECTION, Confirms

log = logging.getLogger(__name__)

# A nack is the broker's "not now": a quorum queue whose leader's node just went down nacks what
# arrives before the survivors elect a new one. A nacked task is published again after a
# backoff (gce.transport.connect), NACK_RETRIES times, before its future fails.
NACK_RETRIES = 6
# Tasks handed to the link and not yet confirmed by the broker, at most: publish_task (and so
# submit()) waits beyond this, so a burst of a million submits holds the payloads (and pika's
# frames) of this many tasks in memory, not of a million.
MAX_UNSETTLED = 10_000


class Link:
    def __init__(self, url: str, queue: str, *, queue_expires_ms: int, heartbeat: int, prefetch: int,
                 on_result: Callable[[Any, bytes], None], on_publish_failed: Callable[[Outgoing, Exception], None],
                 on_fatal: Callable[[Exception], None],
                 before_publish: Callable[[Sequence[Outgoing]], None] | None = None,
                 on_bundled: Callable[[str, Sequence[Outgoing]], None] | None = None) -> None:
        self.url, self.queue, self.user, self.where = url, queue, broker_user(url), redact(url)
        self.queue_expires_ms, self.heartbeat, self.prefetch = queue_expires_ms, heartbeat, prefetch
        self._on_result, self._on_publish_failed, self._on_fatal = on_result, on_publish_failed, on_fatal
        self._before_publish = before_publish  # told each batch before it is published (its task group's log)
        self._on_bundled = on_bundled  # told the tasks of each bundle as it is published, and its message id
        self._lock = threading.Lock()
        # Notified when nothing waits for a confirm, and when there is room again under MAX_UNSETTLED.
        self._idle = threading.Condition(self._lock)
        self._outgoing: deque[Outgoing] = deque()
        self._unsettled = 0  # queued + published-but-unconfirmed
        self._wake_pending = self._ready = self._closing = self._delete_queue = False
        self._conn: Any = None  # the current SelectConnection, while its loop runs
        self._wakeup, self._started = threading.Event(), threading.Event()  # wakeup: cuts a backoff short
        self.fatal: Exception | None = None
        self.ever_connected = False  # once true, connection failures are retried
        # Owned by the I/O thread only:
        self._ch: Any = None
        self._attempt = 0
        self._unconfirmed: Confirms[Outgoing] = Confirms()
        self._returned: set[str] = set()
        self._nacks: dict[str, int] = {}  # task id -> times nacked
        self._retrying: dict[str, Outgoing] = {}  # nacked, waiting to be published again
        self._step = ""  # the setup step in progress, for error messages
        self._hosts = connect.Hosts()  # which of the URL's broker hosts (a cluster's nodes) is next
        self._trying = ""  # HOST:PORT of the node being connected to
        self._next_now = False  # another node to try before waiting
        self.node = ""  # HOST:PORT of the broker node reached, while connected
        self._bundles_to: set[str] = set()  # endpoint ids whose managers said they take bundles of tasks
        self._thread = threading.Thread(target=self._run, name=f"gce-sdk {queue}", daemon=True)

    # -- API for other threads ---------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Connect; raise BrokerUnavailable if the first connection or its setup fails."""
        self._thread.start()
        if not self._started.wait(timeout):
            self.close(delete_queue=False, timeout=2)
            raise BrokerUnavailable(f"the broker at {self.where} did not answer within {timeout:.0f} s")
        if self.fatal is not None and not self.ever_connected:
            raise self.fatal

    def publish_task(self, item: Outgoing) -> None:
        with self._lock:
            if threading.current_thread() is not self._thread:  # never waits for itself (a done callback)
                self._idle.wait_for(lambda: self._unsettled < MAX_UNSETTLED or self.fatal is not None
                                    or self._closing or not self._thread.is_alive())
            if self.fatal is not None:
                raise self.fatal
            self._outgoing.append(item)
            self._unsettled += 1
            if self._ready and not self._wake_pending:
                self._wake_pending = True
                self._conn.ioloop.add_callback_threadsafe(self._drain)

    def bundle_tasks_to(self, endpoint_id: str, yes: bool = True) -> None:
        """ENDPOINT_ID's manager takes bundles of tasks (YES: send it small tasks several to a
        message), or cannot read them (an older manager took its place: one task per message again)."""
        if yes:
            self._bundles_to.add(endpoint_id)
        else:
            self._bundles_to.discard(endpoint_id)

    def wait_published(self, timeout: float | None = None) -> bool:
        """Wait until the broker confirmed (or refused) every task handed over so far."""
        with self._idle:
            return self._idle.wait_for(
                lambda: self._unsettled <= 0 or self.fatal is not None or not self._thread.is_alive(), timeout)

    def close(self, delete_queue: bool, timeout: float = 10.0) -> None:
        with self._lock:
            self._closing, self._delete_queue = True, delete_queue
            if self._conn is not None:
                self._conn.ioloop.add_callback_threadsafe(self._begin_close)
        self._wakeup.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)

    # -- connection lifecycle (I/O thread) ---------------------------------------------
    def _run(self) -> None:
        while not self._closing and self.fatal is None:
            try:
                self._serve()
            except Exception as e:  # a bug must fail the futures, never leave them hanging
                log.exception("the gce SDK connection thread failed")
                self.fatal = ExecutorFailed(f"internal error in the gce SDK connection thread: {e!r}")
            if self._closing or self.fatal is not None:
                break
            if self._next_now:  # the URL lists another node: a cluster's survivor takes over at once
                self._next_now = False
                continue
            delay = connect.reconnect_delay(self._attempt)
            self._attempt += 1
            log.warning("broker connection to %s lost; reconnecting in %.1f s", self.where, delay)
            self._wakeup.wait(delay)
        with self._lock:  # closed or failed: nothing waits for the broker any more
            self._outgoing.clear()
            self._unsettled = 0
            self._idle.notify_all()
        self._started.set()
        if self.fatal is not None:
            self._on_fatal(self.fatal)

    def _serve(self) -> None:
        params = self._hosts.pick(connection_parameters(self.url, self.heartbeat, f"gce sdk {self.queue}"))
        self._trying = connect.node(params)
        conn = pika.SelectConnection(params,
                                     on_open_callback=lambda c: c.channel(on_open_callback=self._on_channel),
                                     on_open_error_callback=self._on_open_error, on_close_callback=self._on_closed)
        with self._lock:
            self._conn = conn
        try:
            conn.ioloop.start()
        finally:
            with self._lock:
                self._conn, self._ready = None, False
                # Re-publish, in order, whatever the broker had not confirmed.
                self._outgoing.extendleft(reversed(self._unconfirmed.new_channel()))
                self._outgoing.extend(self._retrying.values())  # their timers died with the loop
                self._retrying.clear()
            self._returned, self._ch, self.node = set(), None, ""
            conn.ioloop.close()

    def _on_open_error(self, conn: Any, exc: BaseException) -> None:
        err = connect_error(f"{self.where} (node {self._trying})", self.user, exc)
        if refused_login(exc):  # a cluster's nodes share their accounts: the next would refuse too
            self.fatal = err
        elif not self._hosts.failed():
            self._next_now = True
        elif not self.ever_connected:  # no listed node answers: cannot work
            self.fatal = err
        log.warning("%s", err)
        conn.ioloop.stop()

    def _on_closed(self, conn: Any, reason: BaseException) -> None:
        if not self._closing:
            log.warning("broker connection to node %s closed: %s", self._trying, reason)
            self._next_now = self.node != "" and not self._hosts.failed()  # that node may be going down
        conn.ioloop.stop()

    def _on_channel(self, ch: Any) -> None:
        self._ch = ch  # its publishes number from 1: the last channel's ended with new_channel()
        ch.add_on_close_callback(self._on_channel_closed)
        ch.add_on_return_callback(lambda _c, _m, props, _b: self._returned.add(props.message_id))
        ch.add_on_cancel_callback(lambda _f: self._close_connection("the broker cancelled the result consumer"))
        q, ex_tasks, ex_results = self.queue, names.TASKS_EXCHANGE, names.RESULTS_EXCHANGE
        steps: list[tuple[str, Callable[[Callable], Any]]] = [
            # Passive: provisioned, and users may not configure exchanges. The bind checks gce.results.
            (f"find exchange {ex_tasks!r}", lambda cb: ch.exchange_declare(ex_tasks, passive=True, callback=cb)),
            (f"declare result queue {q!r}", lambda cb: ch.queue_declare(
                q, durable=True, arguments=connect.result_queue_arguments(self.url, self.queue_expires_ms),
                callback=cb)),
            (f"bind {q!r} to {ex_results!r}", lambda cb: ch.queue_bind(q, ex_results, routing_key=q, callback=cb)),
            ("enable publisher confirms", lambda cb: ch.confirm_delivery(self._on_confirm, callback=cb)),
            ("set the prefetch", lambda cb: ch.basic_qos(prefetch_count=self.prefetch, callback=cb)),
            (f"consume {q!r}", lambda cb: ch.basic_consume(q, self._on_message, callback=cb)),
        ]

        def run(i: int) -> None:
            self._step = steps[i][0] if i < len(steps) else ""
            steps[i][1](lambda _frame: run(i + 1)) if i < len(steps) else self._on_ready()

        run(0)

    def _on_ready(self) -> None:
        self.ever_connected, self._attempt, self.node = True, 0, self._trying
        self._hosts.reached()
        log.info("connected to the broker node %s of %s", self.node, self.where)
        with self._lock:
            self._ready = self._wake_pending = True
        self._started.set()
        self._drain()

    def _on_channel_closed(self, ch: Any, reason: BaseException) -> None:
        if ch is not self._ch:
            return
        self._ch = None
        code, text = getattr(reason, "reply_code", 0), getattr(reason, "reply_text", "") or str(reason)
        with self._lock:
            self._ready = False
        if self._closing:
            return self._close_connection()
        if self._step:  # setting up: permissions or provisioning are wrong, retrying will not help
            self.fatal = setup_error(self._step, self.where, self.user, code, text)
            return self._close_connection()
        unconfirmed = self._unconfirmed.new_channel()
        # A refused publish (403 topic permission, 406 user_id) drops everything after it:
        # fail the refused routing key; the rest is re-published after the reconnect.
        refused = refused_routing_key(code, text)
        for item in unconfirmed:
            if refused is not None and item.routing_key in (refused, "*"):
                self._settle(item, submit_refused(item.routing_key, self.user, text, item.task_id))
        with self._lock:
            self._outgoing.extendleft(reversed([i for i in unconfirmed if refused not in (i.routing_key, "*")]))
        self._close_connection(f"channel closed: {text}")

    def _close_connection(self, why: str = "") -> None:
        if why and not self._closing:  # when closing, our own queue_delete cancels the consumer too
            log.warning("%s; reconnecting", why)
        with self._lock:  # publish nothing more on this connection
            self._ready = False
        if self._conn is not None and not (self._conn.is_closing or self._conn.is_closed):
            self._conn.close()

    def _begin_close(self) -> None:
        if self._ch is not None and self._ch.is_open and self._delete_queue:
            return self._ch.queue_delete(self.queue, callback=lambda _f: self._close_connection())
        self._close_connection()

    # -- traffic (I/O thread) ----------------------------------------------------------
    def _drain(self) -> None:
        with self._lock:
            self._wake_pending = False
            # A channel closing (the link closing its connection: a nacked task's retry timer may
            # fire before the close completes) takes no publish: the next connection sends them.
            if not self._ready or self._ch is None or not self._ch.is_open:
                return
            batch, self._outgoing = self._outgoing, deque()
        if self._before_publish is not None and batch:
            self._before_publish(batch)
        run: list[Outgoing] = []  # small tasks in a row for one endpoint that takes bundles
        for item in batch:
            if item.future.cancelled():  # cancelled before it left: never send it
                self._settle(item)
                continue
            bundled = (item.routing_key in self._bundles_to and len(item.body) <= bundles.SMALL
                       and item.properties.content_type == names.TASK_CONTENT_TYPE)  # a task, not a cancel
            if run and not (bundled and self._bundles_with(run[0], item)):
                self._publish_run(run)  # in the order they were submitted
                run = []
            if bundled:
                run.append(item)
                continue
            self._publish_one(item)
        self._publish_run(run)

    @staticmethod
    def _bundles_with(first: Outgoing, item: Outgoing) -> bool:
        return (item.routing_key, item.properties.reply_to, item.properties.user_id) == (
            first.routing_key, first.properties.reply_to, first.properties.user_id)

    def _publish_one(self, item: Outgoing) -> None:
        item.sent_as = item.task_id
        self._ch.basic_publish(names.TASKS_EXCHANGE, item.routing_key, item.body, item.properties, mandatory=True)
        self._unconfirmed.published(item)

    def _publish_run(self, run: list[Outgoing]) -> None:
        for part in bundles.split(run, lambda item: len(item.body)):
            if len(part) == 1:
                self._publish_one(part[0])
                continue
            first, bundle_id = part[0].properties, str(uuid.uuid4())
            body = bundles.encode(bundles.TASKS, (({**item.properties.headers, "task-id": item.task_id}, item.body)
                                                  for item in part))
            props = pika.BasicProperties(message_id=bundle_id, user_id=first.user_id, reply_to=first.reply_to,
                                         delivery_mode=2, content_type=names.TASK_BUNDLE_CONTENT_TYPE,
                                         headers={"gce-protocol": names.PROTOCOL_VERSION, "tasks": str(len(part))})
            for item in part:
                item.sent_as = bundle_id
            if self._on_bundled is not None:
                self._on_bundled(bundle_id, part)
            self._ch.basic_publish(names.TASKS_EXCHANGE, part[0].routing_key, body, props, mandatory=True)
            self._unconfirmed.published_all(part)

    def _on_confirm(self, frame: Any) -> None:
        done, acked = self._unconfirmed.settle(frame)
        for item in done:
            if not acked and self._nacks.get(item.task_id, 0) < NACK_RETRIES and not self._closing:
                tries = self._nacks[item.task_id] = self._nacks.get(item.task_id, 0) + 1
                self._retrying[item.task_id] = item
                delay = connect.reconnect_delay(tries - 1)
                log.info("the broker nacked task %s (%d time(s)); publishing it again in %.1f s", item.task_id, tries, delay)
                self._conn.ioloop.call_later(delay, lambda i=item: self._again(i))
                if tries == NACKS_BEFORE_NEW_CONNECTION:  # with the rest unconfirmed
                    self._close_connection("the broker nacks tasks again and again")
                continue
            self._nacks.pop(item.task_id, None)  # settled: not published again
            if not acked:
                self._settle(item, nacked(item.routing_key, item.task_id))
            elif item.sent_as in self._returned:  # the broker sends basic.return before the ack
                self._settle(item, no_task_queue(item.routing_key, item.task_id))
            else:
                self._settle(item)
        self._returned.difference_update(item.sent_as for item in done)

    def _again(self, item: Outgoing) -> None:
        if self._retrying.pop(item.task_id, None) is not None:  # else a reconnect re-queued it already
            with self._lock:
                self._outgoing.append(item)
            self._drain()

    def _settle(self, item: Outgoing, failure: Exception | None = None) -> None:
        with self._lock:
            self._unsettled -= 1
            if self._unsettled <= 0 or self._unsettled == MAX_UNSETTLED - 1:
                self._idle.notify_all()
        if failure is not None:
            self._on_publish_failed(item, failure)

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        try:
            self._on_result(props, body)
        except Exception:  # must not stop the loop; the handler fails the future itself
            log.exception("could not handle the result of task %s", props.correlation_id)
        ch.basic_ack(method.delivery_tag)
