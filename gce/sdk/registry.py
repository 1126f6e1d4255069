"""Registered functions kept on the broker, so that a function id works from every host and
process of the same broker user (README, "Functions known across hosts").

The broker is gce's one shared service, so the registry lives there: one durable queue per
function, ``gce.functions.<user>.<function_id>``, bound to the topic exchange ``gce.functions``
under its own name, holds one persistent message, the function as ``pack([kind, blob])`` with
headers that describe it. A queue per function makes a lookup one ``basic_get`` of a name the
SDK computes, never a scan; only its owner may declare, feed or read it (gce.transport.provision).
What comes back is checked against its id, a hash of its content, before use (and the endpoint
checks it again): a body changed on the broker is never sent under the id it claims.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable

from gce import __version__
from gce.sdk import serialize
from gce.sdk.errors import BrokerUnavailable, UnknownFunction
from gce.transport import connect, names

log = logging.getLogger(__name__)

# Runs OP(channel) on a fresh channel of a connection of the submitter's, and returns its value.
Call = Callable[[Callable[[Any], Any]], Any]
KINDS = {serialize.KIND_PICKLE: "cloudpickle", serialize.KIND_SOURCE: "source"}


class RegistryRefused(BrokerUnavailable):
    """The broker refused the function registry to this user: an account provisioned before it."""

    code = "REGISTRY_REFUSED"

    def __init__(self, what: str, broker_user: str, why: str) -> None:
        super().__init__(what, broker_user, why)
        self.what, self.broker_user, self.why = what, broker_user, why

    def __str__(self) -> str:
        return (f"{self.what}: broker user {self.broker_user!r} may not use the function registry "
                f"({names.FUNCTIONS_EXCHANGE}): {self.why}\nhint: the broker's administrator runs "
                f"'gce broker provision --endpoint NAME --user {self.broker_user}' again, which grants it "
                "(accounts provisioned before it lack it)")


def _python() -> str:
    return "%d.%d.%d" % sys.version_info[:3]


def _cloudpickle() -> str:
    try:
        from importlib.metadata import version

        return version("cloudpickle")
    except Exception:  # not installed as a distribution: the headers say nothing rather than guess
        return ""


class Registry:
    """BROKER_USER's functions on the broker reached through CALL (the URL says whether a cluster)."""

    def __init__(self, call: Call, broker_user: str, url: str) -> None:
        self.call, self.user, self.url = call, broker_user, url

    def _refused(self, what: str, e: Any) -> Exception:
        if e.reply_code in (403, 404):  # 404: the exchange itself is missing, also fixed by provisioning
            return RegistryRefused(what, self.user, e.reply_text)
        return BrokerUnavailable(f"{what}: the broker closed the channel: {e.reply_text}")

    def put(self, function_id: str, kind: bytes, blob: bytes, name: str) -> None:
        """Keep the function on the broker; return once the broker confirmed it (publisher confirm)."""
        import pika

        queue = names.function_queue(self.user, function_id)
        headers = {"function_id": function_id, "function_name": name, "kind": KINDS.get(kind, kind.decode()),
                   "registered_ms": int(time.time() * 1000), "size": len(blob), "python_version": _python(),
                   "gce_version": __version__, "cloudpickle_version": _cloudpickle()}
        props = pika.BasicProperties(user_id=self.user, delivery_mode=2, headers=headers,
                                     content_type="application/x-gce-function")
        # One message per queue: registering again replaces the copy (the same content, by its id).
        arguments = {**connect.result_queue_arguments(self.url, names.FUNCTION_QUEUE_EXPIRES_MS), "x-max-length": 1}

        def op(ch: Any) -> None:
            ch.confirm_delivery()
            ch.queue_declare(queue, durable=True, arguments=arguments)
            ch.queue_bind(queue, names.FUNCTIONS_EXCHANGE, routing_key=queue)
            ch.basic_publish(names.FUNCTIONS_EXCHANGE, queue, serialize.pack([kind, blob]), props, mandatory=True)

        try:
            self.call(op)
        except pika.exceptions.ChannelClosedByBroker as e:
            raise self._refused(f"cannot keep function {function_id} on the broker", e) from None
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            raise BrokerUnavailable(f"the broker did not take function {function_id}; register it again") from None

    def get(self, function_id: str) -> tuple[bytes, bytes, dict[str, Any]]:
        """(kind, blob, metadata) of FUNCTION_ID; UnknownFunction if the broker does not hold it."""
        import pika

        queue = names.function_queue(self.user, function_id)

        def peek(ch: Any) -> tuple[Any, Any, bytes]:
            # Taken unacked and put back at once, as a status report is: the copy stays for others.
            method, props, body = ch.basic_get(queue, auto_ack=False)
            if method is not None:
                ch.basic_nack(method.delivery_tag, requeue=True)
            return method, props, body

        try:
            method, props, body = self.call(peek)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                raise UnknownFunction(function_id, "the broker holds no function with this id for broker user "
                                      f"{self.user!r}") from None
            raise self._refused(f"cannot look up function {function_id} on the broker", e) from None
        if method is None:
            raise UnknownFunction(function_id, "its queue on the broker is empty; register it again")
        try:
            kind, blob = serialize.unpack(body)
        except ValueError:
            raise UnknownFunction(function_id, "the copy on the broker is not a function") from None
        if serialize.function_id_of(kind, blob) != function_id:
            raise UnknownFunction(function_id, "the copy on the broker does not match its id (its content changed)")
        return kind, blob, metadata(function_id, kind, blob, props.headers or {})


def metadata(function_id: str, kind: bytes, blob: bytes, headers: dict) -> dict[str, Any]:
    """What ``Client.get_function`` says of a function: its size, kind and content hash come from
    the function itself; its name, registration time and runtime from the headers it was sent with."""

    def text(key: str) -> str:
        value = headers.get(key)
        return value.decode(errors="replace") if isinstance(value, bytes) else value if isinstance(value, str) else ""

    registered = headers.get("registered_ms")  # AMQP tables as pika writes them hold no floats
    return {"function_id": function_id, "function_name": text("function_name"),
            "kind": KINDS.get(kind, kind.decode(errors="replace")), "size": len(blob), "sha256": function_id,
            "registered": registered / 1000 if isinstance(registered, int) else None,
            "python_version": text("python_version"), "gce_version": text("gce_version"),
            "cloudpickle_version": text("cloudpickle_version")}

