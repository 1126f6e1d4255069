"""Frames on the local channel between a manager and its user endpoint (a socketpair).

  frame = !I total length | 1 byte kind | !I header length | header (JSON) | body (bytes)

Kinds: TASK (manager -> UEP), RESULT (UEP -> manager), STATUS (UEP -> manager, engine
figures), READY / FATAL (UEP -> manager, once at start), STOP (manager -> UEP), CANCEL_BLOCK
(manager -> UEP, header {"block_id": "0"}: cancel that block of its engine), CANCEL_TASKS (manager ->
UEP, header {"task_ids": [...]}: tasks it holds, each answered CANCELLED unless it finishes first),
ASK_STATES (manager -> UEP, {"ask": n, "task_ids": [...]}) and its answer TASK_STATES (UEP -> manager,
{"ask": n, "states": {task id: {"state": "waiting" | "running", "since": t}}}).

A RESULT frame's header may carry "traceback": the worker's traceback of a failed task as plain
text (at most 16 KiB are kept), which root shows without unpickling anything.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Iterator

from gce.transport import limits

TASK = b"T"
RESULT = b"R"
STATUS = b"S"
READY = b"Y"
FATAL = b"F"
STOP = b"Q"
CANCEL_BLOCK = b"C"
CANCEL_TASKS = b"X"
ASK_STATES = b"A"
TASK_STATES = b"B"

_PREFIX = struct.Struct("!IcI")
MAX_FRAME = 1 << 31
MAX_HEADER = 1 << 20  # a frame's JSON header: task and result headers are a few KiB
# A task header wraps the submitter's user endpoint config (itself within limits.MAX_JSON_DEPTH).
MAX_HEADER_DEPTH = limits.MAX_JSON_DEPTH + 8


class FrameError(ValueError):
    pass


def encode(kind: bytes, header: dict[str, Any], body: bytes = b"") -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    total = 1 + 4 + len(h) + len(body)
    return _PREFIX.pack(total, kind, len(h)) + h + body


class Decoder:
    """Incremental decoder: feed bytes, iterate complete frames.

    What the peer sends is checked before it is kept or parsed: the frame's length against
    MAX_FRAME (the manager gives a user endpoint's channel a bound near its result size limit, so
    a user's code cannot make root's manager buffer gigabytes), the header's length and JSON depth,
    and that the header is an object. Any violation is a FrameError, never another exception.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> Iterator[tuple[bytes, dict, bytes]]:
        self._buf += data
        while len(self._buf) >= 4:
            (total,) = struct.unpack_from("!I", self._buf, 0)
            if total < 5 or total > self.max_frame:
                raise FrameError(f"bad frame length {total} (at most {self.max_frame} here)")
            if len(self._buf) < 9:
                return
            kind = bytes(self._buf[4:5])
            (hlen,) = struct.unpack_from("!I", self._buf, 5)
            if hlen > total - 5 or hlen > MAX_HEADER:
                raise FrameError(f"bad header length {hlen}")
            if len(self._buf) < 4 + total:
                return
            try:
                header = limits.loads(bytes(self._buf[9 : 9 + hlen]), MAX_HEADER_DEPTH)
            except (ValueError, RecursionError) as e:  # TooDeep and UnicodeDecodeError are ValueErrors
                raise FrameError(f"the frame header is not acceptable JSON: {e}") from None
            if not isinstance(header, dict):
                raise FrameError("the frame header is not a JSON object")
            body = bytes(self._buf[9 + hlen : 4 + total])
            del self._buf[: 4 + total]
            yield kind, header, body


def recv_frames(sock: socket.socket, decoder: Decoder, bufsize: int = 1 << 20) -> list[tuple[bytes, dict, bytes]]:
    """Blocking read of at least one chunk; returns the frames completed ([] never means EOF)."""
    data = sock.recv(bufsize)
    if not data:
        raise EOFError("the peer closed the channel")
    return list(decoder.feed(data))
