"""A task as the SDK sends it: the message one submit becomes, and the item the link publishes.

Both the Executor (through its link, gce.sdk.amqp) and the Client (gce.sdk.client) build tasks
here, so neither imports the other and the link knows what it publishes without the Executor.
"""

from __future__ import annotations

import platform
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pika

import gce
from gce.sdk import serialize
from gce.sdk.errors import PayloadTooLarge
from gce.transport import names
from gce.transport.message import TaskHeaders

DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


@dataclass
class Outgoing:  # a task on its way to the broker: what the link publishes
    task_id: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    future: Future[Any]


def task_message(kind: bytes, blob: bytes, function_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                 user: str, reply_to: str, user_endpoint_config: dict[str, Any],
                 resource_specification: dict[str, Any], max_payload_bytes: int,
                 ) -> tuple[str, bytes, pika.BasicProperties]:
    """(task_id, body, properties) of one task; PayloadTooLarge before anything is sent."""
    args_blob = serialize.serialize_args(args, kwargs)
    if len(args_blob) > max_payload_bytes:  # the endpoint would refuse it anyway
        raise PayloadTooLarge(len(args_blob), max_payload_bytes)
    task_id = str(uuid.uuid4())
    headers = TaskHeaders(
        task_id=task_id, user_id=user, reply_to=reply_to, function_id=function_id, serializer=kind.decode(),
        python_version=platform.python_version(), gce_version=gce.__version__, platform=platform.platform(),
        submitted_at=time.time(),
        user_endpoint_config=user_endpoint_config, resource_specification=resource_specification)
    props = pika.BasicProperties(message_id=task_id, user_id=user, reply_to=reply_to, delivery_mode=2,
                                 content_type=names.TASK_CONTENT_TYPE, headers=headers.amqp_headers())
    return task_id, serialize.pack_task(kind, blob, args_blob), props
