"""Result payloads become values or exceptions (pure; no broker)."""

from __future__ import annotations

import pickle
import sys

import pytest

from gce.sdk import (NoTaskQueue, PayloadTooLarge, RemoteExecutionError, SubmitRefused, TaskFailed, TaskPending,
                     UnknownFunction, serialize)
from gce.sdk.errors import outcome
from gce.transport.message import ResultHeaders, failure
from gce.uep.execute import run_task

RH = ResultHeaders("5f1b5d4e-0d6f-4b8e-9f3a-2a9c6f1e7d10", "ep-1", "failed")


def _run(fn, *args):
    kind, blob = serialize.serialize_function(fn)
    return run_task(serialize.pack_task(kind, blob, serialize.serialize_args(args, {})))


def test_a_value():
    assert outcome(RH, _run(lambda: {"a": 1})) == (True, {"a": 1})


def test_a_header_only_failure_is_task_failed_with_its_code():
    ok, exc = outcome(failure(RH.task_id, "ep-1", "FUNCTION_NOT_ALLOWED", "not on the list"), b"")
    assert not ok and isinstance(exc, TaskFailed)
    assert exc.code == "FUNCTION_NOT_ALLOWED"
    assert str(exc) == f"FUNCTION_NOT_ALLOWED: not on the list (task {RH.task_id})"


def test_the_users_exception_comes_back_with_the_remote_traceback():
    def boom():
        raise ZeroDivisionError("nope")

    ok, exc = outcome(RH, _run(boom))
    assert not ok and type(exc) is ZeroDivisionError and "in boom" in exc.remote_traceback
    if hasattr(exc, "__notes__"):
        assert exc.__notes__[0].startswith("Remote traceback (endpoint ep-1):")


def test_an_unrebuildable_exception_is_remote_execution_error_with_the_traceback():
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(a)

    def boom():
        raise Odd(1, 2)

    ok, exc = outcome(RH, _run(boom))
    assert isinstance(exc, RemoteExecutionError) and exc.code == "TASK_EXCEPTION"
    assert "in boom" in str(exc) and "Remote traceback (endpoint ep-1)" in str(exc)


def test_garbage_is_a_readable_failure():
    ok, exc = outcome(RH, b"junk")
    assert not ok and exc.code == "BAD_RESULT" and "could not be read" in str(exc)


@pytest.mark.parametrize("exc", [
    TaskFailed("X", "why", "t", "e", "tb"), RemoteExecutionError("TASK_EXCEPTION", "m", "t", "e", "tb"),
    SubmitRefused("SUBMIT_REFUSED", "m"), NoTaskQueue("NO_TASK_QUEUE", "m"), PayloadTooLarge(11, 10),
    TaskPending("t"), UnknownFunction("f"),
])
def test_errors_pickle_and_keep_code_and_sentence(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and back.code == exc.code and str(back) == str(exc) and str(exc)


def test_a_timed_out_wait_names_what_the_endpoints_status_says():
    from gce.sdk.errors import waited_too_long

    eid = "5f1b5d4e-0d6f-4b8e-9f3a-2a9c6f1e7d10"
    degraded = {"status": "online", "endpoint_id": eid,
                "details": {"state": "degraded", "accepting_tasks": False,
                            "reason": "cannot publish results (permission)"}}
    e = waited_too_long("t1", 2.0, degraded)
    assert isinstance(e, TimeoutError)
    assert str(e) == f"no result for task t1 within 2 s: endpoint {eid} is degraded: cannot publish results (permission)"
    offline = {"status": "offline", "endpoint_id": eid, "age_seconds": 300.0, "details": {"state": "running"}}
    assert f"endpoint {eid} is offline (its last report is 300.0 s old)" in str(waited_too_long("t1", 2, offline))
    unknown = {"status": "unknown", "endpoint_id": eid, "reason": "the endpoint has not reported yet"}
    assert "is unknown: the endpoint has not reported yet" in str(waited_too_long("t1", None, unknown))
    running = {"status": "online", "endpoint_id": eid, "details": {"state": "running", "accepting_tasks": True}}
    assert "is running: the task may still be waiting or running" in str(waited_too_long("t1", 1, running))


def _result_printing(fn):
    """The result payload of FN run on a worker that captures output (this test's main thread)."""
    kind, blob = serialize.serialize_function(fn)
    return run_task(serialize.pack_task(kind, blob, serialize.serialize_args((), {})), 10 << 20, 64 << 10)


def test_a_value_comes_with_what_the_function_printed():
    from gce.sdk.errors import TaskOutput, outcome_and_output

    def hello():
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 1

    assert outcome_and_output(RH, _result_printing(hello)) == (True, 1, TaskOutput("to stdout\n", "to stderr\n"))
    assert outcome_and_output(RH, b"")[2] == TaskOutput("", "")  # answered before any code ran


def test_a_failed_tasks_message_ends_with_the_tail_of_its_stderr_and_stdout():
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(a)

    def chatty_then_boom():
        for i in range(10_000):
            print(f"step {i}")
        print("warning: about to fail", file=sys.stderr)
        raise Odd(1, 2)

    ok, exc = outcome(RH, _result_printing(chatty_then_boom))
    assert isinstance(exc, RemoteExecutionError)
    assert len(exc.stdout) >= 60_000 and exc.stdout.endswith("step 9999\n")  # the whole tail kept
    assert exc.stderr == "warning: about to fail\n"
    text = str(exc)
    assert text.index("Remote traceback") < text.index("warning: about to fail") < text.index("step 9999")
    assert text.endswith("step 9998\nstep 9999")
    assert len(text) < 8 * 1024  # a few KiB of output at most in the message
    back = pickle.loads(pickle.dumps(exc))
    assert (back.stdout, back.stderr, str(back)) == (exc.stdout, exc.stderr, text)


def test_a_rebuilt_exception_carries_the_output_tail_in_a_note():
    def boom():
        print("the state before it broke")
        raise ZeroDivisionError("nope")

    ok, exc = outcome(RH, _result_printing(boom))
    assert type(exc) is ZeroDivisionError
    if hasattr(exc, "__notes__"):
        assert "the state before it broke" in exc.__notes__[-1]


def test_a_task_failed_without_output_reads_as_before():
    exc = TaskFailed("TIMEOUT", "the task ran past its time limit", "t1", "e", "", "", "")
    assert str(exc) == "TIMEOUT: the task ran past its time limit (task t1)"
    assert str(TaskFailed("TIMEOUT", "over", "t1", "e", "", "", "last words\n")).endswith("\nlast words")
