"""What a task printed reaches its submitter: ``future.task_output()`` and the failed task's error
(the SDK tests' real endpoint, whose engine runs tasks as threads)."""

from __future__ import annotations

import sys
import time
from concurrent.futures import CancelledError

import pytest

from gce.sdk import Executor, RemoteExecutionError
from gce.sdk.errors import TaskOutput
from gce.sdk.executor import TaskFuture


@pytest.fixture()
def ex(sdk_broker, gce_home):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as e:
        yield e


def greets(name):
    print(f"hello {name}")
    print("a warning", file=sys.stderr)
    return len(name)


class Unrebuildable(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args: RemoteExecutionError
        super().__init__(f"{a}-{b}")


def prints_then_fails():
    print("loaded 3 files")
    print("file 4 is missing", file=sys.stderr)
    raise Unrebuildable(1, 2)


def test_task_output_waits_for_the_task_and_holds_what_it_printed(ex):
    fut = ex.submit(greets, "world")
    assert fut.task_output(timeout=30) == TaskOutput(stdout="hello world\n", stderr="a warning\n")
    assert fut.result() == 5


def test_a_failed_tasks_error_ends_with_its_output_and_task_output_has_it_too(ex):
    fut = ex.submit(prints_then_fails)
    output = fut.task_output(timeout=30)
    assert output.stdout == "loaded 3 files\n" and output.stderr == "file 4 is missing\n"
    exc = fut.exception()
    assert isinstance(exc, RemoteExecutionError) and (exc.stdout, exc.stderr) == (output.stdout, output.stderr)
    assert "file 4 is missing" in str(exc) and str(exc).endswith("loaded 3 files")


def test_task_output_behaves_like_result_while_waiting_and_when_cancelled():
    fut = TaskFuture("t1")
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        fut.task_output(timeout=0.1)
    assert time.monotonic() - began < 5
    fut.cancel()
    with pytest.raises(CancelledError):
        fut.task_output()
