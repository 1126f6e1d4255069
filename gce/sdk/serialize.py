"""Task and result payloads: a small length-prefixed container of byte strings.

The container keeps the function bytes apart from the arguments, so that
``function_id = sha256(kind + NUL + function bytes)`` can be recomputed by the endpoint
from what it actually received, without unpickling anything (DESIGN.md, "Messages").

  task payload   = [kind, function blob, arguments blob]
                   kind "cloudpickle": function blob = cloudpickle.dumps(fn)
                   kind "source":      function blob = b"<name>\\n<source text>"
                   arguments blob      = cloudpickle.dumps((args, kwargs))
  result payload = [b"ok", cloudpickle.dumps(value)]
                 | [b"err", code, message, cloudpickle.dumps(exc) or b"", traceback text]
"""

from __future__ import annotations

import hashlib
import struct
from typing import Sequence

MAGIC = b"GCE\x01"
KIND_PICKLE = b"cloudpickle"
KIND_SOURCE = b"source"
_COUNT = struct.Struct("!I")
_LEN = struct.Struct("!Q")
MAX_PARTS = 16


class PayloadError(ValueError):
    """A payload that is not a gce container."""


def pack(parts: Sequence[bytes]) -> bytes:
    out = [MAGIC, _COUNT.pack(len(parts))]
    for p in parts:
        out.append(_LEN.pack(len(p)))
        out.append(bytes(p))
    return b"".join(out)


def unpack(data: bytes) -> list[bytes]:
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC:
        raise PayloadError("the payload is not a gce container (bad magic)")
    if len(view) < 8:
        raise PayloadError("the payload is truncated")
    (count,) = _COUNT.unpack_from(view, 4)
    if count > MAX_PARTS:
        raise PayloadError(f"the payload claims {count} parts (at most {MAX_PARTS})")
    pos, parts = 8, []
    for _ in range(count):
        if pos + 8 > len(view):
            raise PayloadError("the payload is truncated")
        (n,) = _LEN.unpack_from(view, pos)
        pos += 8
        if pos + n > len(view):
            raise PayloadError("the payload is truncated")
        parts.append(bytes(view[pos : pos + n]))
        pos += n
    if pos != len(view):
        raise PayloadError("the payload has trailing bytes")
    return parts


def function_id_of(kind: bytes, function_blob: bytes) -> str:
    return hashlib.sha256(kind + b"\0" + function_blob).hexdigest()


def task_function_id(payload: bytes) -> str:
    """Recompute a task's function_id from its payload (no unpickling)."""
    parts = unpack(payload)
    if len(parts) != 3:
        raise PayloadError(f"a task payload has 3 parts, this one has {len(parts)}")
    return function_id_of(parts[0], parts[1])


def serialize_function(fn) -> tuple[bytes, bytes]:
    import cloudpickle

    return KIND_PICKLE, cloudpickle.dumps(fn)


def source_function(source: str, function_name: str) -> tuple[bytes, bytes]:
    if not function_name.isidentifier():
        raise ValueError(f"{function_name!r} is not a Python identifier")
    return KIND_SOURCE, function_name.encode() + b"\n" + source.encode()


def serialize_args(args: tuple, kwargs: dict) -> bytes:
    import cloudpickle

    return cloudpickle.dumps((tuple(args), dict(kwargs)))


def pack_task(kind: bytes, function_blob: bytes, args_blob: bytes) -> bytes:
    return pack([kind, function_blob, args_blob])


def load_function(kind: bytes, function_blob: bytes):
    """Turn a function blob back into a callable (runs submitter code: workers only)."""
    if kind == KIND_PICKLE:
        import cloudpickle

        return cloudpickle.loads(function_blob)
    if kind == KIND_SOURCE:
        name, _, source = function_blob.partition(b"\n")
        namespace: dict = {"__name__": "__gce_source__"}
        exec(compile(source.decode(), f"<gce source of {name.decode()}>", "exec"), namespace)
        try:
            return namespace[name.decode()]
        except KeyError:
            raise PayloadError(f"the registered source defines no function named {name.decode()!r}") from None
    raise PayloadError(f"unknown function serializer {kind[:40]!r}")
