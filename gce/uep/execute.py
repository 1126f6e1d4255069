"""What runs on a worker: unpack a task payload, call the function, pack the outcome.

``run_task`` never raises for anything the submitted code does: every outcome, including
an exception, an unpicklable result or a result over the size limit, becomes a result
payload (see gce.transport.payload). Only the death of the worker itself escapes, and the
engine turns that into a WORKER_LOST result. What the function prints comes back in the
result too (its last ``max_output_bytes`` of stdout and of stderr: gce.uep.capture).

This is the one place where bytes a submitter sent become code (``load_function``): it runs on
a worker, as the mapped user, never in the manager.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable

from gce.transport.message import ErrorCode
from gce.uep import capture, timelimit
from gce.transport.payload import KIND_PICKLE, KIND_SOURCE, PayloadError, pack_err, pack_ok, unpack_task


def _remote_traceback(exc: BaseException) -> str:
    # Drop our own frame(s) so the traceback starts at the user's function.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


# The traceback a failed task's RESULT frame carries as text for its manager to show: the end of
# it, where the exception is, in whole lines.
TRACEBACK_LIMIT = 16 * 1024


def traceback_tail(text: str, limit: int = TRACEBACK_LIMIT) -> str:
    """TEXT when it is at most LIMIT bytes of UTF-8; else its last lines that fit, after a line
    saying how many earlier ones were cut."""
    if len(text.encode()) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    room = limit - 64  # for the line that says what was cut
    kept: list[str] = []
    for line in reversed(lines):
        room -= len(line.encode())
        if room < 0:
            break
        kept.append(line)
    if not kept:  # one line longer than the limit: its end
        kept = [text.encode()[-(limit - 64):].decode(errors="ignore")]
    return f"(... {len(lines) - len(kept)} earlier lines cut)\n" + "".join(reversed(kept))


def _pickle_exception(exc: BaseException) -> bytes:
    import cloudpickle

    try:
        blob = cloudpickle.dumps(exc)
        cloudpickle.loads(blob)  # some exceptions pickle but cannot be rebuilt
        return blob
    except Exception:
        return b""


def load_function(kind: bytes, function_blob: bytes) -> Callable[..., Any]:
    """Turn a function blob back into a callable (runs submitter code: workers only)."""
    if kind == KIND_PICKLE:
        import cloudpickle

        fn: Callable[..., Any] = cloudpickle.loads(function_blob)
        return fn
    if kind == KIND_SOURCE:
        name, _, source = function_blob.partition(b"\n")
        namespace: dict[str, Any] = {"__name__": "__gce_source__"}
        exec(compile(source.decode(), f"<gce source of {name.decode()}>", "exec"), namespace)
        try:
            defined: Callable[..., Any] = namespace[name.decode()]
            return defined
        except KeyError:
            raise PayloadError(f"the registered source defines no function named {name.decode()!r}") from None
    raise PayloadError(f"unknown function serializer {kind[:40]!r}")


def run_task(payload: bytes, max_result_bytes: int = 10 * 1024 * 1024, max_output_bytes: int = 64 * 1024,
             time_limit: float | None = None) -> bytes:
    """Run one task payload; return a result payload. Called on a worker. MAX_OUTPUT_BYTES: of each
    of the function's stdout and stderr, the last bytes sent back with the result (0: not captured;
    see gce.uep.capture). TIME_LIMIT: seconds the function may run (None: no limit)."""
    import cloudpickle

    try:
        kind, fn_blob, args_blob = unpack_task(payload)
        fn = load_function(kind, fn_blob)
        args, kwargs = cloudpickle.loads(args_blob)
    except Exception as e:
        return pack_err(
            ErrorCode.DESERIALIZATION_FAILED,
            f"the endpoint could not deserialize the task ({type(e).__name__}: {e}); "
            f"the worker runs Python {sys.version.split()[0]}",
            traceback=_remote_traceback(e),
        )
    out, err = capture.Tail(max_output_bytes), capture.Tail(max_output_bytes)
    try:
        with capture.captured(out, err):  # outside the time limit: put back before the result is packed
            with timelimit.time_limit(time_limit):
                value = fn(*args, **kwargs)
    except timelimit.TaskTimedOut as e:
        return pack_err(ErrorCode.TIMEOUT, f"{e} (its walltime, or the Executor's task_timeout)",
                        stdout=out.value(), stderr=err.value())
    except BaseException as e:  # noqa: B902 - SystemExit in user code is a task failure too
        return pack_err(
            ErrorCode.TASK_EXCEPTION,
            f"{type(e).__name__}: {e}",
            _pickle_exception(e),
            _remote_traceback(e),
            out.value(),
            err.value(),
        )
    try:
        blob = cloudpickle.dumps(value)
    except Exception as e:
        return pack_err(
            ErrorCode.SERIALIZATION_FAILED, f"the function's result could not be serialized ({type(e).__name__}: {e})",
            stdout=out.value(), stderr=err.value(),
        )
    if len(blob) > max_result_bytes:
        return pack_err(
            ErrorCode.RESULT_TOO_LARGE,
            f"the result is {len(blob):,} bytes serialized, over the endpoint's limit of "
            f"{max_result_bytes:,} bytes (limits.max_result_bytes in the endpoint's config.yaml)",
            stdout=out.value(), stderr=err.value(),
        )
    return pack_ok(blob, out.value(), err.value())


def run_batch(payloads: list[bytes], max_result_bytes: int = 10 * 1024 * 1024,
              max_output_bytes: int = 64 * 1024) -> list[bytes]:
    """Run several small task payloads one after the other on one worker (see HighThroughputEngine)."""
    return [run_task(p, max_result_bytes, max_output_bytes) for p in payloads]
