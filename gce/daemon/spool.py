"""The manager's task spool: an append-only journal on local disk.

A task is acknowledged to the broker only after its record is on disk, and its record is
retired only after the broker confirmed its result, so no accepted task is lost whatever
is killed (DESIGN.md, "Delivery guarantees"). Writes are group-committed: records are
buffered and ``flush()`` writes them with one fsync for the whole batch.

Record: !B kind | !I header length | !Q body length | header (JSON) | body | !I crc32
Kinds:  T task accepted (body = task payload), R result produced (body = result payload),
        D done (result confirmed by the broker).
A task's T record stays live until its R (or D) record is written; an R stays live until
its D. A segment file with no live record left is deleted; segments roll at a size.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_HEAD = struct.Struct("!BIQ")
_CRC = struct.Struct("!I")
TASK, RESULT, DONE = ord("T"), ord("R"), ord("D")


@dataclass
class Entry:
    header: dict
    seg: int  # segment of the live record
    offset: int  # offset of the body in that segment
    length: int
    kind: int  # TASK or RESULT: what is live now


@dataclass
class Recovered:
    tasks: list[tuple[str, dict]] = field(default_factory=list)  # (task_id, header)
    results: list[tuple[str, dict]] = field(default_factory=list)


def _record(kind: int, header: dict, body: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    head = _HEAD.pack(kind, len(h), len(body))
    crc = zlib.crc32(body, zlib.crc32(h, zlib.crc32(head)))
    return head + h + body + _CRC.pack(crc)


class Spool:
    def __init__(self, directory: Path, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.entries: dict[str, Entry] = {}
        self._live: dict[int, int] = {}
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._seg = 0
        self._size = 0
        self._file = None  # the active segment, opened for append
        self._unlink_after_flush: list[int] = []
        self._unsynced = False  # records written to the file but not yet fsynced
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- paths and files -------------------------------------------------------------
    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:010d}.log"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.log") if p.stem.isdigit())

    def _open_new_segment(self) -> None:
        if self._file is not None:
            self._file.close()
        self._seg += 1
        self._file = open(self._path(self._seg), "ab", buffering=0)
        self._size = 0
        self._live.setdefault(self._seg, 0)

    # -- recovery --------------------------------------------------------------------
    def _read_segment(self, seg: int):
        with open(self._path(seg), "rb") as f:
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
            yield kind, json.loads(h), body
            pos = end
        if pos != len(data):
            # Only a record whose flush never completed can be torn: it was never acked.
            log.warning("spool segment %s: ignoring %d bytes of a torn record", seg, len(data) - pos)

    def recover(self) -> Recovered:
        """Replay every segment, rewrite what is live into a fresh one, delete the rest."""
        old = self._segments()
        live: dict[str, tuple[int, dict, bytes]] = {}
        for seg in old:
            for kind, header, body in self._read_segment(seg):
                tid = header["task_id"]
                if kind == DONE:
                    live.pop(tid, None)
                elif kind == RESULT or tid not in live:
                    live[tid] = (kind, header, body)
        self._seg = old[-1] if old else 0
        self._open_new_segment()
        out = Recovered()
        for tid, (kind, header, body) in live.items():
            self._append(kind, header, body)
            (out.tasks if kind == TASK else out.results).append((tid, header))
        self.flush()
        for seg in old:
            self._path(seg).unlink(missing_ok=True)
            self._live.pop(seg, None)
        if live:
            log.info("spool: recovered %d task(s) to run and %d result(s) to publish", len(out.tasks), len(out.results))
        return out

    # -- writing ---------------------------------------------------------------------
    def _append(self, kind: int, header: dict, body: bytes) -> None:
        rec = _record(kind, header, body)
        tid = header["task_id"]
        if kind != DONE:
            body_offset = self._size + self._buf_len + len(rec) - _CRC.size - len(body)
            self._retire(tid)
            self.entries[tid] = Entry(header, self._seg, body_offset, len(body), kind)
            self._live[self._seg] += 1
        else:
            self._retire(tid)
            self.entries.pop(tid, None)
        self._buf.append(rec)
        self._buf_len += len(rec)

    def _retire(self, tid: str) -> None:
        e = self.entries.get(tid)
        if e is None:
            return
        self._live[e.seg] -= 1
        if self._live[e.seg] == 0 and e.seg != self._seg:
            # Not before the records that retired it are on disk.
            self._unlink_after_flush.append(e.seg)

    def add_task(self, header: dict, body: bytes) -> None:
        self._append(TASK, header, body)

    def add_result(self, header: dict, body: bytes) -> None:
        self._append(RESULT, header, body)

    def done(self, task_id: str) -> None:
        if task_id in self.entries:
            self._append(DONE, {"task_id": task_id}, b"")

    @property
    def dirty(self) -> bool:
        return bool(self._buf)

    def _write_out(self) -> None:
        """Hand the buffered records to the kernel (readable back, not yet durable)."""
        if not self._buf:
            return
        assert self._file is not None
        self._file.write(b"".join(self._buf))  # unbuffered file: one write(2)
        self._size += self._buf_len
        self._buf.clear()
        self._buf_len = 0
        self._unsynced = True

    def begin_flush(self) -> int | None:
        """Write the buffered records; return the descriptor to fsync, or None if all is durable.

        The fsync may run on another thread (the manager's loop keeps serving meanwhile);
        call end_flush on this one afterwards. One flush at a time.
        """
        self._write_out()
        if not self._unsynced:
            return None
        self._unsynced = False
        assert self._file is not None
        return self._file.fileno()

    def end_flush(self) -> None:
        """After the fsync: drop retired segments, start a new one when this one is full."""
        for seg in self._unlink_after_flush:
            if self._live.get(seg) == 0:
                self._path(seg).unlink(missing_ok=True)
                del self._live[seg]
        self._unlink_after_flush.clear()
        if self._size >= self.segment_bytes:
            assert self._file is not None
            if self._unsynced:  # written by body() during the fsync: make it durable before moving on
                os.fsync(self._file.fileno())
                self._unsynced = False
            done = self._seg
            self._open_new_segment()
            if self._live.get(done) == 0:
                self._path(done).unlink(missing_ok=True)
                self._live.pop(done, None)

    def flush(self) -> None:
        """Write every buffered record and fsync once (group commit)."""
        fd = self.begin_flush()
        if fd is not None:
            os.fsync(fd)
            self.end_flush()

    def body(self, task_id: str) -> bytes:
        """Read back the body of a live record (after flush)."""
        e = self.entries[task_id]
        if e.seg == self._seg and self._buf:
            self._write_out()
        with open(self._path(e.seg), "rb") as f:
            f.seek(e.offset)
            return f.read(e.length)

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
