"""Serializing functions and arguments for a task: the SDK's side of the payload format.

The format itself (the container, function ids, the ok/err result layouts) lives in
gce.transport.payload, which the endpoint reads without this package; its names are importable
from here too, as they always were. Turning a function blob back into a callable runs submitter
code and happens on the endpoint's workers only (gce.uep.execute).
"""

from __future__ import annotations

from typing import Any, Callable

from gce.transport.payload import (KIND_PICKLE, KIND_SOURCE, MAGIC, MAX_PARTS, PayloadError, function_id_of, pack,
                                   pack_task, task_function_id, unpack)

__all__ = ["KIND_PICKLE", "KIND_SOURCE", "MAGIC", "MAX_PARTS", "PayloadError", "function_id_of", "pack", "pack_task",
           "serialize_args", "serialize_function", "source_function", "task_function_id", "unpack"]


def serialize_function(fn: Callable[..., Any]) -> tuple[bytes, bytes]:
    import cloudpickle

    return KIND_PICKLE, cloudpickle.dumps(fn)


def source_function(source: str, function_name: str) -> tuple[bytes, bytes]:
    if not function_name.isidentifier():
        raise ValueError(f"{function_name!r} is not a Python identifier")
    return KIND_SOURCE, function_name.encode() + b"\n" + source.encode()


def serialize_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    import cloudpickle

    return cloudpickle.dumps((tuple(args), dict(kwargs)))
