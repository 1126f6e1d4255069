"""Whether the broker lets the endpoint publish where it must: a confirmed publish to each exchange.

A permission on an exchange shows only when something is published there: a refused publish
closes the channel (403 ACCESS_REFUSED), a permitted one is confirmed. So the check publishes
an empty, non-mandatory message on a channel of its own (a refusal closes that channel, not the
link's) with a routing key no queue is bound to: RabbitMQ confirms an unroutable message as soon
as it decided there is nowhere to put it, after checking the permission, and drops it. The key is
no result queue's name, and submitters may bind their queues only with their own queues' names
(gce/transport/provision.py), so nobody receives these messages.

Only gce.results is checked this way: the endpoint's topic permission on gce.status allows one
routing key, its own id, whose queue keeps one message, so a check there would replace the
endpoint's last status. A refused status publish closes the link's channel instead, which the
link meets with the same backoff (gce/transport/amqp.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pika

from gce.transport import names
from gce.transport.link_errors import LinkError

CHECKED_EXCHANGES = (names.RESULTS_EXCHANGE,)
PROBE_ROUTING_KEY = "gce.publish-check"
CHECK_TIMEOUT = 10.0
_WHAT = {names.RESULTS_EXCHANGE: "cannot publish results (permission)"}


def problems(refused: dict[str, str]) -> list[str]:
    """What each refused exchange costs, in fixed words (safe to show every submitter)."""
    return [_WHAT.get(ex, f"cannot publish to {ex} (permission)") for ex in refused]


async def refusal(conn: Any, exchange: str) -> str:
    """"" if the broker confirms a publish to EXCHANGE over CONN now, else its refusal.
    LinkError if the connection fails meanwhile or the broker does not answer."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future = loop.create_future()
    outcome: asyncio.Future = loop.create_future()

    def settle(value: Any) -> None:
        if not outcome.done():
            outcome.set_result(value)

    try:
        conn.channel(on_open_callback=opened.set_result)
        ch = await asyncio.wait_for(opened, CHECK_TIMEOUT)
        ch.add_on_close_callback(lambda _ch, reason: settle(reason))
        ch.confirm_delivery(ack_nack_callback=settle)
        ch.basic_publish(exchange, PROBE_ROUTING_KEY, b"", pika.BasicProperties(delivery_mode=1))
        result = await asyncio.wait_for(outcome, CHECK_TIMEOUT)
    except asyncio.TimeoutError:
        raise LinkError(f"the broker did not confirm a publish to {exchange!r} within {CHECK_TIMEOUT:.0f} s") from None
    except pika.exceptions.AMQPError as e:  # the connection closed under the check
        raise LinkError(f"the publish check of {exchange!r} failed: {e!r}") from None
    if isinstance(result, BaseException):  # the channel closed before a confirm
        if getattr(result, "reply_code", 0) == 403:
            return getattr(result, "reply_text", "") or str(result)
        raise LinkError(f"the publish check of {exchange!r} failed: {result!r}")
    if ch.is_open:
        ch.close()
    if isinstance(result.method, pika.spec.Basic.Nack):
        raise LinkError(f"the broker could not take a publish to {exchange!r} (nacked)")
    return ""


async def refusals(conn: Any) -> dict[str, str]:
    """{exchange: the broker's refusal} for each exchange the endpoint may not publish to now."""
    found = {}
    for exchange in CHECKED_EXCHANGES:
        why = await refusal(conn, exchange)
        if why:
            found[exchange] = why
    return found
