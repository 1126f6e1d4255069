"""Group commit against a disk that fills up or fails an fsync: nothing is acked that is not on
disk, the deliveries not spooled go back to the broker, the link pauses once and resumes by itself."""

from __future__ import annotations

import asyncio
import errno
import logging
import os

import pytest

from gce.daemon import commit
from gce.daemon.commit import GroupCommit
from gce.daemon.spool import Disk, Spool


class Link:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def ack(self, generation, tag, multiple=False):
        self.calls.append(("ack", generation, tag))

    def nack(self, generation, tag, multiple=False):
        self.calls.append(("nack", generation, tag))

    def pause(self):
        self.calls.append(("pause",))

    def resume(self):
        self.calls.append(("resume",))


class Switch(Disk):
    """A disk whose writes (or fsyncs) fail with ERROR while it is set; counts the attempts."""

    def __init__(self) -> None:
        self.error: int | None = None
        self.on_fsync = False
        self.attempts = 0

    def _fail(self) -> None:
        self.attempts += 1
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))

    def pwrite(self, fd, data, offset):
        if not self.on_fsync:
            self._fail()
        return super().pwrite(fd, data, offset)

    def fsync(self, fd):
        if self.on_fsync:
            self._fail()
        super().fsync(fd)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(commit, "RETRY_FIRST", 0.02)
    monkeypatch.setattr(commit, "RETRY_CAP", 0.05)


def _task(tid: str) -> dict:
    return {"task_id": tid, "task": {}}


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("on_fsync", [False, True], ids=["write", "fsync"])
def test_a_full_disk_gives_deliveries_back_pauses_once_and_resumes_by_itself(tmp_path, caplog, on_fsync):
    caplog.set_level(logging.DEBUG, "gce.daemon.commit")
    disk = Switch()
    disk.on_fsync = on_fsync
    spool = Spool(tmp_path, disk=disk)
    spool.recover()
    link = Link()

    async def main() -> GroupCommit:
        c = GroupCommit(spool, link)
        spool.add_task(_task("t1"), b"1")
        c.delivered(1, 1)
        await until(lambda: link.calls == [("ack", 1, 1)])
        disk.error = errno.ENOSPC
        spool.add_task(_task("t2"), b"2")
        c.delivered(1, 2)
        spool.add_task(_task("t3"), b"3")
        c.delivered(1, 3)
        await until(lambda: ("pause",) in link.calls)
        assert link.calls[1:] == [("nack", 1, 3), ("pause",)]  # t2 and t3 back to the broker
        assert c.error == f"the spool disk is full (No space left on device) at {tmp_path}"
        tried = disk.attempts
        await until(lambda: disk.attempts >= tried + 3)  # it keeps trying, and says nothing more
        spool.add_result({"task_id": "t1", "result": {}}, b"r1")  # results still come in meanwhile
        c.schedule()
        assert link.calls[1:] == [("nack", 1, 3), ("pause",)]
        disk.error = None
        await until(lambda: ("resume",) in link.calls)
        assert link.calls[3:] == [("resume",)] and c.error == ""
        c.delivered(1, 4)  # a redelivered t2, dropped as a duplicate: acked once on disk
        await until(lambda: ("ack", 1, 4) in link.calls)
        return c

    asyncio.run(main())
    states = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(states) == 2
    assert states[0].startswith(f"cannot write the task spool: the spool disk is full (No space left on device) "
                                f"at {tmp_path}; not taking tasks")
    assert states[1].startswith("the task spool can be written again after")
    rec = Spool(tmp_path).recover()
    assert [t for t, _ in rec.tasks] == ["t2", "t3"] and [t for t, _ in rec.results] == ["t1"]


def test_a_start_on_a_full_disk_is_paused_until_a_write_works(tmp_path):
    disk = Switch()
    spool = Spool(tmp_path, disk=disk)
    spool.recover()
    link = Link()
    disk.error = errno.EROFS

    async def main() -> None:
        c = GroupCommit(spool, link)
        c.check_disk()
        assert link.calls == [("pause",)]
        assert c.error.startswith("the spool file system is read-only (Read-only file system)")
        tried = disk.attempts
        await until(lambda: disk.attempts >= tried + 2)
        disk.error = None
        await until(lambda: link.calls == [("pause",), ("resume",)])

    asyncio.run(main())


def test_a_stop_on_a_full_disk_acks_nothing_and_does_not_raise(tmp_path):
    disk = Switch()
    spool = Spool(tmp_path, disk=disk)
    spool.recover()
    link = Link()

    async def main() -> None:
        c = GroupCommit(spool, link)
        disk.error = errno.ENOSPC
        spool.add_task(_task("t1"), b"1")
        c.delivered(1, 1)
        await c.flush_all()

    asyncio.run(main())
    assert ("ack", 1, 1) not in link.calls
    spool.close()


class Counting(Disk):
    """A real disk that counts its fsyncs and tells LINK's calls at each."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.fsyncs: list[list[tuple]] = []  # the link's calls as each fsync began

    def fsync(self, fd):
        self.fsyncs.append(list(self.link.calls))
        super().fsync(fd)


def test_a_short_task_s_records_share_one_fsync_and_its_ack_waits_for_it(tmp_path, monkeypatch):
    # T (delivered), R (its result) and D (the broker confirmed the result) of a task that ends
    # within the commit window, each in an iteration of the loop of its own as messages come:
    # one fsync for the three, and the delivery is acked after it.
    monkeypatch.setattr(commit, "COMMIT_WINDOW", 0.2)
    link = Link()
    disk = Counting(link)
    spool = Spool(tmp_path, disk=disk)
    spool.recover()

    async def main() -> None:
        c = GroupCommit(spool, link)
        spool.add_task(_task("t1"), b"1")
        c.delivered(1, 1)
        await asyncio.sleep(0)
        spool.add_result({"task_id": "t1", "result": {}, "reply_to": "r"}, b"r1")
        c.schedule()
        await asyncio.sleep(0)
        spool.done("t1")
        c.schedule()
        await asyncio.sleep(0)
        assert link.calls == [] and disk.fsyncs == []  # nothing yet: the window is open
        await until(lambda: link.calls == [("ack", 1, 1)])
        assert disk.fsyncs == [[]]  # one fsync, before the ack
        await asyncio.sleep(commit.COMMIT_WINDOW * 3)
        assert len(disk.fsyncs) == 1 and not spool.dirty

    asyncio.run(main())
    rec = Spool(tmp_path).recover()
    assert rec.tasks == [] and rec.results == []


def test_a_stop_within_the_window_flushes_and_acks_at_once(tmp_path):
    link = Link()
    spool = Spool(tmp_path, disk=Counting(link))
    spool.recover()

    async def main() -> None:
        c = GroupCommit(spool, link)
        spool.add_task(_task("t1"), b"1")
        c.delivered(1, 7)
        await c.flush_all()
        assert link.calls == [("ack", 1, 7)]
        await asyncio.sleep(commit.COMMIT_WINDOW * 3)  # the window's flush was called off
        assert link.calls == [("ack", 1, 7)]

    asyncio.run(main())
    assert [t for t, _ in Spool(tmp_path).recover().tasks] == ["t1"]
