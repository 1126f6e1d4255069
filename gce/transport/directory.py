"""Which endpoints a broker user may submit to, written where she alone reads it.

Her topic permission on ``gce.tasks`` decides where she may submit, but an AMQP client cannot read
its own permissions. So provisioning also writes the list into her directory queue,
``gce.directory.<user>`` (declared by the definitions with max-length 1, readable by her alone,
fed by nobody but provisioning), as one persistent JSON message ``{"version": 1, "endpoints":
[ids], "updated": unix time}``. rabbitmqctl cannot publish a message, so ``gce broker provision``
loads a short-lived account that may only publish there (provision.directory_writer), publishes
as it, and deletes it. The SDK (``Client.get_endpoints``) reads the list, then each endpoint's status.
"""

from __future__ import annotations

import json
import time
from typing import Iterable

from gce.transport import connect, names

VERSION = 1
CONTENT_TYPE = "application/json"


def body(endpoint_ids: Iterable[str]) -> bytes:
    return json.dumps({"version": VERSION, "endpoints": sorted(set(endpoint_ids)), "updated": time.time()}).encode()


def parse(data: bytes) -> tuple[list[str], float | None]:
    """(the endpoint ids, when written) of a directory message; ValueError if it is not one."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("endpoints"), list):
        raise ValueError("not a gce endpoint directory")
    ids = [e for e in doc["endpoints"] if isinstance(e, str)]
    updated = doc.get("updated")
    return ids, float(updated) if isinstance(updated, (int, float)) else None


def publish(url: str, directories: dict[str, list[str]]) -> None:
    """Publish each user's endpoint ids to her directory queue, as the account in URL; return once
    the broker confirmed them all. pika's errors go to the caller (the broker may be out of reach)."""
    import pika

    conn = pika.BlockingConnection(connect.parameters(url, heartbeat=30, name="gce broker provision"))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for user, ids in directories.items():
            props = pika.BasicProperties(delivery_mode=2, content_type=CONTENT_TYPE)
            ch.basic_publish(names.DIRECTORY_EXCHANGE, user, body(ids), props, mandatory=True)
    finally:
        if conn.is_open:
            conn.close()
