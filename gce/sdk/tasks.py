"""A task as the SDK sends it: the message one submit becomes, and the item the link publishes.

Both the Executor (through its link, gce.sdk.amqp) and the Client (gce.sdk.client) build tasks
here, so neither imports the other and the link knows what it publishes without the Executor.
"""

from __future__ import annotations

import functools
import math
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
from gce.sdk.shell import ShellFunction
from gce.transport import names, resources
from gce.transport.message import FUNCTION_NAME_MAX, TaskHeaders

DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


@dataclass
class Outgoing:  # a task on its way to the broker: what the link publishes
    task_id: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    future: Future[Any]
    sent_as: str = ""  # the message id it was last published under: its own task id, or its bundle's


def _plain(name: str) -> str:
    """NAME as the endpoint accepts it: printable, at most FUNCTION_NAME_MAX characters."""
    return "".join(c if c.isprintable() else "?" for c in name[:FUNCTION_NAME_MAX])


def function_name(fn: Any) -> str:
    """What FN is called, for people watching the endpoint: its ``__name__`` (a partial's function's),
    or for a ShellFunction its command's first word; plain text of bounded length."""
    if isinstance(fn, ShellFunction):
        words = fn.cmd.split()
        return _plain(words[0] if words else "")
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    return _plain(name if isinstance(name, str) else type(fn).__name__)


def _named_by_source(kind: bytes, blob: bytes) -> str:
    # register_source_code's blob starts with the function's name on a line of its own (serialize.py)
    if kind != serialize.KIND_SOURCE:
        return ""
    return _plain(blob.split(b"\n", 1)[0].decode("utf-8", "replace"))


def time_limit(value: Any, what: str) -> float:
    """VALUE checked as a task's time limit: a positive, finite number of seconds. Checked before a
    task is sent, so a bad one is a TypeError or ValueError here, not a task that fails on the endpoint."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds (an int or a float, e.g. 60), "
                        f"not {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive, finite number of seconds (e.g. 60), not {value!r}")
    return value


def retries_allowed(value: Any) -> int | None:
    """VALUE checked as max_retries_on_system_failure: None (the endpoint's default) or a whole number
    from 0 to 999 of times a task whose worker died is run again (the endpoint caps it: gce.uep.retries)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_retries_on_system_failure must be a whole number (e.g. 2), "
                        f"not {type(value).__name__} {value!r}")
    if not 0 <= value <= 999:
        raise ValueError(f"max_retries_on_system_failure must be from 0 to 999, not {value!r}")
    return value


def check_resource_specification(spec: dict[str, Any], what: str = "resource_specification") -> dict[str, Any]:
    """SPEC, whose ``walltime`` (seconds the endpoint lets the task run), if any, is a good time limit,
    and whose MPI counts, if any, are whole numbers that agree (gce.transport.resources)."""
    if "walltime" in spec:
        time_limit(spec["walltime"], f"{what}['walltime']")
    resources.mpi_shape(spec, what)
    return spec


def task_message(kind: bytes, blob: bytes, function_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                 user: str, reply_to: str, user_endpoint_config: dict[str, Any],
                 resource_specification: dict[str, Any], max_payload_bytes: int, function_name: str = "",
                 max_retries_on_system_failure: int | None = None, result_bundles: bool = False,
                 ) -> tuple[str, bytes, pika.BasicProperties]:
    """(task_id, body, properties) of one task; PayloadTooLarge before anything is sent. FUNCTION_NAME
    labels the task for people (function_name(fn)); without one, a function sent as source is named by it.
    RESULT_BUNDLES: the submitter reads results that come several to a message (gce.transport.bundles)."""
    args_blob = serialize.serialize_args(args, kwargs)
    if len(args_blob) > max_payload_bytes:  # the endpoint would refuse it anyway
        raise PayloadTooLarge(len(args_blob), max_payload_bytes)
    check_resource_specification(resource_specification)  # it may have been changed in place since it was set
    task_id = str(uuid.uuid4())
    headers = TaskHeaders(
        task_id=task_id, user_id=user, reply_to=reply_to, function_id=function_id, serializer=kind.decode(),
        python_version=platform.python_version(), gce_version=gce.__version__, platform=platform.platform(),
        submitted_at=time.time(), function_name=_plain(function_name) or _named_by_source(kind, blob),
        user_endpoint_config=user_endpoint_config, resource_specification=resource_specification,
        max_retries_on_system_failure=max_retries_on_system_failure, result_bundles=result_bundles)
    props = pika.BasicProperties(message_id=task_id, user_id=user, reply_to=reply_to, delivery_mode=2,
                                 content_type=names.TASK_CONTENT_TYPE, headers=headers.amqp_headers())
    return task_id, serialize.pack_task(kind, blob, args_blob), props
