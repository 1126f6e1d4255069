from __future__ import annotations

import errno
import os
import re
import shutil

import pytest

from gce.daemon.spool import Disk, Spool, SpoolUnwritable
from tests.daemon.tmpfs import FILLER, fill, small_disk


def _task(tid: str) -> dict:
    return {"task_id": tid, "headers": {"reply_to": "q"}}


def test_tasks_survive_a_crash_and_done_ones_do_not(tmp_path):
    s = Spool(tmp_path)
    s.recover()
    for i in range(5):
        s.add_task(_task(f"t{i}"), f"body{i}".encode())
    s.flush()
    s.add_result({"task_id": "t1", "result": {}}, b"res1")
    s.add_result({"task_id": "t2", "result": {}}, b"res2")
    s.done("t2")
    s.flush()
    # no close(): the process "dies" here
    s2 = Spool(tmp_path)
    rec = s2.recover()
    assert sorted(t for t, _ in rec.tasks) == ["t0", "t3", "t4"]
    assert [t for t, _ in rec.results] == ["t1"]
    assert s2.body("t3") == b"body3"
    assert s2.body("t1") == b"res1"


def test_unflushed_records_are_not_recovered_and_torn_tail_is_ignored(tmp_path):
    s = Spool(tmp_path)
    s.recover()
    s.add_task(_task("a"), b"x" * 100)
    s.flush()
    s.add_task(_task("b"), b"y" * 100)  # buffered only: never acked, so losing it is fine
    seg = sorted(tmp_path.glob("*.log"))[-1]
    with open(seg, "ab") as f:
        f.write(b"T\x00\x00")  # a torn record
    rec = Spool(tmp_path).recover()
    assert [t for t, _ in rec.tasks] == ["a"]


def test_segments_are_reclaimed_once_nothing_in_them_is_live(tmp_path):
    s = Spool(tmp_path, segment_bytes=1000)
    s.recover()
    for i in range(50):
        s.add_task(_task(f"t{i}"), os.urandom(100))
        s.flush()
    assert len(list(tmp_path.glob("*.log"))) > 3
    for i in range(50):
        s.add_result({"task_id": f"t{i}", "result": {}}, b"r")
        s.done(f"t{i}")
    s.flush()
    s.add_task(_task("last"), b"z")
    s.flush()
    assert len(list(tmp_path.glob("*.log"))) <= 2
    rec = Spool(tmp_path).recover()
    assert [t for t, _ in rec.tasks] == ["last"]


def test_a_result_retiring_a_segment_is_durable_before_the_segment_goes(tmp_path):
    s = Spool(tmp_path, segment_bytes=10)
    s.recover()
    s.add_task(_task("a"), b"payload")
    s.flush()  # rolls: "a" lives in an old segment now
    s.add_result({"task_id": "a", "result": {}}, b"result")  # buffered, not yet flushed
    rec = Spool(tmp_path).recover()  # crash before the flush
    assert [t for t, _ in rec.tasks] == ["a"]


# -- a disk that fills up, writes short or fails an fsync ---------------------------------------

def _sizes(d) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(d.glob("*.log"))}


def _after_a_crash(d, tmp_path):
    """What a restart would recover from D now, leaving D to the spool that still writes it."""
    copy = tmp_path / f"crash-{len(list(tmp_path.glob('crash-*')))}"
    shutil.copytree(d, copy, ignore=shutil.ignore_patterns(FILLER))
    return Spool(copy).recover()


def test_a_short_write_on_a_nearly_full_disk_fails_the_flush_and_loses_nothing(tmp_path):
    with small_disk(tmp_path / "spool", "1m") as d:
        s = Spool(d)
        s.recover()
        s.add_task(_task("before"), b"b" * 1000)
        s.flush()
        filler = fill(d, leave=16 * 1024)
        bodies = {f"t{i}": os.urandom(4000) for i in range(10)}  # 40 KB, 16 KB free: the kernel writes part
        for tid, body in bodies.items():
            s.add_task(_task(tid), body)
        on_disk = _sizes(d)
        with pytest.raises(SpoolUnwritable) as info:
            s.flush()
        assert str(info.value) == f"the spool disk is full (No space left on device) at {d}"
        assert _sizes(d) == on_disk, "the segment must be cut back to its last whole record"
        assert all(s.body(tid) == body for tid, body in bodies.items())  # kept in memory
        rec = _after_a_crash(d, tmp_path)  # what was never written was never acked either
        assert [t for t, _ in rec.tasks] == ["before"]
        s.add_task(_task("after"), b"a" * 10)  # appends go on after the failed batch
        filler.unlink()
        s.flush()
        s2 = Spool(d)
        rec = s2.recover()
        assert [t for t, _ in rec.tasks] == ["before", *bodies, "after"]
        assert all(s2.body(tid) == body for tid, body in bodies.items())
        assert s2.body("after") == b"a" * 10
        s.close()
        s2.close()


