"""The spool's segment files: the record format, reading records back, and the system calls
that write them (Disk: the seam where tests make them fail or write short), with what a
failure of them means for the endpoint.

Record: !B kind | !I header length | !Q body length | header (JSON) | body | !I crc32
Kinds:  T task accepted (body = task payload), R result produced (body = result payload),
        D done (result confirmed by the broker).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Iterator

log = logging.getLogger("gce.daemon.spool")

_HEAD = struct.Struct("!BIQ")
_CRC = struct.Struct("!I")
CRC_SIZE = _CRC.size
TASK, RESULT, DONE = ord("T"), ord("R"), ord("D")
_WHAT = {errno.ENOSPC: "the spool disk is full", errno.EDQUOT: "the spool disk quota is used up",
         errno.EROFS: "the spool file system is read-only", errno.EIO: "the spool disk failed to write"}


class SpoolUnwritable(Exception):
    """The spool's disk refused a write or an fsync: what was being flushed is not spooled."""

    def __init__(self, directory: Path, error: OSError) -> None:
        self.error = error
        what = _WHAT.get(error.errno or 0, "the spool cannot be written")
        super().__init__(f"{what} ({error.strerror or error}) at {directory}")


class Disk:
    """The spool's system calls on its segment files."""

    def open(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fsync_dir(self, path: Path) -> None:
        """Make a new file's name durable too: fsync(2) of the file alone does not (POSIX)."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def free_bytes(self, path: Path) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize


def record(kind: int, header: dict, body: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    head = _HEAD.pack(kind, len(h), len(body))
    crc = zlib.crc32(body, zlib.crc32(h, zlib.crc32(head)))
    return head + h + body + _CRC.pack(crc)


def scan(path: Path) -> Iterator[tuple[int, dict, int, int, int]]:
    """(kind, header, body offset, body length, record length) of each whole record of a segment,
    up to the first torn one."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + _HEAD.size <= len(data):
        kind, hlen, blen = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + hlen + blen + _CRC.size
        if kind not in (TASK, RESULT, DONE) or end > len(data):
            break
        head = data[pos : pos + _HEAD.size]
        h = data[pos + _HEAD.size : pos + _HEAD.size + hlen]
        body = data[pos + _HEAD.size + hlen : end - _CRC.size]
        (crc,) = _CRC.unpack_from(data, end - _CRC.size)
        if crc != zlib.crc32(body, zlib.crc32(h, zlib.crc32(head))):
            break
        yield kind, json.loads(h), pos + _HEAD.size + hlen, blen, end - pos
        pos = end
    if pos != len(data):
        # Only a record whose flush never completed can be torn: it was never acked.
        log.warning("spool segment %s: ignoring %d bytes of a torn record", path.stem, len(data) - pos)
