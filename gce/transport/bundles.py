"""Several tasks, or several results, in one AMQP message: a bundle.

RabbitMQ and pika cost per message far more than per byte: each task of a burst costs the broker,
the manager and the SDK two messages (routing, a persistent write, a delivery, an ack, a publisher
confirm for each). Bundled, a burst costs them a message per bundle, in both directions:

- Results: an Executor marks its tasks ``result-bundles: 1``; the manager then publishes the small
  results of one turn of its loop that go to the same result queue as one message
  (gce.daemon.outbox). A task without the mark (a Client's, which reads its queue a message at a
  time; an older SDK's) is answered one message per result.
- Tasks: a manager says ``task-bundles: 1`` in each result it sends. Once an Executor has read
  that from an endpoint, it publishes the small tasks submitted while its link was busy, for that
  endpoint, as bundles (gce.sdk.amqp); the manager takes each task of a bundle as it takes a task
  message (gce.daemon.manager), and acks the bundle once all of them are spooled.

A lone task or result goes as a plain message, as before: a single round trip waits for nothing.

A bundle's body is its MAGIC then, per task or result, a 4-byte length and the JSON object of
what would have been its message's headers (a task's also holding its id, ``task-id``), a 4-byte
length and its payload. The bundle's own properties carry what all of them share: the exchange and
routing key, the user id the broker checked, a task bundle's reply_to.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Iterable, NamedTuple, TypeVar

from gce.transport import limits

TASK_BUNDLES_HEADER = "task-bundles"  # in a result's headers, "1": its manager takes bundles of tasks
RESULTS = b"GCE-RESULTS-1\n"  # the MAGIC of a bundle of results
TASKS = b"GCE-TASKS-1\n"  # and of a bundle of tasks
_LEN = struct.Struct("!I")
SMALL = 64 * 1024  # a payload larger than this goes alone
# Tasks or results in one bundle, at most, and bytes, about (a run is split to stay under both). An
# endpoint's broker.prefetch counts messages: a bundle is one, so these bound what prefetch lets in.
MAX_ITEMS = 64
MAX_BYTES = 256 * 1024
MAX_HEADER_BYTES = 256 * 1024  # one entry's headers, when read back
READ_AT_MOST = 4 * MAX_ITEMS  # entries read from one bundle: a bigger one was not made by gce

T = TypeVar("T")


def encode(magic: bytes, entries: Iterable[tuple[dict[str, Any], bytes]]) -> bytes:
    parts = [magic]
    for headers, body in entries:
        h = json.dumps(headers, separators=(",", ":")).encode()
        parts += (_LEN.pack(len(h)), h, _LEN.pack(len(body)), body)
    return b"".join(parts)


def decode(magic: bytes, data: bytes) -> tuple[list[tuple[dict, bytes]], str]:
    """The entries of a bundle, and why the rest could not be read ("" when all were)."""
    if not data.startswith(magic):
        return [], "it does not start as a gce bundle of this kind"
    view, pos = memoryview(data), len(magic)
    out: list[tuple[dict, bytes]] = []
    while pos < len(data):
        if len(out) >= READ_AT_MOST:
            return out, f"it holds more than {READ_AT_MOST:,} entries"
        try:
            (hlen,) = _LEN.unpack_from(data, pos)
            if hlen > MAX_HEADER_BYTES:
                return out, f"entry {len(out) + 1}'s headers are {hlen:,} bytes long"
            raw = bytes(view[pos + 4: pos + 4 + hlen])
            (blen,) = _LEN.unpack_from(data, pos + 4 + hlen)
        except struct.error:
            return out, f"it ends inside entry {len(out) + 1}"
        start = pos + 8 + hlen
        if len(raw) != hlen or start + blen > len(data):
            return out, f"it ends inside entry {len(out) + 1}"
        try:
            headers = limits.loads(raw, limit=1)  # an object of text: nesting is refused before parsing
        except ValueError as e:
            return out, f"entry {len(out) + 1}'s headers are not JSON ({e})"
        if not isinstance(headers, dict) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                    for v in headers.values()):
            return out, f"entry {len(out) + 1}'s headers are not an object of text and numbers"
        out.append((headers, bytes(view[start: start + blen])))
        pos = start + blen
    return out, ""


def split(items: list[T], size_of: Any) -> list[list[T]]:
    """ITEMS (each SIZE_OF(item) bytes, at most SMALL) cut into runs of at most MAX_ITEMS and
    about MAX_BYTES, in order."""
    out: list[list[T]] = [[]]
    size = 0
    for item in items:
        n = size_of(item) + 512  # its headers, about
        if out[-1] and (len(out[-1]) >= MAX_ITEMS or size + n > MAX_BYTES):
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return [run for run in out if run]


class TaskProperties(NamedTuple):
    """A bundled task's message properties, as its own message would have had them: what the
    manager reads of a task message's properties (gce.transport.message.parse_task)."""

    message_id: Any
    user_id: Any
    reply_to: Any
    headers: dict
    content_type: str = ""


def tasks_of(properties: Any, body: bytes) -> tuple[list[tuple[TaskProperties, bytes]], str]:
    """The tasks of a bundle with PROPERTIES and BODY, each with the properties its own message would
    have had (the bundle's user id, checked by the broker, and reply_to; the entry's task id and
    headers), and why the rest could not be read ("" when all were)."""
    entries, why = decode(TASKS, body)
    return [(TaskProperties(headers.pop("task-id", None), properties.user_id, properties.reply_to, headers), payload)
            for headers, payload in entries], why
