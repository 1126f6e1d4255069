"""What the endpoint's broker account may do: read its task queue, publish to the results exchange.

A passive queue.declare proves only that the queue exists: RabbitMQ checks no permission
for it (rabbitmq.com/docs/access-control, "How Permissions Work"). So the read permission
is proven by a basic.consume, cancelled at once, and the write permission by a confirmed
publish to ``gce.results``. Both leave a running endpoint alone:

- the probe consumer has the lowest priority and a prefetch of 1, so while the endpoint
  consumes it gets no task, and anything it does get is requeued unacked by the cancel;
- the probe message has a routing key (``gce.diagnostic.<uuid>``) that no result queue is
  bound with, and is not mandatory: the exchange drops it. The endpoint's account has no
  topic permission on ``gce.results`` (gce/transport/provision.py), so any key is allowed.

pika's blocking calls wait for the broker's reply without a time limit of their own: a
deadline on the connection's I/O loop cuts the connection if the broker stops answering.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from gce.commands.diagnostic.result import Result, fail, ok, skip, warn
from gce.transport import names

PROVISION_HINT = "the endpoint's broker account lacks it: gce broker provision --endpoint NAME"
# The lowest consumer priority RabbitMQ accepts (a signed 32-bit x-priority): the endpoint's
# consumer (priority 0) gets every task while it has room.
PROBE_PRIORITY = -(2**31)


class Expired(Exception):
    """The broker did not answer within the deadline."""


@contextmanager
def deadline(conn: Any, seconds: float) -> Iterator[list[bool]]:
    """Cut CONN (a pika BlockingConnection) if the block takes longer than SECONDS.

    The timer is one of the adapter's own (pika's blocking calls run its I/O loop and its
    timers while they wait), so it fires in this thread, in the middle of a hung call,
    which then raises. The yielded list becomes [True] when it fired.
    """
    impl = conn._impl  # pika has no public per-call timeout for BlockingConnection
    fired: list[bool] = []

    def expire() -> None:
        fired.append(True)
        impl._terminate_stream(Expired(f"no answer from the broker within {seconds:g} s"))

    timer = impl._adapter_call_later(seconds, expire)
    try:
        yield fired
    finally:
        if not fired:
            impl._adapter_remove_timeout(timer)


def _refused(e: Any) -> tuple[int, str]:
    return getattr(e, "reply_code", 0), str(getattr(e, "reply_text", "") or e)


def queue(conn: Any, endpoint_id: str, user: str, running: bool) -> Result:
    """The task queue exists (passive declare, with its counts) and USER may consume from it."""
    from pika import exceptions as px

    name = names.endpoint_task_queue(endpoint_id)
    try:
        ch = conn.channel()
        frame = ch.queue_declare(name, passive=True)
        ch.close()
    except px.ChannelClosedByBroker as e:
        code, text = _refused(e)
        if code == 404 and not running:
            return warn("broker queue", f"queue {name} does not exist yet",
                        "the endpoint declares it the first time it starts", queue=name)
        if code == 404:
            return fail("broker queue", f"queue {name} does not exist although the endpoint runs",
                        "restart the endpoint; look at its log", queue=name)
        return fail("broker queue", f"the broker refused queue {name}: {code} {text}", PROVISION_HINT, queue=name)
    waiting, consumers = frame.method.message_count, frame.method.consumer_count
    details = {"queue": name, "messages": waiting, "consumers": consumers}
    counts = f"{waiting} task{'s' * (waiting != 1)} waiting, {consumers} consumer{'s' * (consumers != 1)}"

    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)
        tag = ch.basic_consume(name, lambda *_: None, auto_ack=False, arguments={"x-priority": PROBE_PRIORITY})
        ch.basic_cancel(tag)  # pika requeues whatever arrived meanwhile
        ch.close()
    except px.ChannelClosedByBroker as e:
        code, text = _refused(e)
        # An exclusive consumer holds the queue (403 "in exclusive use"), or the queue is
        # exclusive to another connection (405 RESOURCE_LOCKED): it exists and is consumed.
        if code == 405 or (code == 403 and "exclusive" in text):
            if running:
                return ok("broker queue", f"queue {name}: {counts}; the running endpoint consumes it "
                          "exclusively, so it is read from", **details)
            return warn("broker queue", f"queue {name}: {counts}; another connection consumes it exclusively "
                        "although the endpoint does not run here", "does it run on another host? gce status "
                        "NAME there", **details)
        if code == 403:
            return fail("broker queue", f"user {user!r} lacks the read permission on queue {name}: it cannot "
                        f"consume its tasks ({text})", PROVISION_HINT, **details)
        return fail("broker queue", f"cannot consume from queue {name}: {code} {text}", PROVISION_HINT, **details)
    reason = f"queue {name}: {counts}; {user!r} may consume from it"
    if running and consumers == 0:
        return warn("broker queue", f"queue {name}: {counts} although the endpoint runs",
                    "the endpoint is not connected to this broker: gce status NAME", **details)
    return ok("broker queue", reason, **details)


def results_writable(conn: Any, user: str) -> Result:
    """USER may publish to the results exchange: a confirmed message that routes nowhere."""
    import pika
    from pika import exceptions as px

    exchange = names.RESULTS_EXCHANGE
    key = f"gce.diagnostic.{uuid.uuid4()}"
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(exchange, key, b"", pika.BasicProperties(content_type="text/plain", delivery_mode=1),
                         mandatory=False)
        ch.close()
    except px.ChannelClosedByBroker as e:
        code, text = _refused(e)
        if code == 403:
            return fail("broker publish", f"user {user!r} lacks the write permission on exchange {exchange}: "
                        f"it cannot send results ({text})", PROVISION_HINT, exchange=exchange)
        if code == 404:
            return fail("broker publish", f"exchange {exchange} does not exist ({text})",
                        "the broker is not provisioned for gce: gce broker provision", exchange=exchange)
        return fail("broker publish", f"cannot publish to exchange {exchange}: {code} {text}", PROVISION_HINT,
                    exchange=exchange)
    except px.NackError:
        return fail("broker publish", f"the broker refused (nack) a message to exchange {exchange}",
                    "look at the broker's log (a full disk or memory alarm?)", exchange=exchange)
    return ok("broker publish", f"{user!r} may publish to exchange {exchange} (confirmed)", exchange=exchange)


def run(conn: Any, endpoint_id: str, user: str, running: bool, seconds: float) -> list[Result]:
    """The queue and publish checks over CONN, within SECONDS for both."""
    from pika import exceptions as px

    steps = (("broker queue", lambda: queue(conn, endpoint_id, user, running)),
             ("broker publish", lambda: results_writable(conn, user)))
    results: list[Result] = []
    lost = ""
    with deadline(conn, seconds) as fired:
        for check, step in steps:
            if lost:
                results.append(skip(check, lost))
                continue
            try:
                results.append(step())
            except (px.AMQPError, Expired, OSError) as e:
                if fired:
                    why, lost = f"the broker stopped answering: no reply within {seconds:g} s", \
                        "the broker stopped answering"
                else:
                    why, lost = f"the connection broke: {type(e).__name__}: {str(e)[:300]}", \
                        "the connection to the broker broke"
                results.append(fail(check, why, "look at the broker's log and its load "
                                    "(rabbitmq-diagnostics status)"))
    return results
