"""What the SDK raises, and how a result message becomes a value or an exception.

Every error has a machine-readable ``code`` and reads as a sentence. They survive pickling
(a future's exception is often shipped on, e.g. by parsl), so each keeps its constructor
arguments in ``args``. A failed task's error ends with the last lines its function wrote to
stderr and stdout; all that came back of them is in its ``stdout`` and ``stderr``.
"""

from __future__ import annotations

import logging
import re
import sys
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from gce.transport.message import ErrorCode, ResultHeaders
from gce.transport.payload import PayloadError, unpack_result

log = logging.getLogger(__name__)

# RabbitMQ's text for a publish outside the user's topic permission (seen on 3.10).
_TOPIC_REFUSED = re.compile(r"access to topic '([^']*)' in exchange")


class SdkError(Exception):
    """Base of every error the gce SDK raises itself."""

    code = "SDK_ERROR"


class BrokerNotConfigured(SdkError):
    code = "BROKER_NOT_CONFIGURED"


class BrokerUnavailable(SdkError):
    """The broker could not be reached or refused the connection or a setup step."""

    code = "BROKER_UNAVAILABLE"


class UnknownFunction(SdkError, LookupError):
    code = "UNKNOWN_FUNCTION"

    def __init__(self, function_id: str, why: str = "") -> None:
        super().__init__(function_id, why)
        self.function_id, self.why = function_id, why

    def __str__(self) -> str:
        return (f"no function with id {self.function_id!r} is registered here{': ' + self.why if self.why else ''}: "
                "call register_function() or register_source_code() first (they keep it on the broker for every "
                "host of this broker user, and under ~/.gce/sdk/functions)")


class PayloadTooLarge(SdkError, ValueError):
    code = ErrorCode.PAYLOAD_TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size, self.limit = size, limit

    def __str__(self) -> str:
        return (f"the task's arguments are {self.size:,} bytes serialized, over the limit of {self.limit:,} bytes "
                "(max_payload_bytes); nothing was sent. Pass large data by reference (a path or URL) instead")


class TaskPending(SdkError):
    code = "TASK_PENDING"

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self) -> str:
        return f"task {self.task_id} has no result yet (it may still be queued or running); try again later"


@dataclass(frozen=True)
class TaskOutput:
    """What a task's function printed: the end of its stdout and of its stderr (the endpoint keeps
    the last ``limits.max_output_bytes`` of each, 64 KiB by default). Empty when it printed nothing,
    the endpoint does not capture output, or the task was answered before its function ran."""

    stdout: str = ""
    stderr: str = ""


# Of each of stdout and stderr, at most this much ends a failed task's error message.
MESSAGE_OUTPUT_CHARS = 2000


def output_note(stdout: str, stderr: str) -> str:
    """The end of a failed task's stderr and stdout, for its error message ("" when it printed nothing)."""
    note = []
    for name, text in (("stderr", stderr), ("stdout", stdout)):
        if not text.strip():
            continue
        tail = text[-MESSAGE_OUTPUT_CHARS:]
        if len(tail) < len(text):
            start = tail.find("\n") + 1  # from a whole line, when there is one
            tail = tail[start:] if 0 < start < len(tail) else tail
            head = f"The end of its {name} (all {len(text):,} characters that came back are in .{name}):"
        else:
            head = f"Its {name}:"
        note.append(f"\n{head}\n{tail.rstrip()}")
    return "".join(note)


class TaskFailed(SdkError):
    """The task did not produce a value: ``code`` says why, the message says it in words and ends
    with the end of what the function printed (all of it that came back: ``stdout``, ``stderr``)."""

    def __init__(self, code: str, message: str, task_id: str = "", endpoint_id: str = "",
                 remote_traceback: str = "", stdout: str = "", stderr: str = "") -> None:
        super().__init__(code, message, task_id, endpoint_id, remote_traceback, stdout, stderr)
        self.code = code
        self.message = message
        self.task_id = task_id
        self.endpoint_id = endpoint_id
        self.remote_traceback = remote_traceback
        self.stdout = stdout
        self.stderr = stderr

    def _sentence(self) -> str:
        where = f" (task {self.task_id})" if self.task_id else ""
        return f"{self.code}: {self.message}{where}"

    def __str__(self) -> str:
        return self._sentence() + output_note(self.stdout, self.stderr)


