"""Bounds on what a submitter can make gce parse: checked before anything recursive runs.

Python's json, dataclasses.asdict, jsonschema, Jinja2 and pika's AMQP table codec all recurse
once per level of nesting, so a value nested a few thousand deep raises RecursionError in
whichever of them touches it first. Every check here is iterative: it measures depth and size
without recursing, so a hostile value is refused with a sentence before it reaches them.
"""

from __future__ import annotations

import json
from typing import Any

# gce's own values are shallow: a user endpoint config is a flat object of settings, maybe a list
# or an object inside. 32 levels leave room for any real template and none for an attack.
MAX_JSON_DEPTH = 32
# gce's AMQP headers are flat text; nobody needs a table inside a table inside a table.
MAX_TABLE_DEPTH = 4
# Every header together (AMQP puts them all in one frame, at most frame_max = 128 KiB with pika).
MAX_HEADERS_BYTES = 256 * 1024


class TooDeep(ValueError):
    """A value nested deeper than its limit; str() says how deep and what the limit is."""


class TooBig(ValueError):
    """A value over its size limit; str() says how big and what the limit is."""


def json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """At least the nesting depth of the JSON document TEXT (LIMIT when a count of its brackets
    already shows it cannot be deeper), found without parsing it; raise TooDeep as
    soon as it passes LIMIT. Brackets inside strings do not count; the text need not be valid
    JSON (json.loads judges that afterwards)."""
    if text.count("[") + text.count("{") <= limit:  # the common case, at C speed
        return limit
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    raise TooDeep(f"it nests more than {limit} levels deep (the limit is {limit})")
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """json.loads of TEXT once its depth is known to be within LIMIT (TooDeep otherwise).
    Invalid JSON raises ValueError as json.loads does."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode()
    json_depth(text, limit)
    return json.loads(text)


def value_depth(value: Any, limit: int) -> int:
    """The nesting depth of VALUE (dicts, lists and tuples count a level), walked iteratively;
    raise TooDeep once it passes LIMIT. A scalar has depth 0."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            raise TooDeep(f"it nests more than {limit} levels deep (the limit is {limit})")
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def headers_size(headers: dict, limit: int = MAX_HEADERS_BYTES, depth: int = MAX_TABLE_DEPTH) -> int:
    """Check an AMQP header table before anything reads it: at most DEPTH levels of tables and
    arrays, at most LIMIT bytes of keys and text in all. Returns the size; raises TooDeep/TooBig."""
    value_depth(headers, depth)
    size = 0
    stack: list[Any] = [headers]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            size += sum(len(str(k)) for k in item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, (str, bytes, bytearray)):
            size += len(item)
        else:
            size += 8
        if size > limit:
            raise TooBig(f"the headers add up to more than {limit:,} bytes (the limit is {limit:,})")
    return size
