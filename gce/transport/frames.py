"""Frames on the local channel between a manager and its user endpoint (a socketpair).

  frame = !I total length | 1 byte kind | !I header length | header (JSON) | body (bytes)

Kinds: TASK (manager -> UEP), RESULT (UEP -> manager), STATUS (UEP -> manager, engine
figures), READY / FATAL (UEP -> manager, once at start), STOP (manager -> UEP).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Iterator

TASK = b"T"
RESULT = b"R"
STATUS = b"S"
READY = b"Y"
FATAL = b"F"
STOP = b"Q"

_PREFIX = struct.Struct("!IcI")
MAX_FRAME = 1 << 31


class FrameError(ValueError):
    pass


def encode(kind: bytes, header: dict[str, Any], body: bytes = b"") -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    total = 1 + 4 + len(h) + len(body)
    return _PREFIX.pack(total, kind, len(h)) + h + body


class Decoder:
    """Incremental decoder: feed bytes, iterate complete frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[bytes, dict, bytes]]:
        self._buf += data
        while len(self._buf) >= 4:
            (total,) = struct.unpack_from("!I", self._buf, 0)
            if total < 5 or total > MAX_FRAME:
                raise FrameError(f"bad frame length {total}")
            if len(self._buf) < 4 + total:
                return
            kind = bytes(self._buf[4:5])
            (hlen,) = struct.unpack_from("!I", self._buf, 5)
            if hlen > total - 5:
                raise FrameError("bad header length")
            header = json.loads(bytes(self._buf[9 : 9 + hlen]))
            body = bytes(self._buf[9 + hlen : 4 + total])
            del self._buf[: 4 + total]
            yield kind, header, body


def recv_frames(sock: socket.socket, decoder: Decoder, bufsize: int = 1 << 20) -> list[tuple[bytes, dict, bytes]]:
    """Blocking read of at least one chunk; returns the frames completed ([] never means EOF)."""
    data = sock.recv(bufsize)
    if not data:
        raise EOFError("the peer closed the channel")
    return list(decoder.feed(data))
