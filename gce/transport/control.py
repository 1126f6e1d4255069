"""Control messages: a submitter asks an endpoint about its tasks, or cancels them.

Pure code over plain data, like gce.transport.message: the manager reads a control message
without pickle. A control message travels the way a task does, so the topic permission that lets
a broker user submit to an endpoint is the one that lets them ask it (DESIGN.md, "Messages"):

  exchange gce.tasks, routing key = endpoint UUID, body empty
  properties: message_id = the request's UUID, user_id = the asker (validated by RabbitMQ: only a
  task's submitter may see or cancel it), reply_to = one of the asker's result queues,
  headers: gce-protocol, gce-control = "cancel" | "state", task-ids = JSON list of task UUIDs.

The answer: exchange gce.results, routing key = the request's reply_to, correlation_id = the
request's id, content type ANSWER_CONTENT_TYPE, body = JSON {"kind": ..., "tasks": {task id:
{"state": ..., ...}}}. A state is one of STATES; "queued" is never said by the endpoint: it is
what the SDK concludes when the endpoint has not taken the question (nor the task) off the broker.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from gce.transport import limits
from gce.transport.message import BadMessage, reply_to_belongs
from gce.transport.names import PROTOCOL_VERSION

CONTROL_HEADER = "gce-control"
TASK_IDS_HEADER = "task-ids"
CONTENT_TYPE = "application/x-gce-control"
ANSWER_CONTENT_TYPE = "application/x-gce-control-answer"
CANCEL, STATE = "cancel", "state"
KINDS = (CANCEL, STATE)
# One request names at most this many tasks (an Executor's shutdown sends several requests).
MAX_TASK_IDS = 1000

QUEUED, WAITING, RUNNING, DONE, UNKNOWN = "queued", "waiting", "running", "done", "unknown"
STATES = (QUEUED, WAITING, RUNNING, DONE, UNKNOWN)


@dataclass(frozen=True)
class Request:
    request_id: str
    kind: str
    user_id: str  # the asker, as the broker validated it
    reply_to: str
    task_ids: tuple[str, ...]


def is_control(headers: Any) -> bool:
    """Whether a message on gce.tasks is a control message rather than a task."""
    return isinstance(headers, Mapping) and CONTROL_HEADER in headers


def request_headers(kind: str, task_ids: list[str]) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"a control request is one of {KINDS}, not {kind!r}")
    if not 0 < len(task_ids) <= MAX_TASK_IDS:
        raise ValueError(f"a control request names 1 to {MAX_TASK_IDS} tasks, not {len(task_ids)}")
    return {"gce-protocol": PROTOCOL_VERSION, CONTROL_HEADER: kind, TASK_IDS_HEADER: json.dumps(task_ids)}


def _canonical_uuid(value: Any, what: str) -> str:
    try:
        canonical = str(uuid.UUID(str(value)))
    except ValueError:
        raise BadMessage(f"{what} {str(value)[:80]!r} is not a UUID") from None
    if canonical != value:
        raise BadMessage(f"{what} {str(value)[:80]!r} is not a UUID in canonical form ({canonical!r})")
    return canonical


def parse_request(message_id: Any, user_id: Any, reply_to: Any, headers: Any) -> Request:
    """Validate a control message; BadMessage saying what is wrong. Limits first (gce.transport.limits)."""
    request_id = _canonical_uuid(message_id, "the control message's message_id")
    if not isinstance(user_id, str) or not user_id:
        raise BadMessage("the control message has no user_id: only a task's submitter may ask about it")
    if not reply_to_belongs(user_id, reply_to):
        raise BadMessage(f"the reply_to queue {str(reply_to)[:120]!r} is not one of the asker's own result queues")
    if not isinstance(headers, Mapping):
        raise BadMessage("the control message has no headers")
    try:
        limits.headers_size(dict(headers))
    except (limits.TooDeep, limits.TooBig) as e:
        raise BadMessage(f"the control message's headers are refused: {e}") from None
    if headers.get("gce-protocol") != PROTOCOL_VERSION:
        raise BadMessage(f"unsupported protocol version {headers.get('gce-protocol')!r} (this endpoint speaks "
                         f"{PROTOCOL_VERSION})")
    kind = headers.get(CONTROL_HEADER)
    kind = kind.decode("utf-8", "replace") if isinstance(kind, bytes) else kind
    if kind not in KINDS:
        raise BadMessage(f"the '{CONTROL_HEADER}' header is {str(kind)[:40]!r}, not one of {KINDS}")
    raw = headers.get(TASK_IDS_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        ids = limits.loads(raw) if isinstance(raw, str) else None
    except ValueError as e:
        raise BadMessage(f"the '{TASK_IDS_HEADER}' header is not valid JSON ({e})") from None
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_TASK_IDS:
        raise BadMessage(f"the '{TASK_IDS_HEADER}' header must be a JSON list of 1 to {MAX_TASK_IDS} task ids")
    task_ids = tuple(dict.fromkeys(_canonical_uuid(t, "the task id") for t in ids))
    return Request(request_id, kind, user_id, reply_to, task_ids)


def answer_body(request_id: str, kind: str, tasks: Mapping[str, Mapping[str, Any]], error: str = "") -> bytes:
    return json.dumps({"request_id": request_id, "kind": kind, "tasks": tasks, "error": error}).encode()


def parse_answer(body: bytes) -> dict[str, Any]:
    """An answer's body as the SDK reads it (it comes from an endpoint account: bounded, checked)."""
    try:
        data = limits.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"the endpoint's answer is not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise ValueError("the endpoint's answer is not an object with 'tasks'")
    return data