class RemoteExecutionError(TaskFailed):
    """The function raised on the endpoint, but its exception could not be rebuilt here."""

    def _sentence(self) -> str:
        text = super()._sentence()
        if self.remote_traceback:
            text += f"\nRemote traceback (endpoint {self.endpoint_id}):\n{self.remote_traceback.rstrip()}"
        return text


class SubmitRefused(TaskFailed):
    """The broker refused to accept the task (permissions)."""


class NoTaskQueue(TaskFailed):
    """The task reached no queue: the endpoint never started on this broker, or the id is wrong."""


def submit_refused(endpoint_id: str, broker_user: str, why: str, task_id: str = "") -> SubmitRefused:
    return SubmitRefused("SUBMIT_REFUSED", f"the broker refused the task for endpoint {endpoint_id}: broker user "
                         f"{broker_user!r} may not submit to it ({why})", task_id, endpoint_id)


def no_task_queue(endpoint_id: str, task_id: str = "") -> NoTaskQueue:
    return NoTaskQueue("NO_TASK_QUEUE", f"endpoint {endpoint_id} has no task queue on this broker (was it ever "
                       "started? is the endpoint id right?)", task_id, endpoint_id)


def nacked(endpoint_id: str, task_id: str = "") -> SubmitRefused:
    return SubmitRefused("PUBLISH_NACKED", "the broker could not accept the task (nack); resubmit it",
                         task_id, endpoint_id)


def refused_routing_key(code: int, reply_text: str) -> str | None:
    """After the broker closed a channel: the routing key it refused to take tasks for.

    None when the closure was no refusal of a publish; "*" for a refusal of every task
    (a 406 on user_id, or a 403 whose text does not name the topic).
    """
    if code not in (403, 406):
        return None
    m = _TOPIC_REFUSED.search(reply_text)
    return m.group(1) if m and code == 403 else "*"


def refused_login(exc: BaseException) -> bool:
    import pika

    return isinstance(exc, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError))


def connect_error(where: str, user: str, exc: BaseException) -> BrokerUnavailable:
    """Why a connection attempt failed, for WHERE (a redacted URL)."""
    if refused_login(exc):
        return BrokerUnavailable(f"the broker at {where} refused user {user!r} (wrong password, or no access to "
                                 f"the vhost): {exc}")
    from gce.transport.link_errors import why_not_connected

    return BrokerUnavailable(f"cannot connect to the broker at {where}: {why_not_connected(exc)}")


def setup_error(step: str, where: str, user: str, code: int, text: str) -> BrokerUnavailable:
    hint = {404: " (is the broker provisioned for gce? see 'gce broker --help')",
            403: f" (broker user {user!r} lacks a permission)"}.get(code, "")
    return BrokerUnavailable(f"could not {step} on {where}: {text}{hint}")


def waited_too_long(task_id: str, timeout: float | None, status: dict) -> TimeoutError:
    """The TimeoutError of a wait for TASK_ID's result, naming what the endpoint's STATUS (as
    gce.sdk.Client.get_endpoint_status returns it) says about why no result came."""
    eid = status.get("endpoint_id") or "?"
    details = status.get("details")
    if not isinstance(details, dict):
        details = {}
    state, reason = details.get("state"), details.get("reason")
    if status.get("status") == "unknown":
        cause = f"the status of endpoint {eid} is unknown: {status.get('reason') or 'no report'}"
    elif status.get("status") == "offline":
        cause = f"endpoint {eid} is offline (its last report is {status.get('age_seconds', '?')} s old)"
    elif state == "degraded":
        cause = f"endpoint {eid} is degraded: {reason or 'it gives no reason'}"
    elif details.get("accepting_tasks") is False:
        cause = f"endpoint {eid} is {state or 'up'} but not taking tasks"
    elif status:
        cause = f"endpoint {eid} is {state or 'online'}: the task may still be waiting or running"
    else:
        cause = "the endpoint's status was not read"
    waited = f" within {timeout:g} s" if timeout is not None else ""
    return TimeoutError(f"no result for task {task_id}{waited}: {cause}")


