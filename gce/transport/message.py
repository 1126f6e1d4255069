"""Task and result messages: what travels in AMQP properties and headers.

Pure code over plain data: nothing here imports pika or unpickles anything, so the
manager can validate a message without ever looking inside its body (DESIGN.md,
"Messages"). A task message:

  exchange gce.tasks, routing key = endpoint UUID, body = opaque task payload
  properties: message_id = task UUID, user_id = submitter's broker user (validated by
  RabbitMQ), reply_to = result queue, content_type, headers below.

A result message: exchange gce.results, routing key = the task's reply_to,
correlation_id = task UUID, headers below, body = opaque result payload.

Several small tasks, or results, may travel as one message, a bundle (gce.transport.bundles):
each entry carries what its own message's headers would, and is read as if it came alone.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from gce.transport import limits
from gce.transport.bundles import TASK_BUNDLES_HEADER
from gce.transport.names import PROTOCOL_VERSION, RESULT_QUEUE_SUFFIX_MAX, result_queue

# Header values are JSON text; this bounds each one (AMQP header frames are small).
MAX_HEADER_BYTES = 64 * 1024
# A function's name is shown to people (gce monitor, gce tasks) and kept for thousands of tasks.
FUNCTION_NAME_MAX = 200


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
    SERIALIZER_NOT_ALLOWED = "SERIALIZER_NOT_ALLOWED"  # its kind of function body is not in allowed_serializers
    ENDPOINT_FAILED = "ENDPOINT_FAILED"  # the user endpoint could not run tasks
    IDENTITY_NOT_MAPPED = "IDENTITY_NOT_MAPPED"  # multi-user: no usable local account for the submitter
    IDENTITY_REFUSED = "IDENTITY_REFUSED"  # multi-user: the endpoint's policy refuses the submitter
    INTERNAL = "INTERNAL"
    TIMEOUT = "TIMEOUT"  # the task ran past its time limit and was stopped
    WALLTIME = "WALLTIME"  # the task's block reached its walltime, twice
    BLOCKS_FAILING = "BLOCKS_FAILING"  # the user endpoint's batch jobs keep failing: it submits no more
    CANCELLED = "CANCELLED"  # its submitter cancelled it (gce.transport.control): stopped, or never run


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
    function_name: str = ""  # what the SDK calls the function: a label for people, never trusted for more
    max_retries_on_system_failure: int | None = None  # the submitter's (gce.uep.retries); None: the endpoint's
    result_bundles: bool = False  # its submitter reads several results in one message (gce.transport.bundles)

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
            "function-name": self.function_name,
            **({} if self.max_retries_on_system_failure is None else
               {"max-retries-on-system-failure": str(self.max_retries_on_system_failure)}),
            **({"result-bundles": "1"} if self.result_bundles else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        # dataclasses.asdict's deep copy cost the manager a tenth of its time in a burst; the two
        # JSON objects are never changed in place (the headers are frozen), so they are shared.
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TaskHeaders":
        """From to_dict()'s output (the spool's copy): keys this version does not know are dropped,
        so a spool written by another version still replays."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


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
        value = limits.loads(text)
    except limits.TooDeep as e:
        raise BadMessage(f"the '{key}' header is refused: {e}") from None
    except ValueError as e:
        raise BadMessage(f"the '{key}' header is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise BadMessage(f"the '{key}' header must be a JSON object")
    return value


def parse_task(
    message_id: str | None, user_id: str | None, reply_to: str | None, headers: Mapping[str, Any] | None
) -> TaskHeaders:
    """Validate a task message's properties and headers; raise BadMessage saying what is wrong.

    Limits first: the header table's depth and size are measured without recursion before any
    header is read, and the JSON headers' depth before they are parsed (gce.transport.limits).
    """
    if not message_id:
        raise BadMessage("the task message has no message_id (the task UUID)")
    try:
        task_id = str(uuid.UUID(str(message_id)))
    except ValueError:
        raise BadMessage(f"the message_id {str(message_id)[:80]!r} is not a UUID") from None
    if task_id != message_id:  # answers carry the task id: one the submitter would not recognise is lost
        raise BadMessage(f"the message_id {str(message_id)[:80]!r} is not a UUID in canonical form ({task_id!r})")
    if not user_id:
        raise BadMessage("the task message has no user_id: the endpoint only runs tasks from an identified submitter")
    if not reply_to:
        raise BadMessage("the task message has no reply_to queue")
    if not reply_to_belongs(str(user_id), reply_to):
        raise BadMessage(f"the reply_to queue {str(reply_to)[:120]!r} is not one of the submitter's own result "
                         f"queues ({result_queue(str(user_id)[:80], '<id>')!r}): results go only to their sender")
    if headers is None:
        raise BadMessage("the task message has no headers")
    if not isinstance(headers, Mapping):
        raise BadMessage("the task message's headers are not a table")
    try:
        limits.headers_size(dict(headers))
    except limits.TooDeep as e:
        raise BadMessage(f"the task message's headers are refused: {e}") from None
    except limits.TooBig as e:
        raise BadMessage(f"the task message's headers are refused: {e}", ErrorCode.PAYLOAD_TOO_LARGE) from None
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
    function_name = _text(headers, "function-name", required=False)
    if len(function_name) > FUNCTION_NAME_MAX:
        raise BadMessage(f"the 'function-name' header is {len(function_name):,} characters long; a function's "
                         f"name may have {FUNCTION_NAME_MAX}")
    if not function_name.isprintable():  # terminal escapes and newlines would reach the screens that show it
        raise BadMessage("the 'function-name' header is not plain text (it holds control characters)")
    retries = _text(headers, "max-retries-on-system-failure", required=False)
    if retries and not (retries.isascii() and retries.isdigit() and len(retries) <= 3):
        raise BadMessage("the 'max-retries-on-system-failure' header is not a whole number (at most 999)")
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
        function_name=function_name,
        max_retries_on_system_failure=int(retries) if retries else None,
        result_bundles=_text(headers, "result-bundles", required=False) == "1",
    )


