"""The endpoint's own part of the broker's topology, set up on each new channel of its link.

The exchanges are the admin's (gce broker provision): the endpoint only checks they are there.
It declares its task queue and its status queue and binds them, then turns on publisher
confirms and sets the prefetch. Each step that fails says what it needed: RabbitMQ names the
object it refused, not the kind of permission.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from gce.transport import names
from gce.transport.link_errors import LinkError


class Pending:
    """Channel methods under way, their replies awaited on the loop: ``await pending(ch.queue_bind,
    queue=...)``. A channel or connection that goes fails them all (``fail``)."""

    def __init__(self) -> None:
        self._futures: set[asyncio.Future[Any]] = set()

    def __call__(self, fn: Callable[..., Any], **kw: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)

        def done(frame: Any) -> None:
            if not fut.done():  # a failed connection may have failed it already (fail)
                fut.set_result(frame)

        fn(callback=done, **kw)
        return fut

    def fail(self, exc: BaseException) -> None:
        for fut in list(self._futures):
            if not fut.done():
                fut.set_exception(exc)


def status_queue_arguments(queue_type: str) -> dict[str, Any]:
    """The status queue holds the last report alone. It is of the task queue's type: a classic
    queue lives on one node, and while that node is down a quorum endpoint could reconnect to
    the others but not declare its status queue there (404, "home node ... is down")."""
    arguments: dict[str, Any] = {"x-max-length": 1}
    if queue_type != "classic":
        arguments["x-queue-type"] = queue_type
    return arguments


async def set_up(op: Pending, ch: Any, endpoint_id: str, queue_type: str, prefetch: int,
                 on_confirm: Callable[[Any], None]) -> None:
    """Set up the endpoint's queues, bindings, confirms and prefetch on channel CH; a fatal
    LinkError names the step that failed and what it needs."""
    eid = endpoint_id
    tq, sq = names.endpoint_task_queue(eid), names.endpoint_status_queue(eid)
    step, need = "check the exchanges", ""
    try:
        for ex in (names.TASKS_EXCHANGE, names.RESULTS_EXCHANGE, names.STATUS_EXCHANGE):
            step = f"find exchange {ex!r}"
            await op(ch.exchange_declare, exchange=ex, passive=True)
        step, need = f"declare queue {tq!r}", f"declaring it needs configure permission on {tq!r}"
        await op(ch.queue_declare, queue=tq, durable=True, arguments={"x-queue-type": queue_type})
        step, need = f"bind queue {tq!r}", f"binding needs write permission on {tq!r} and read permission " \
            f"on exchange {names.TASKS_EXCHANGE!r}"
        await op(ch.queue_bind, queue=tq, exchange=names.TASKS_EXCHANGE, routing_key=eid)
        step, need = f"declare queue {sq!r}", f"declaring it needs configure permission on {sq!r}"
        await op(ch.queue_declare, queue=sq, durable=True, arguments=status_queue_arguments(queue_type))
        step, need = f"bind queue {sq!r}", f"binding needs write permission on {sq!r} and read permission " \
            f"on exchange {names.STATUS_EXCHANGE!r}"
        await op(ch.queue_bind, queue=sq, exchange=names.STATUS_EXCHANGE, routing_key=eid)
        step, need = "enable publisher confirms", ""
        await op(ch.confirm_delivery, ack_nack_callback=on_confirm)
        step = "set the prefetch"
        await op(ch.basic_qos, prefetch_count=prefetch)
    except LinkError as e:
        # RabbitMQ names the object it refused, not the kind of permission: say what the step needs.
        needs = f"; {need}" if need and "ACCESS_REFUSED" in str(e) else ""
        raise LinkError(f"could not {step}: {e}{needs}", fatal=True) from None
