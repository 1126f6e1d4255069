"""Task and result bodies: a small length-prefixed container of byte strings, read by both sides.

The SDK packs tasks and reads results (gce.sdk.serialize, gce.sdk.errors); the user endpoint reads
tasks and packs results (gce.uep.main, gce.uep.execute). Only bytes live here: nothing imports
cloudpickle or runs what a submitter sent, so the manager could read a body without unpickling it
(DESIGN.md, security invariant 1) and the endpoint does not depend on the client library. Turning the
bytes into objects happens on a worker (gce.uep.execute) or in the submitter's process (gce.sdk).

The container keeps the function bytes apart from the arguments, so that
``function_id = sha256(kind + NUL + function bytes)`` can be recomputed by the endpoint
from what it actually received, without unpickling anything (DESIGN.md, "Messages").

  task payload   = [kind, function blob, arguments blob]
                   kind "cloudpickle": function blob = cloudpickle.dumps(fn)
                   kind "source":      function blob = b"<name>\\n<source text>"
                   arguments blob      = cloudpickle.dumps((args, kwargs))
  result payload = [b"ok", cloudpickle.dumps(value), stdout, stderr]
                 | [b"err", code, message, cloudpickle.dumps(exc) or b"", traceback text, stdout, stderr]
                   stdout, stderr: the end of what the function printed (limits.max_output_bytes of
                   each; empty when not captured), as the bytes it wrote
                   Results of endpoints from before output came back have no stdout and stderr parts
                   ([b"ok", value] and [b"err", code, message, exc, traceback]): they read as empty.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Sequence

MAGIC = b"GCE\x01"
KIND_PICKLE = b"cloudpickle"
KIND_SOURCE = b"source"
OK = b"ok"
ERR = b"err"
_COUNT = struct.Struct("!I")
_LEN = struct.Struct("!Q")
MAX_PARTS = 16


class PayloadError(ValueError):
    """A payload that is not a gce container, or not of the shape its reader expects."""


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


# -- tasks ---------------------------------------------------------------------------


def function_id_of(kind: bytes, function_blob: bytes) -> str:
    return hashlib.sha256(kind + b"\0" + function_blob).hexdigest()


def pack_task(kind: bytes, function_blob: bytes, args_blob: bytes) -> bytes:
    return pack([kind, function_blob, args_blob])


def unpack_task(payload: bytes) -> tuple[bytes, bytes, bytes]:
    """(kind, function blob, arguments blob) of a task payload; PayloadError when it is none."""
    parts = unpack(payload)
    if len(parts) != 3:
        raise PayloadError(f"a task payload has 3 parts, this one has {len(parts)}")
    return parts[0], parts[1], parts[2]


def task_function_id(payload: bytes) -> str:
    """Recompute a task's function_id from its payload (no unpickling)."""
    kind, function_blob, _args = unpack_task(payload)
    return function_id_of(kind, function_blob)


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """A result payload read back: the value's bytes when ok, else why it failed."""

    ok: bool
    value: bytes = b""  # cloudpickle.dumps(value), for ok
    code: str = ""  # an ErrorCode (gce.transport.message), for a failure
    message: str = ""
    exception: bytes = b""  # cloudpickle.dumps(exc) of a user exception, or b"" when it could not be
    traceback: str = ""  # the remote traceback of a user exception
    stdout: str = ""  # the end of what the function printed, decoded with replacement characters
    stderr: str = ""


def pack_ok(value_blob: bytes, stdout: bytes = b"", stderr: bytes = b"") -> bytes:
    return pack([OK, value_blob, stdout, stderr])


def pack_err(code: str, message: str, exception_blob: bytes = b"", traceback: str = "", stdout: bytes = b"",
             stderr: bytes = b"") -> bytes:
    return pack([ERR, code.encode(), message.encode(), exception_blob, traceback.encode(), stdout, stderr])


def _text(data: bytes) -> str:
    return data.decode(errors="replace")


def unpack_result(payload: bytes) -> Result:
    """The result in PAYLOAD; PayloadError when it is no result. Text that is not UTF-8 (a worker
    whose code wrote its own bytes) is read with replacement characters rather than refused."""
    parts = unpack(payload)
    tag = parts[0] if parts else b""
    if tag == OK and len(parts) in (2, 4):
        out, err = parts[2:] or (b"", b"")
        return Result(ok=True, value=parts[1], stdout=_text(out), stderr=_text(err))
    if tag == ERR and len(parts) in (5, 7):
        code, message, exception, traceback = parts[1:5]
        out, err = parts[5:] or (b"", b"")
        return Result(ok=False, code=_text(code), message=_text(message), exception=exception,
                      traceback=_text(traceback), stdout=_text(out), stderr=_text(err))
    raise PayloadError(f"the result payload has an unknown shape ({tag[:20]!r}, {len(parts)} parts)")
