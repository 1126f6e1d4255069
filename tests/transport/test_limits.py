from __future__ import annotations

import pytest

from gce.transport import limits


@pytest.mark.parametrize("text, depth", [
    ("1", 0), ("{}", 1), ('{"a": [1, {"b": 2}]}', 3), ('["[[[[", "]]"]', 1), ('"\\\\"', 0),
    ('["\\"[[["]', 1),
])
def test_json_depth_counts_brackets_outside_strings(text, depth):
    limits.json_depth(text, limit=depth)  # within the limit: no error
    if depth:
        with pytest.raises(limits.TooDeep):
            limits.json_depth(text + " []" * 5, limit=depth - 1)


def test_json_depth_is_exact_where_a_count_cannot_decide():
    text = '{"a": [1, {"b": 2}]}' + " {}" * 10
    assert limits.json_depth(text, limit=3) == 3
    with pytest.raises(limits.TooDeep, match="more than 2 levels"):
        limits.json_depth(text, limit=2)


def test_loads_refuses_depth_before_json_recurses():
    with pytest.raises(limits.TooDeep):
        limits.loads("[" * 100_000 + "]" * 100_000)
    assert limits.loads(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(ValueError):
        limits.loads("{nope")


def test_value_depth_walks_without_recursion():
    deep: list = []
    d = deep
    for _ in range(100_000):
        d.append([])
        d = d[0]
    with pytest.raises(limits.TooDeep):
        limits.value_depth(deep, 50)
    assert limits.value_depth({"a": [1, {"b": ()}]}, 10) == 4
    assert limits.value_depth("scalar", 0) == 0


def test_headers_size_counts_keys_and_text():
    assert limits.headers_size({"ab": "cdef", "n": 1}) == 2 + 4 + 1 + 8
    with pytest.raises(limits.TooBig):
        limits.headers_size({"a": ["x" * 1000] * 300})