class ExecutorFailed(SdkError):
    """The Executor's broker connection failed for good; its pending futures carry this error."""

    code = "EXECUTOR_FAILED"


def _rebuild_exception(blob: bytes, tb: str, rh: ResultHeaders, output: str = "") -> BaseException | None:
    """The user's own exception, unpickled, with the remote traceback attached and OUTPUT (the end of
    what the function printed) in a note; None if impossible."""
    import cloudpickle

    try:
        exc = cloudpickle.loads(blob)
    except Exception as e:  # the exception's class may not exist here, or its __init__ differs
        log.debug("cannot rebuild the remote exception of task %s: %r", rh.task_id, e)
        return None
    if not isinstance(exc, BaseException):
        return None
    if tb:
        try:
            exc.remote_traceback = tb  # type: ignore[attr-defined]
        except AttributeError:  # an exception class with __slots__
            pass
        if hasattr(exc, "add_note"):  # Python >= 3.11; the note is printed with the local traceback
            exc.add_note(f"Remote traceback (endpoint {rh.endpoint_id}):\n{tb.rstrip()}")
    if output and hasattr(exc, "add_note"):  # its own attributes are the user's: none are set
        exc.add_note(output.lstrip("\n"))
    return exc


def outcome(rh: ResultHeaders, body: bytes) -> tuple[bool, Any]:
    """(True, value) or (False, exception) for one result message; never raises."""
    ok, value, _output = outcome_and_output(rh, body)
    return ok, value


def outcome_and_output(rh: ResultHeaders, body: bytes) -> tuple[bool, Any, TaskOutput]:
    """(True, value, output) or (False, exception, output) for one result message; never raises."""
    tid, eid = rh.task_id, rh.endpoint_id
    if not body:
        # Failures before any user code ran travel in the headers only (DESIGN.md, "Messages").
        code = rh.error_code or ("BAD_RESULT" if rh.status == "success" else ErrorCode.INTERNAL)
        message = rh.error_message or f"the endpoint reported status {rh.status!r} without a result"
        return False, TaskFailed(code, message, tid, eid), TaskOutput()
    try:
        result = unpack_result(body)
    except PayloadError as e:
        return False, TaskFailed("BAD_RESULT", f"the result message could not be read ({e})", tid, eid), TaskOutput()
    output = TaskOutput(result.stdout, result.stderr)
    if result.ok:
        import cloudpickle

        try:
            return True, cloudpickle.loads(result.value), output
        except Exception as e:
            return False, TaskFailed(
                ErrorCode.DESERIALIZATION_FAILED,
                f"the result could not be deserialized here ({type(e).__name__}: {e}); this process runs "
                f"Python {sys.version.split()[0]}: are the same packages installed here and on the endpoint?",
                tid, eid, "", output.stdout, output.stderr), output
    code, message, tb = result.code, result.message, result.traceback
    if code == ErrorCode.TASK_EXCEPTION:
        note = output_note(output.stdout, output.stderr)
        exc = _rebuild_exception(result.exception, tb, rh, note) if result.exception else None
        return False, exc or RemoteExecutionError(code, message, tid, eid, tb, output.stdout, output.stderr), output
    return False, TaskFailed(code, message, tid, eid, tb, output.stdout, output.stderr), output


def resolve(fut: Future, ok: bool, value: Any) -> None:
    """Set FUT's value or exception, unless the user cancelled it meanwhile."""
    if fut.done():
        return
    try:
        fut.set_result(value) if ok else fut.set_exception(value)
    except InvalidStateError:  # cancelled between the check and now
        log.debug("task %s was cancelled before its result arrived", getattr(fut, "task_id", "?"))
