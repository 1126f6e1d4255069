from __future__ import annotations

import cloudpickle
import pytest

from gce.sdk import serialize
from gce.uep.execute import run_task


def _run(fn, *args, limit=10 * 1024 * 1024, **kwargs):
    kind, blob = serialize.serialize_function(fn)
    return serialize.unpack(run_task(serialize.pack_task(kind, blob, serialize.serialize_args(args, kwargs)), limit))


def test_a_value_comes_back_pickled():
    parts = _run(lambda a, b=1: a * b, 6, b=7)
    assert parts[0] == b"ok" and cloudpickle.loads(parts[1]) == 42


def test_an_exception_comes_back_with_its_type_and_a_traceback_starting_at_user_code():
    def boom(x):
        raise KeyError(x)

    status, code, message, exc_blob, tb, _out, _err = _run(boom, "k")
    assert (status, code) == (b"err", b"TASK_EXCEPTION")
    assert message == b"KeyError: 'k'"
    assert isinstance(cloudpickle.loads(exc_blob), KeyError)
    assert "in boom" in tb.decode() and "gce/uep/execute.py" not in tb.decode()


def test_an_unpicklable_exception_still_yields_its_traceback():
    class Weird(Exception):
        def __init__(self, a, b):
            super().__init__(a)

    def boom():
        raise Weird(1, 2)

    status, code, message, exc_blob, tb, _out, _err = _run(boom)
    assert code == b"TASK_EXCEPTION" and exc_blob == b"" and b"Weird" in tb


def test_a_result_over_the_limit_is_refused_naming_the_limit():
    status, code, message, *_ = _run(lambda: b"x" * 2000, limit=1000)
    assert code == b"RESULT_TOO_LARGE" and b"1,000 bytes" in message


def test_source_functions_run_and_hash_consistently():
    kind, blob = serialize.source_function("def add(a, b):\n    return a + b\n", "add")
    payload = serialize.pack_task(kind, blob, serialize.serialize_args((2, 3), {}))
    assert serialize.task_function_id(payload) == serialize.function_id_of(kind, blob)
    assert cloudpickle.loads(serialize.unpack(run_task(payload))[1]) == 5


@pytest.mark.parametrize("payload", [b"", b"GCE\x01", b"junk" * 10, serialize.pack([b"x"])])
def test_garbage_payloads_fail_cleanly(payload):
    parts = serialize.unpack(run_task(payload))
    assert parts[:2] == [b"err", b"DESERIALIZATION_FAILED"]


def test_a_traceback_over_the_limit_keeps_its_last_whole_lines() -> None:
    from gce.uep.execute import traceback_tail

    assert traceback_tail("a\nb\n", limit=100) == "a\nb\n"
    text = "".join(f"line {i}\n" for i in range(100))
    tail = traceback_tail(text, limit=164)
    assert tail == "(... 88 earlier lines cut)\n" + "".join(f"line {i}\n" for i in range(88, 100))
    assert len(tail.encode()) <= 164
    huge = "é" * 200  # one line longer than the limit: its end, cut on a character
    tail = traceback_tail(huge, limit=100)
    assert tail.startswith("(... 0 earlier lines cut)\n") and tail.endswith("é" * 18) and len(tail.encode()) <= 100
