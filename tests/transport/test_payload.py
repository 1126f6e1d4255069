"""The wire format of task and result bodies, shared by the SDK and the endpoint: round trips and
refusals over plain bytes, and the proof that reading it pulls in neither cloudpickle nor the SDK."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest

from gce.transport import payload
from gce.transport.payload import PayloadError


def test_parts_come_back_as_they_went():
    parts = [b"", b"a", bytes(range(256)) * 10]
    assert payload.unpack(payload.pack(parts)) == parts
    assert payload.unpack(payload.pack([])) == []


@pytest.mark.parametrize("data, why", [
    (b"", "bad magic"),
    (b"XXX\x01\0\0\0\0", "bad magic"),
    (b"GCE\x01", "truncated"),
    (b"GCE\x01\0\0\0\x01", "truncated"),
    (payload.pack([b"abc"])[:-1], "truncated"),
    (payload.pack([b"abc"]) + b"!", "trailing bytes"),
    (b"GCE\x01\0\0\0\x11", "claims 17 parts (at most 16)"),
])
def test_what_is_not_a_container_is_refused_saying_why(data, why):
    with pytest.raises(PayloadError, match=re.escape(why)):
        payload.unpack(data)


def test_a_task_keeps_its_function_apart_and_its_id_is_recomputed_from_the_bytes():
    task = payload.pack_task(payload.KIND_SOURCE, b"f\ndef f(): pass\n", b"args")
    assert payload.unpack_task(task) == (payload.KIND_SOURCE, b"f\ndef f(): pass\n", b"args")
    expected = hashlib.sha256(b"source\0f\ndef f(): pass\n").hexdigest()
    assert payload.function_id_of(payload.KIND_SOURCE, b"f\ndef f(): pass\n") == expected
    assert payload.task_function_id(task) == expected


@pytest.mark.parametrize("parts", [[], [b"cloudpickle", b"fn"], [b"a", b"b", b"c", b"d"]])
def test_a_task_of_other_than_three_parts_is_refused(parts):
    with pytest.raises(PayloadError, match=f"a task payload has 3 parts, this one has {len(parts)}"):
        payload.task_function_id(payload.pack(parts))


def test_an_ok_result_carries_the_value_bytes_and_the_output():
    result = payload.unpack_result(payload.pack_ok(b"value", b"printed\n", b"warned\n"))
    assert result == payload.Result(ok=True, value=b"value", stdout="printed\n", stderr="warned\n")
    assert payload.unpack(payload.pack_ok(b"value")) == [b"ok", b"value", b"", b""]


def test_an_err_result_carries_code_message_exception_traceback_and_output():
    data = payload.pack_err("TASK_EXCEPTION", "ValueError: é", b"exc", "Traceback ...\n", b"out", b"err")
    assert payload.unpack(data) == [b"err", b"TASK_EXCEPTION", "ValueError: é".encode(), b"exc", b"Traceback ...\n",
                                    b"out", b"err"]
    assert payload.unpack_result(data) == payload.Result(ok=False, code="TASK_EXCEPTION", message="ValueError: é",
                                                         exception=b"exc", traceback="Traceback ...\n",
                                                         stdout="out", stderr="err")
    assert payload.unpack_result(payload.pack_err("WORKER_LOST", "gone")) == payload.Result(
        ok=False, code="WORKER_LOST", message="gone")


def test_results_of_an_endpoint_from_before_output_came_back_still_read():
    assert payload.unpack_result(payload.pack([b"ok", b"value"])) == payload.Result(ok=True, value=b"value")
    old_err = payload.pack([b"err", b"TASK_EXCEPTION", b"ValueError: x", b"exc", b"Traceback"])
    assert payload.unpack_result(old_err) == payload.Result(ok=False, code="TASK_EXCEPTION", message="ValueError: x",
                                                            exception=b"exc", traceback="Traceback")


def test_output_that_is_not_utf8_is_read_with_replacement():
    result = payload.unpack_result(payload.pack_ok(b"v", b"caf\xe9", b"\xff!"))
    assert (result.stdout, result.stderr) == ("caf\ufffd", "\ufffd!")


def test_text_that_is_not_utf8_is_read_with_replacement_not_an_exception():
    data = payload.pack([b"err", b"X", b"caf\xe9", b"", b"\xff"])
    assert payload.unpack_result(data).message == "caf\ufffd"


@pytest.mark.parametrize("parts, why", [
    ([], "unknown shape"),
    ([b"ok"], "unknown shape"),
    ([b"ok", b"v", b"extra"], "unknown shape"),
    ([b"err", b"X", b"m"], "unknown shape"),
    ([b"err", b"X", b"m", b"", b"", b"out"], "unknown shape"),
    ([b"maybe", b"v"], "unknown shape"),
])
def test_a_result_of_unknown_shape_is_refused(parts, why):
    with pytest.raises(PayloadError, match=why):
        payload.unpack_result(payload.pack(parts))


def _imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())


def test_reading_the_format_imports_no_cloudpickle_and_no_sdk():
    loaded = _imported_by("gce.transport.payload")
    assert "cloudpickle" not in loaded
    assert not {m for m in loaded if m == "gce.sdk" or m.startswith("gce.sdk.")}


def test_the_user_endpoint_imports_no_sdk():
    loaded = _imported_by("gce.uep.boot") | _imported_by("gce.uep.execute")
    assert not {m for m in loaded if m == "gce.sdk" or m.startswith("gce.sdk.")}
