"""The task message the SDK builds: the function's name travels in a plain-text header, so an
endpoint (and its monitor) can show it without unpickling anything."""

from __future__ import annotations

import functools

from gce.sdk import serialize
from gce.sdk.shell import ShellFunction
from gce.sdk.tasks import DEFAULT_MAX_PAYLOAD_BYTES, function_name, task_message
from gce.transport.message import FUNCTION_NAME_MAX, parse_task


def square(x):
    return x * x


class Callable_:
    def __call__(self):
        return 1


def test_a_functions_name_is_its_python_name_and_a_shell_functions_is_its_commands_first_word():
    assert function_name(square) == "square"
    assert function_name(lambda: 1) == "<lambda>"
    assert function_name(functools.partial(square, 2)) == "square"
    assert function_name(Callable_()) == "Callable_"
    assert function_name(ShellFunction("  /usr/bin/env python3 run.py {x}", name="job")) == "/usr/bin/env"
    assert function_name(ShellFunction("echo {x}")) == "echo"


def test_a_name_is_plain_text_of_bounded_length():
    def f():
        pass

    f.__name__ = "x\x1b]0;pwned\x07y\n" + "z" * 500
    name = function_name(f)
    assert name.isprintable() and len(name) == FUNCTION_NAME_MAX
    assert name.startswith("x?]0;pwned?y?z")


def test_the_task_message_carries_the_name_the_endpoint_reads_back():
    kind, blob = serialize.serialize_function(square)
    task_id, _body, props = task_message(kind, blob, serialize.function_id_of(kind, blob), (3,), {}, user="alice",
                                         reply_to="gce.results.alice.q1", user_endpoint_config={},
                                         resource_specification={}, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES,
                                         function_name="square")
    th = parse_task(task_id, "alice", "gce.results.alice.q1", props.headers)
    assert th.function_name == "square"


def test_a_function_registered_as_source_is_named_by_its_source():
    kind, blob = serialize.source_function("def cube(x):\n    return x ** 3\n", "cube")
    task_id, _body, props = task_message(kind, blob, serialize.function_id_of(kind, blob), (3,), {}, user="alice",
                                         reply_to="gce.results.alice.q1", user_endpoint_config={},
                                         resource_specification={}, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES)
    assert props.headers["function-name"] == "cube"
