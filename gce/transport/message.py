"""Task and result messages: what travels in AMQP properties and headers.

Pure code over plain data: nothing here imports pika or unpickles anything, so the
manager can validate a message without ever looking inside its body (DESIGN.md,
"Messages"). A task message:

  exchange gce.tasks, routing key = endpoint UUID, body = opaque task payload
  properties: message_id = task UUID, user_id = submitter's broker user (validated by
  RabbitMQ), reply_to = result queue, content_type, headers below.

A result message: exchange gce.results, routing key = the task's reply_to,
correlation_id = task UUID, headers below, body = opaque result payload.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from gce.transport.names import PROTOCOL_VERSION

# Header values are JSON text; this bounds each one (AMQP header frames are small).
MAX_HEADER_BYTES = 64 * 1024


class BadMessage(ValueError):
    """A message that cannot be a task; str() is the sentence sent back to the submitter."""

    def __init__(self, message: str, code: str = "BAD_MESSAGE") -> None:
        super().__init__(message)
        self.code = code  # the ErrorCode of the answer


# Machine-readable error codes carried by failed results.
class ErrorCode:
    TASK_EXCEPTION = "TASK_EXCEPTION"  # the user's function raised
    WORKER_LOST = "WORKER_LOST"  # the worker died while running the task
    BAD_MESSAGE = "BAD_MESSAGE"  # malformed task message
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    DESERIALIZATION_FAILED = "DESERIALIZATION_FAILED"
    SERIALIZATION_FAILED = "SERIALIZATION_FAILED"
    FUNCTION_NOT_ALLOWED = "FUNCTION_NOT_ALLOWED"
    ENDPOINT_FAILED = "ENDPOINT_FAILED"  # the user endpoint could not run tasks
    IDENTITY_NOT_MAPPED = "IDENTITY_NOT_MAPPED"  # multi-user: no usable local account for the submitter
    IDENTITY_REFUSED = "IDENTITY_REFUSED"  # multi-user: the endpoint's policy refuses the submitter
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class TaskHeaders:
    """The parts of a task the manager and UEP read without touching the body."""

    task_id: str
    user_id: str
    reply_to: str
    function_id: str
    serializer: str = "cloudpickle"
    python_version: str = ""
    gce_version: str = ""
    platform: str = ""  # the submitter's platform.platform(), for the template's user_runtime
    user_endpoint_config: dict = field(default_factory=dict)
    resource_specification: dict = field(default_factory=dict)
    submitted_at: float = 0.0

    def amqp_headers(self) -> dict[str, Any]:
        return {
            "gce-protocol": PROTOCOL_VERSION,
            "function-id": self.function_id,
            "serializer": self.serializer,
            "python-version": self.python_version,
            "gce-version": self.gce_version,
            "platform": self.platform,
            "user-endpoint-config": json.dumps(self.user_endpoint_config, sort_keys=True),
            "resource-specification": json.dumps(self.resource_specification, sort_keys=True),
            "submitted-at": repr(float(self.submitted_at)),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TaskHeaders":
        return cls(**dict(data))


def _text(headers: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = headers.get(key)
    if value is None:
        if required:
            raise BadMessage(f"the task message has no '{key}' header")
        return ""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise BadMessage(f"the '{key}' header is not UTF-8 text") from None
    if not isinstance(value, str):
        raise BadMessage(f"the '{key}' header is not text")
    if len(value) > MAX_HEADER_BYTES:
        raise BadMessage(f"the '{key}' header is {len(value):,} bytes, over the {MAX_HEADER_BYTES:,}-byte limit",
                         ErrorCode.PAYLOAD_TOO_LARGE)
    return value


def _json_object(headers: Mapping[str, Any], key: str) -> dict:
    text = _text(headers, key, required=False)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise BadMessage(f"the '{key}' header is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise BadMessage(f"the '{key}' header must be a JSON object")
    return value


def parse_task(
    message_id: str | None, user_id: str | None, reply_to: str | None, headers: Mapping[str, Any] | None
) -> TaskHeaders:
    """Validate a task message's properties and headers; raise BadMessage saying what is wrong."""
    if not message_id:
        raise BadMessage("the task message has no message_id (the task UUID)")
    try:
        task_id = str(uuid.UUID(str(message_id)))
    except ValueError:
        raise BadMessage(f"the message_id {str(message_id)[:80]!r} is not a UUID") from None
    if not user_id:
        raise BadMessage("the task message has no user_id: the endpoint only runs tasks from an identified submitter")
    if not reply_to:
        raise BadMessage("the task message has no reply_to queue")
    if headers is None:
        raise BadMessage("the task message has no headers")
    protocol = headers.get("gce-protocol")
    if protocol != PROTOCOL_VERSION:
        raise BadMessage(f"unsupported protocol version {protocol!r} (this endpoint speaks {PROTOCOL_VERSION})")
    function_id = _text(headers, "function-id")
    if len(function_id) != 64 or any(c not in "0123456789abcdef" for c in function_id):
        raise BadMessage("the 'function-id' header is not a sha256 hex digest")
    try:
        submitted_at = float(_text(headers, "submitted-at", required=False) or 0.0)
    except ValueError:
        raise BadMessage("the 'submitted-at' header is not a number") from None
    return TaskHeaders(
        task_id=task_id,
        user_id=str(user_id),
        reply_to=str(reply_to),
        function_id=function_id,
        serializer=_text(headers, "serializer", required=False) or "cloudpickle",
        python_version=_text(headers, "python-version", required=False),
        gce_version=_text(headers, "gce-version", required=False),
        platform=_text(headers, "platform", required=False),
        user_endpoint_config=_json_object(headers, "user-endpoint-config"),
        resource_specification=_json_object(headers, "resource-specification"),
        submitted_at=submitted_at,
    )


@dataclass
class ResultHeaders:
    task_id: str
    endpoint_id: str
    status: str  # "success" or "failed"
    error_code: str = ""
    error_message: str = ""
    timings: dict = field(default_factory=dict)

    def amqp_headers(self) -> dict[str, Any]:
        return {
            "gce-protocol": PROTOCOL_VERSION,
            "task-id": self.task_id,
            "endpoint-id": self.endpoint_id,
            "status": self.status,
            "error-code": self.error_code,
            "error-message": self.error_message,
            "timings": json.dumps(self.timings),
        }

    @classmethod
    def from_amqp(cls, correlation_id: str | None, headers: Mapping[str, Any] | None) -> "ResultHeaders":
        h = dict(headers or {})

        def text(key: str) -> str:
            v = h.get(key, "")
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

        try:
            timings = json.loads(text("timings") or "{}")
        except ValueError:
            timings = {}
        return cls(
            task_id=text("task-id") or str(correlation_id or ""),
            endpoint_id=text("endpoint-id"),
            status=text("status") or "failed",
            error_code=text("error-code"),
            error_message=text("error-message"),
            timings=timings if isinstance(timings, dict) else {},
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResultHeaders":
        return cls(**dict(data))


def failure(task_id: str, endpoint_id: str, code: str, message: str) -> ResultHeaders:
    return ResultHeaders(task_id=task_id, endpoint_id=endpoint_id, status="failed", error_code=code, error_message=message)