def reply_to_belongs(user_id: str, reply_to: Any) -> bool:
    """Whether REPLY_TO is one of USER_ID's own result queues: ``gce.results.<user_id>.<id>`` with
    an id free of dots, so that neither ``alice`` nor ``alice.x`` can name the other's queues.
    USER_ID is the broker-validated submitter, so a task can only send results to its sender."""
    if not isinstance(reply_to, str) or not isinstance(user_id, str) or not user_id:
        return False
    prefix = result_queue(user_id, "")
    suffix = reply_to[len(prefix):]
    return reply_to.startswith(prefix) and 0 < len(suffix) <= RESULT_QUEUE_SUFFIX_MAX and "." not in suffix


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
            TASK_BUNDLES_HEADER: "1",  # this manager takes bundles of tasks (gce.transport.bundles)
        }

    @classmethod
    def from_amqp(cls, correlation_id: str | None, headers: Mapping[str, Any] | None) -> "ResultHeaders":
        h = dict(headers or {})

        def text(key: str) -> str:
            v = h.get(key, "")
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

        try:
            timings = limits.loads(text("timings") or "{}")  # from any endpoint account: bounded
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
        return {**self.__dict__, "timings": dict(self.timings)}  # as asdict, without its deep copy

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResultHeaders":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_uep(cls, header: Any, endpoint_id: str) -> "ResultHeaders":
        """A RESULT frame's header from a user endpoint, which runs the user's code and so is
        trusted for nothing: exactly the known fields, each of its type and size, or BadMessage.
        The endpoint id is the manager's own, whatever the frame says."""
        if not isinstance(header, dict):
            raise BadMessage("the result header is not an object")
        unknown = set(header) - set(cls.__dataclass_fields__)
        if unknown:
            raise BadMessage(f"the result header has unknown fields {sorted(map(str, unknown))[:5]}")
        task_id = header.get("task_id")
        if not isinstance(task_id, str) or len(task_id) > 64:
            raise BadMessage("the result header's task_id is not a task id")
        status = header.get("status")
        if status not in ("success", "failed"):
            raise BadMessage(f"the result status {str(status)[:40]!r} is neither 'success' nor 'failed'")
        code, message = header.get("error_code", ""), header.get("error_message", "")
        if not isinstance(code, str) or len(code) > 64 or not isinstance(message, str) \
                or len(message) > MAX_HEADER_BYTES:
            raise BadMessage("the result's error_code or error_message is not text of a sensible size")
        timings = header.get("timings", {})
        if not isinstance(timings, dict) or len(timings) > 16 or not all(
                isinstance(k, str) and len(k) <= 32 and isinstance(v, (int, float)) for k, v in timings.items()):
            raise BadMessage("the result's timings are not a small object of numbers")
        return cls(task_id, endpoint_id, status, code, message, dict(timings))


def failure(task_id: str, endpoint_id: str, code: str, message: str) -> ResultHeaders:
    return ResultHeaders(task_id=task_id, endpoint_id=endpoint_id, status="failed", error_code=code, error_message=message)
