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
import logging
from typing import Any, Awaitable, Callable

import pika

from gce.transport import names
from gce.transport.link_errors import LinkError, refusal_backoff

log = logging.getLogger("gce.transport.amqp")  # the link's own log lines

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


class Refusals:
    """The exchanges the broker refuses the link now. While any is refused, CHECK runs again
    after a capped, jittered backoff (it returns None once its connection went: the next one
    checks at its start); ON_ALLOWED runs once all are allowed. Logged once per change."""

    def __init__(self, check: Callable[[], Awaitable[dict[str, str] | None]], on_allowed: Callable[[], None]) -> None:
        self.refused: dict[str, str] = {}
        self.in_a_row = 0  # refusals in a row: how long to wait before the next try
        self._check = check
        self._on_allowed = on_allowed
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None  # the loop keeps only a weak reference to a task

    def problems(self) -> list[str]:
        return problems(self.refused)

    def update(self, refused: dict[str, str]) -> None:
        before, self.refused = self.refused, refused
        if refused and set(refused) != set(before):
            log.error("the broker refuses what the endpoint must publish (%s): %s; taking no tasks and holding "
                      "results until it is allowed; checking again with a backoff",
                      "; ".join(problems(refused)), "; ".join(refused.values()))
        if refused:
            self._schedule()

    def next_delay(self) -> float:
        """Seconds to wait after one more refusal in a row: longer each time (capped, jittered)."""
        delay = refusal_backoff(self.in_a_row)
        self.in_a_row += 1
        return delay

    def _schedule(self) -> None:
        delay = self.next_delay()
        log.debug("publishing refused %d time(s) in a row; checking again in %.1f s", self.in_a_row, delay)
        self.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._start_check)

    def _start_check(self) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(self._again())

    async def _again(self) -> None:
        refused = await self._check()
        if refused is None:
            return
        if refused:
            self.update(refused)
            return
        log.warning("publishing results is allowed again: taking tasks and sending the results held meanwhile")
        self.refused, self.in_a_row = {}, 0
        self._on_allowed()

    def cancel(self) -> None:
        """The connection went: its successor checks at its start."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