class ShortWrites(Disk):
    """A disk whose writes take at most 7 bytes each, as write(2) may."""

    def pwrite(self, fd, data, offset):
        return super().pwrite(fd, data[:7], offset)


def test_short_writes_are_completed(tmp_path):
    s = Spool(tmp_path, disk=ShortWrites())
    s.recover()
    bodies = {f"t{i}": os.urandom(100 + i) for i in range(20)}
    for tid, body in bodies.items():
        s.add_task(_task(tid), body)
    s.flush()
    s2 = Spool(tmp_path)
    assert [t for t, _ in s2.recover().tasks] == list(bodies)
    assert all(s2.body(tid) == body for tid, body in bodies.items())


class FailingDisk(Disk):
    """A disk whose next write or fsync fails with ERRNO (after writing PARTIAL bytes); a failed
    fsync loses what was written since the last good one, as the kernel may."""

    def __init__(self) -> None:
        self.write_error: int | None = None
        self.partial = 0
        self.fsync_error: int | None = None
        self.synced: dict[int, int] = {}  # fd -> size at its last good fsync

    def pwrite(self, fd, data, offset):
        if self.write_error is not None:
            if self.partial:  # short, and the next call fails
                n, self.partial = super().pwrite(fd, data[: self.partial], offset), 0
                return n
            err, self.write_error = self.write_error, None
            raise OSError(err, os.strerror(err))
        return super().pwrite(fd, data, offset)

    def fsync(self, fd):
        if self.fsync_error is not None:
            err, self.fsync_error = self.fsync_error, None
            os.ftruncate(fd, self.synced.get(fd, 0))  # the dirty pages are gone
            raise OSError(err, os.strerror(err))
        super().fsync(fd)
        self.synced[fd] = os.fstat(fd).st_size


@pytest.mark.parametrize("errno_, says", [
    (errno.ENOSPC, "the spool disk is full (No space left on device)"),
    (errno.EDQUOT, "the spool disk quota is used up (Disk quota exceeded)"),
    (errno.EROFS, "the spool file system is read-only (Read-only file system)"),
    (errno.EIO, "the spool disk failed to write (Input/output error)"),
])
def test_a_failed_write_keeps_the_batch_for_the_next_flush(tmp_path, errno_, says):
    disk = FailingDisk()
    d = tmp_path / "spool"
    s = Spool(d, disk=disk)
    s.recover()
    s.add_task(_task("a"), b"a" * 50)
    s.flush()
    s.add_task(_task("b"), b"b" * 50)
    s.add_result({"task_id": "a", "result": {}}, b"ra")
    disk.write_error, disk.partial = errno_, 30
    with pytest.raises(SpoolUnwritable, match=re.escape(f"{says} at {d}")):
        s.flush()
    assert [t for t, _ in _after_a_crash(tmp_path / "spool", tmp_path).tasks] == ["a"]
    s.done("a")
    s.add_task(_task("c"), b"c" * 50)
    s.flush()
    s2 = Spool(d)
    rec = s2.recover()
    assert [t for t, _ in rec.tasks] == ["b", "c"] and rec.results == []
    assert s2.body("b") == b"b" * 50 and s2.body("c") == b"c" * 50


def test_a_failed_fsync_writes_the_batch_again(tmp_path):
    disk = FailingDisk()
    s = Spool(tmp_path, disk=disk)
    s.recover()
    s.add_task(_task("a"), b"a" * 50)
    s.flush()
    s.add_task(_task("b"), b"b" * 50)
    disk.fsync_error = errno.EIO
    with pytest.raises(SpoolUnwritable, match="failed to write"):
        s.flush()
    assert s.dirty and s.body("b") == b"b" * 50
    s.add_task(_task("c"), b"c" * 50)
    s.flush()
    s2 = Spool(tmp_path)
    assert [t for t, _ in s2.recover().tasks] == ["a", "b", "c"]
    assert (s2.body("a"), s2.body("b"), s2.body("c")) == (b"a" * 50, b"b" * 50, b"c" * 50)


def test_a_segment_rolls_while_records_wait_for_the_next_batch(tmp_path):
    s = Spool(tmp_path, segment_bytes=100)
    s.recover()
    s.add_task(_task("a"), b"a" * 200)
    assert s.begin_flush()
    s.add_task(_task("b"), b"b" * 50)  # arrives during the fsync
    s.sync()
    s.end_flush()
    s.add_task(_task("c"), b"c" * 50)
    s.flush()  # the segment is full: b and c go to the next one
    assert len(_sizes(tmp_path)) == 2
    assert (s.body("a"), s.body("b"), s.body("c")) == (b"a" * 200, b"b" * 50, b"c" * 50)
    s2 = Spool(tmp_path)
    assert [t for t, _ in s2.recover().tasks] == ["a", "b", "c"]
    assert s2.body("b") == b"b" * 50


