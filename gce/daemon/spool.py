"""The manager's task spool: an append-only journal on local disk.

A task is acknowledged to the broker only after its record is on disk, and its record is
retired only after the broker confirmed its result, so no accepted task is lost whatever
is killed (DESIGN.md, "Delivery guarantees"). Writes are group-committed: records are
buffered and a flush writes them with one fsync for the whole batch.

Records (gce/daemon/segments.py): T task accepted, R result produced, D done (result
confirmed by the broker). A task's T record stays live until its R (or D) record is
written; an R stays live until its D. A segment file with no live record left is deleted
once the records that retired its own are on disk; segments roll at a size.

A full, read-only or failing disk is a state, not a crash: a flush that cannot write or
fsync its whole batch raises SpoolUnwritable, cuts the segment back to its last good
record and keeps the batch in memory, at the offsets its entries already name, for the
next flush. Nothing of such a batch counts as spooled, and recovery writes nothing it has
no room for.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from gce.daemon.segments import CRC_SIZE, DONE, RESULT, TASK, Disk, SpoolUnwritable, record, scan

__all__ = ["Disk", "Entry", "Recovered", "Spool", "SpoolUnwritable", "TASK", "RESULT", "DONE"]
log = logging.getLogger(__name__)
# Recovery rewrites the live records into a fresh segment only when that leaves this much
# free besides: on a nearly full disk it reads them where they are instead.
COMPACT_HEADROOM = 1024 * 1024


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


class Spool:
    def __init__(self, directory: Path, segment_bytes: int = 64 * 1024 * 1024, disk: Disk | None = None) -> None:
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.disk = disk or Disk()
        self.entries: dict[str, Entry] = {}
        self._live: dict[int, int] = {}  # segment -> live records in it
        self._seg = 1  # the active segment: where buffered records go
        self._fd: int | None = None  # its descriptor, opened by the first write
        self._readers: dict[int, int] = {}  # segment -> a descriptor that reads bodies back from it
        self._durable = 0  # bytes of the active segment known to be on disk
        # Every record after _durable: the first _written bytes are in the file, not yet fsynced.
        self._buf = bytearray()
        self._written = 0
        self._syncing = 0  # bytes of _buf the fsync in progress covers
        self._in_buf: list[Entry] = []  # entries whose record is in _buf: they move if the segment rolls
        self._synced_total = 0  # bytes ever made durable: the clock of _unlink_after
        self._unlink_after: list[tuple[int, int]] = []  # (segment, _synced_total it waits for)
        self._cut = False  # the file may end past _durable + _written (a failed write or fsync)
        self._new_file = False  # the active segment was created: fsync the directory too
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- paths and files -------------------------------------------------------------
    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:010d}.log"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.log") if p.stem.isdigit())

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _unlink(self, seg: int) -> bool:
        fd = self._readers.pop(seg, None)
        if fd is not None:
            os.close(fd)
        try:
            self._path(seg).unlink(missing_ok=True)
        except OSError as e:  # a read-only disk: try again after a later flush
            log.debug("spool: cannot delete segment %s yet: %s", seg, e)
            return False
        self._live.pop(seg, None)
        return True

    # -- recovery --------------------------------------------------------------------
    def recover(self) -> Recovered:
        """Find every live record. Rewrite them into a fresh segment and delete the old ones when
        the disk has room for that; else leave them where they are (no write can fail here)."""
        old = self._segments()
        live: dict[str, tuple[Entry, int]] = {}  # task id -> (where its live record is, record size)
        for seg in old:
            for kind, header, offset, length, size in scan(self._path(seg)):
                tid = header["task_id"]
                if kind == DONE:
                    live.pop(tid, None)
                elif kind == RESULT or tid not in live:
                    live[tid] = (Entry(header, seg, offset, length, kind), size)
        self._seg = old[-1] + 1 if old else 1
        self._live = {self._seg: 0}
        need = sum(size for _e, size in live.values())
        if not (old and need + COMPACT_HEADROOM <= self.disk.free_bytes(self.dir) and self._compact(live, old)):
            self._index_in_place(live, old)
        out = Recovered()
        for tid, e in self.entries.items():
            (out.tasks if e.kind == TASK else out.results).append((tid, e.header))
        if live:
            log.info("spool: recovered %d task(s) to run and %d result(s) to publish", len(out.tasks), len(out.results))
        return out

    def _compact(self, live: dict[str, tuple[Entry, int]], old: list[int]) -> bool:
        try:
            for e, _size in live.values():
                self._append(e.kind, e.header, self._read(e.seg, e.offset, e.length))
            self.flush()
        except SpoolUnwritable as err:  # the room went between the check and the write: undo it
            log.warning("spool: could not compact the old segments (%s); reading them where they are", err)
            self._close_fd()
            self._unlink(self._seg)
            self.entries.clear()
            self._live = {self._seg: 0}
            self._buf.clear()
            self._in_buf.clear()
            self._durable = self._written = 0
            self._cut = self._new_file = False
            return False
        for seg in old:
            self._unlink(seg)
        return True

    def _index_in_place(self, live: dict[str, tuple[Entry, int]], old: list[int]) -> None:
        for tid, (e, _size) in live.items():
            self.entries[tid] = e
            self._live[e.seg] = self._live.get(e.seg, 0) + 1
        for seg in old:
            # Every record in it is dead, and what retired them is on disk. As at run time, a D
            # record deleted with it may let an older segment's finished task run again after a
            # later crash: a duplicate answer, which the SDK drops by task id.
            if not self._live.get(seg):
                self._unlink(seg)

    # -- writing ---------------------------------------------------------------------
    def _append(self, kind: int, header: dict, body: bytes) -> None:
        rec = record(kind, header, body)
        tid = header["task_id"]
        self._retire(tid, self._synced_total + len(self._buf) + len(rec))
        if kind != DONE:
            offset = self._durable + len(self._buf) + len(rec) - CRC_SIZE - len(body)
            e = self.entries[tid] = Entry(header, self._seg, offset, len(body), kind)
            self._live[self._seg] = self._live.get(self._seg, 0) + 1
            self._in_buf.append(e)
        else:
            self.entries.pop(tid, None)
        self._buf += rec

    def _retire(self, tid: str, durable_at: int) -> None:
        e = self.entries.get(tid)
        if e is None:
            return
        self._live[e.seg] -= 1
        if self._live[e.seg] == 0 and e.seg != self._seg:
            # Not before the record that retired it is on disk.
            self._unlink_after.append((e.seg, durable_at))

    def add_task(self, header: dict, body: bytes) -> None:
        self._append(TASK, header, body)

    def add_result(self, header: dict, body: bytes) -> None:
        self._append(RESULT, header, body)

    def done(self, task_id: str) -> None:
        if task_id in self.entries:
            self._append(DONE, {"task_id": task_id}, b"")

    @property
    def dirty(self) -> bool:
        """Records wait to be written or fsynced."""
        return bool(self._buf)

    def _roll(self) -> None:
        """Start the next segment; the records waiting in the buffer move to it."""
        old, base = self._seg, self._durable
        self._close_fd()
        self._seg, self._durable = old + 1, 0
        self._live.setdefault(self._seg, 0)
        for e in self._in_buf:
            if self.entries.get(e.header["task_id"]) is e:
                self._live[old] -= 1
                self._live[self._seg] += 1
            e.seg, e.offset = self._seg, e.offset - base
        if self._live.get(old) == 0:
            self._unlink_after.append((old, self._synced_total + len(self._buf)))

    def _write_out(self) -> None:
        """Write the whole buffer after what is in the file already, or raise SpoolUnwritable
        with the file cut back to its last whole record: a short write is no write."""
        start = self._durable + self._written
        try:
            if self._fd is None:
                self._fd = self.disk.open(self._path(self._seg))
                self._new_file = True
            if self._cut:
                self.disk.ftruncate(self._fd, start)
                self._cut = False
            # A copy: a view of _buf itself would pin its size while a failed write's traceback lives.
            data = memoryview(self._buf[self._written :])
            done = 0
            while done < len(data):
                n = self.disk.pwrite(self._fd, data[done:], start + done)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as e:
            self._cut = True
            if self._fd is not None:
                try:
                    self.disk.ftruncate(self._fd, start)
                    self._cut = False
                except OSError:
                    pass  # cut before the next write
            raise SpoolUnwritable(self.dir, e) from None
        self._written = len(self._buf)

    def begin_flush(self) -> bool:
        """Write the buffered records; True if sync() and end_flush() must follow, False if all
        is durable. Raises SpoolUnwritable. One flush at a time."""
        if self._durable >= self.segment_bytes and self._buf:
            self._roll()
        if self._written < len(self._buf):
            self._write_out()
        self._syncing = self._written
        return self._syncing > 0

    def sync(self) -> None:
        """fsync what begin_flush wrote; may run on another thread. Raises SpoolUnwritable."""
        try:
            assert self._fd is not None
            self.disk.fsync(self._fd)
            if self._new_file:
                self.disk.fsync_dir(self.dir)
        except OSError as e:
            raise SpoolUnwritable(self.dir, e) from None

    def sync_failed(self) -> None:
        """After a failed fsync nothing written since the last good one counts as on disk: the
        kernel may have dropped those dirty pages and will not say so again (PostgreSQL's
        "fsyncgate", 2018). The next flush writes them again, at the same offsets."""
        self._syncing = self._written = 0
        self._cut = True

    def end_flush(self) -> None:
        """After a good fsync: forget what is on disk now, delete segments nothing lives in."""
        n, self._syncing = self._syncing, 0
        del self._buf[:n]
        self._durable += n
        self._written -= n
        self._synced_total += n
        self._new_file = False
        keep = 0
        while keep < len(self._in_buf) and self._in_buf[keep].offset < self._durable:
            keep += 1
        del self._in_buf[:keep]
        waiting = []
        for seg, durable_at in self._unlink_after:
            moot = self._live.get(seg) != 0 or seg == self._seg  # deleted already
            if not moot and (durable_at > self._synced_total or not self._unlink(seg)):
                waiting.append((seg, durable_at))
        self._unlink_after = waiting

    def flush(self) -> None:
        """Write every buffered record and fsync once (group commit). Raises SpoolUnwritable."""
        if not self.begin_flush():
            return
        try:
            self.sync()
        except SpoolUnwritable:
            self.sync_failed()
            raise
        self.end_flush()

    def probe(self) -> None:
        """Raise SpoolUnwritable unless a byte can be written to the spool now (with nothing
        buffered there is no flush to find out: a start-up on a full disk)."""
        try:
            if self._fd is None:
                self._fd = self.disk.open(self._path(self._seg))
                self._new_file = True
            end = self._durable + self._written
            if self.disk.pwrite(self._fd, memoryview(b"\0"), end) != 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._cut = True
            self.disk.ftruncate(self._fd, end)
            self._cut = False
        except OSError as e:
            raise SpoolUnwritable(self.dir, e) from None

    def _read(self, seg: int, offset: int, length: int) -> bytes:
        fd = self._readers.get(seg)  # one descriptor per segment, kept until it is deleted
        if fd is None:
            fd = self._readers[seg] = os.open(self._path(seg), os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(fd, length, offset)

    def body(self, task_id: str) -> bytes:
        """The body of a live record, from the buffer while it is not yet on disk."""
        e = self.entries[task_id]
        if e.seg == self._seg and e.offset >= self._durable:
            start = e.offset - self._durable
            return bytes(self._buf[start : start + e.length])
        return self._read(e.seg, e.offset, e.length)

    def close(self) -> None:
        """Flush and close. Records the disk refuses are dropped: their tasks were never acked."""
        try:
            self.flush()
        except SpoolUnwritable as e:
            log.warning("spool: %d bytes of records not written at exit (%s): the tasks they held are still on "
                        "the broker, or run again at the next start", len(self._buf), e)
        self._close_fd()
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
