"""``Client.get_endpoints``: the endpoints this broker user may submit to, each with its status.

Which endpoints she was given is in her directory queue on the broker (gce.transport.directory),
which ``gce broker provision`` fills and she alone reads; each endpoint's status is its last report
(``Client.get_endpoint_status``: online, offline or unknown, and when last seen).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from gce.sdk.errors import BrokerUnavailable
from gce.transport import directory, names

Call = Callable[[Callable[[Any], Any]], Any]


class NoDirectory(BrokerUnavailable):
    """The broker holds no list of endpoints this user may read: an account provisioned before it."""

    code = "NO_DIRECTORY"


def _hint(user: str) -> str:
    return (f"\nhint: the broker's administrator runs 'gce broker provision --endpoint NAME --user {user}' again, "
            "which writes the list (accounts provisioned before it have none)")


def peek(queue: str) -> Callable[[Any], tuple[Any, bytes]]:
    """An operation on a channel reading QUEUE's one message and leaving it for the next reader:
    taken unacked and put back at once (a status report, a directory). A message published
    meanwhile is not lost: the requeued one goes back to the head, where max-length 1 drops it."""

    def op(ch: Any) -> tuple[Any, bytes]:
        method, _props, body = ch.basic_get(queue, auto_ack=False)
        if method is not None:
            ch.basic_nack(method.delivery_tag, requeue=True)
        return method, body

    return op


def read(call: Call, user: str) -> tuple[list[str], float | None]:
    """(the endpoint ids in USER's directory, when provisioning wrote it)."""
    import pika

    for attempt in range(3):
        try:
            method, body = call(peek(names.directory_queue(user)))
        except pika.exceptions.ChannelClosedByBroker as e:
            raise NoDirectory(f"cannot read the endpoints broker user {user!r} may submit to: {e.reply_text}"
                              + _hint(user)) from None
        if method is not None:
            break
        time.sleep(0.1 * (attempt + 1))  # another reader holds it for a moment, or it was never written
    else:
        return [], None
    if (method.exchange, method.routing_key) != (names.DIRECTORY_EXCHANGE, user):
        raise NoDirectory(f"the list of endpoints of broker user {user!r} did not come from provisioning "
                          f"(exchange {method.exchange!r}, key {method.routing_key!r})" + _hint(user))
    try:
        return directory.parse(body)
    except ValueError as e:
        raise NoDirectory(f"the list of endpoints of broker user {user!r} is unreadable ({e})" + _hint(user)) from None


def endpoints(call: Call, user: str, status_of: Callable[[str], tuple[dict[str, Any], bool]]) -> list[dict[str, Any]]:
    """Each endpoint USER may submit to: endpoint_id, display_name, status (online, offline or
    unknown), last_seen (a Unix time, or None), reason (for unknown) and details (its public status).
    STATUS_OF gives an endpoint's status and whether the broker refused it to USER."""
    ids, _updated = read(call, user)
    found = []
    for endpoint_id in ids:
        status, refused = status_of(endpoint_id)
        if refused:
            # Revoked since provisioning wrote the list (gce broker revoke drops the grant, not the
            # line): the broker no longer lets her near it, so it is not hers to list.
            continue
        details = status.get("details") or {}
        found.append({"endpoint_id": endpoint_id, "display_name": details.get("display_name"),
                      "status": status["status"], "last_seen": status.get("last_seen"),
                      "reason": status.get("reason"), "details": details})
    return found