def test_a_segment_is_deleted_only_once_the_record_retiring_it_is_on_disk(tmp_path):
    s = Spool(tmp_path / "spool", segment_bytes=10)
    s.recover()
    s.add_task(_task("a"), b"payload")
    s.flush()
    s.add_task(_task("b"), b"other")
    assert s.begin_flush()  # b goes to a new segment: a's is left with a alone
    s.add_result({"task_id": "a", "result": {}}, b"result")  # arrives during the fsync
    s.sync()
    s.end_flush()
    rec = _after_a_crash(tmp_path / "spool", tmp_path)  # before the result is written
    assert sorted(t for t, _ in rec.tasks) == ["a", "b"]


def _fill_with_live_tasks(d, count: int, size: int) -> dict[str, bytes]:
    s = Spool(d, segment_bytes=256 * 1024)
    s.recover()
    bodies = {f"t{i}": os.urandom(size) for i in range(count)}
    for tid, body in bodies.items():
        s.add_task(_task(tid), body)
        s.add_task(_task(f"gone-{tid}"), b"x" * 100)
        s.add_result({"task_id": f"gone-{tid}", "result": {}}, b"r")
        s.done(f"gone-{tid}")
        s.flush()
    return bodies  # no close(): a crash


def test_recovery_on_a_nearly_full_disk_reads_the_records_where_they_are(tmp_path):
    with small_disk(tmp_path / "spool", "4m") as d:
        bodies = _fill_with_live_tasks(d, 40, 64 * 1024)  # 2.6 MB live: no room to copy them
        before = _sizes(d)
        s = Spool(d)
        rec = s.recover()
        assert [t for t, _ in rec.tasks] == list(bodies)
        assert all(s.body(tid) == body for tid, body in bodies.items())
        assert _sizes(d) == before  # nothing copied, nothing lost
        for tid in bodies:
            s.add_result({"task_id": tid, "result": {}}, b"ok")
            s.done(tid)
        s.flush()
        assert len(_sizes(d)) == 1  # the old segments went once nothing in them was live
        assert Spool(d).recover().tasks == []


def test_recovery_on_a_full_disk_writes_nothing_and_the_spool_waits_for_room(tmp_path):
    with small_disk(tmp_path / "spool", "4m") as d:
        bodies = _fill_with_live_tasks(d, 10, 64 * 1024)
        filler = fill(d)
        s = Spool(d)
        assert [t for t, _ in s.recover().tasks] == list(bodies)
        with pytest.raises(SpoolUnwritable, match="the spool disk is full"):
            s.probe()
        s.add_result({"task_id": "t0", "result": {}}, b"ok")
        with pytest.raises(SpoolUnwritable):
            s.flush()
        filler.unlink()
        s.probe()
        s.flush()
        s2 = Spool(d)
        rec = s2.recover()
        assert [t for t, _ in rec.tasks] == list(bodies)[1:] and [t for t, _ in rec.results] == ["t0"]
        assert s2.body("t0") == b"ok" and s2.body("t9") == bodies["t9"]


def test_recovery_with_room_compacts_the_live_records_into_one_segment(tmp_path):
    bodies = _fill_with_live_tasks(tmp_path, 10, 64 * 1024)
    assert len(_sizes(tmp_path)) > 2
    s = Spool(tmp_path)
    assert [t for t, _ in s.recover().tasks] == list(bodies)
    assert len(_sizes(tmp_path)) == 1
    assert all(s.body(tid) == body for tid, body in bodies.items())


class RoomThatGoes(Disk):
    """statvfs says there is room; the write then finds none (someone else took it meanwhile)."""

    def free_bytes(self, path):
        return 1 << 40

    def pwrite(self, fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_recovery_whose_compaction_fails_keeps_the_records_where_they_are(tmp_path):
    bodies = _fill_with_live_tasks(tmp_path, 10, 64 * 1024)
    before = _sizes(tmp_path)
    s = Spool(tmp_path, disk=RoomThatGoes())
    assert [t for t, _ in s.recover().tasks] == list(bodies)
    assert {k: v for k, v in _sizes(tmp_path).items() if k in before} == before
    assert all(s.body(tid) == body for tid, body in bodies.items())
    s2 = Spool(tmp_path)
    assert [t for t, _ in s2.recover().tasks] == list(bodies)
