"""The audit log's writer on real files: rotation by size (a crash mid-rotation loses nothing), a full
or unwritable disk (lines wait, whole, and are written once there is room; beyond what waits they are
counted lost), the file's mode, and what a refusal's reason keeps."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from gce import auditlog
from gce.daemon import audit
from gce.daemon.audit import AuditLog, audit_reason
from tests.daemon.tmpfs import fill, small_disk


def ids(path) -> list[str]:
    return [r["task_id"] for r in auditlog.read(path)]


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_rotation_keeps_backups_and_a_crash_between_its_renames_loses_no_line(tmp_path):
    path = tmp_path / "audit" / "ep.jsonl"
    log = AuditLog(path, "ep", "id-1", max_bytes=600, backups=3)
    for i in range(40):
        log.write("received", f"t{i:02}", submitter="alice", function_name="f")
    log.close()
    files = auditlog.files(path)
    assert files == [auditlog.rotated(path, 3), auditlog.rotated(path, 2), auditlog.rotated(path, 1), path]
    assert all(0 < p.stat().st_size <= 600 for p in files)
    kept = ids(path)
    assert kept == [f"t{i:02}" for i in range(40 - len(kept), 40)]  # the newest, in order, none missing
    assert all(len(lines_of(p)) for p in files)

    # A crash after the first two renames of a rotation: .2 -> .3 (the oldest goes) and .1 -> .2.
    dropped = ids_of_file(auditlog.rotated(path, 3))
    os.replace(auditlog.rotated(path, 2), auditlog.rotated(path, 3))
    os.replace(auditlog.rotated(path, 1), auditlog.rotated(path, 2))
    assert ids(path) == [t for t in kept if t not in dropped]
    again = AuditLog(path, "ep", "id-1", max_bytes=600, backups=3)  # the manager's next start
    again.write("received", "t40")
    again.close()
    assert ids(path) == [t for t in kept if t not in dropped] + ["t40"]


def ids_of_file(p) -> list[str]:
    return [r["task_id"] for r in lines_of(p)]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_a_full_disk_keeps_lines_waiting_whole_and_writes_them_in_order_once_there_is_room(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "RETRY_AFTER", 0.0)
    with small_disk(tmp_path / "disk", "64k") as disk:
        path = disk / "audit" / "ep.jsonl"
        log = AuditLog(path, "ep", "id-1")
        log.write("received", "t-first")
        filler = fill(disk, leave=300)
        for i in range(30):
            log.write("finished", f"t{i:02}", status="success", function_name="x" * 40)
        assert log.waiting > 0 and log.error == os.strerror(28) and log.lost == 0
        written = lines_of(path)  # every line whole: a line cut by the full disk was cut back off
        assert [r["task_id"] for r in written] == ["t-first"] + [f"t{i:02}" for i in range(len(written) - 1)]
        filler.unlink()
        log.check()  # the manager's housekeeping tick
        assert (log.waiting, log.lost, log.error) == (0, 0, "")
        assert ids(path) == ["t-first"] + [f"t{i:02}" for i in range(30)]
        log.close()


def test_beyond_what_waits_lines_are_counted_lost_and_the_newest_are_written_later(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "WAITING_MAX", 5)
    monkeypatch.setattr(audit, "RETRY_AFTER", 0.0)
    blocker = tmp_path / "audit"
    blocker.write_text("a file where the audit directory goes: nothing can be written under it")
    log = AuditLog(blocker / "ep.jsonl", "ep", "id-1")
    for i in range(8):
        log.write("received", f"t{i}")  # never raises
    assert (log.waiting, log.lost) == (5, 3) and log.error
    blocker.unlink()
    log.check()
    assert (log.waiting, log.lost, log.error) == (0, 3, "")
    assert ids(blocker / "ep.jsonl") == [f"t{i}" for i in range(3, 8)]
    log.close()


def test_a_file_removed_under_the_writer_is_made_again(tmp_path):
    path = tmp_path / "audit" / "ep.jsonl"
    log = AuditLog(path, "ep", "id-1")
    log.write("received", "t1")
    path.unlink()
    log.check()
    log.write("received", "t2")
    assert ids(path) == ["t2"]
    log.close()


def test_the_file_is_private_and_never_written_through_a_symlink(tmp_path):
    old = os.umask(0o022)  # a usual umask would make 0644 files
    path = tmp_path / "audit" / "ep.jsonl"
    log = AuditLog(path, "ep", "id-1")
    try:
        log.write("received", "t1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    log.close()
    target = tmp_path / "elsewhere"
    target.write_text("")
    path.unlink()
    path.symlink_to(target)
    other = AuditLog(path, "ep", "id-1")
    other.write("received", "t2")
    assert target.read_text() == "" and other.waiting == 1 and "symbolic link" in other.error
    other.close()
    assert other.lost == 1


def test_a_line_holds_the_event_and_only_the_fields_given(tmp_path):
    path = tmp_path / "ep.jsonl"
    log = AuditLog(path, "ep", "id-1", clock=lambda: 1796551200.5)
    log.write("mapped", "t1", submitter="alice", local_user="alice", uid=1001, uep="")
    log.close()
    assert lines_of(path) == [{"ts": 1796551200.5, "event": "mapped", "task_id": "t1", "endpoint": "ep",
                               "endpoint_id": "id-1", "submitter": "alice", "local_user": "alice", "uid": 1001}]


def test_a_refusal_keeps_the_endpoint_sentence_without_passwords_or_user_config_values():
    assert audit_reason("BAD_MESSAGE", "cannot reach amqp://bob:s3cret@host/vh") == \
        "cannot reach amqp://bob:***@host/vh"
    said = audit_reason("USER_CONFIG_INVALID", "invalid user endpoint config: account: 'hunter2' is not an integer")
    assert "hunter2" not in said and "schema" in said
    assert len(audit_reason("FUNCTION_NOT_ALLOWED", "x" * 5000)) == audit.REASON_MAX


def test_a_loop_turns_lines_go_in_one_write_at_its_end_in_order(tmp_path, monkeypatch):
    path = tmp_path / "audit" / "ep.jsonl"
    log = AuditLog(path, "ep", "id-1")
    writes: list[int] = []
    real_write = os.write

    def counted(fd: int, data: bytes) -> int:  # observes the audit file's writes; each still happens
        if fd == log._fd:
            writes.append(len(data))
        return real_write(fd, data)

    async def turns() -> None:
        for i in range(100):
            log.write("received", f"t{i:03}")
        assert not path.exists()  # the turn has not ended: nothing is written yet
        await asyncio.sleep(0)
        assert ids(path) == [f"t{i:03}" for i in range(100)]
        log.write("finished", "t000", status="success")
        log.close()  # a stopping manager: what this turn wrote goes at once

    monkeypatch.setattr(audit.os, "write", counted)
    asyncio.run(turns())
    assert len(writes) == 2  # one write() per turn
    assert ids(path) == [f"t{i:03}" for i in range(100)] + ["t000"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_a_turn_the_full_disk_refuses_waits_whole_and_is_written_in_order_later(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "RETRY_AFTER", 0.0)
    with small_disk(tmp_path / "disk", "64k") as disk:
        path = disk / "audit" / "ep.jsonl"
        log = AuditLog(path, "ep", "id-1")

        async def turns() -> None:
            log.write("received", "t-first")
            await asyncio.sleep(0)
            filler = fill(disk, leave=300)
            for i in range(30):
                log.write("finished", f"t{i:02}", status="success", function_name="x" * 40)
            await asyncio.sleep(0)
            assert log.waiting == 30 and log.error == os.strerror(28)
            assert ids(path) == ["t-first"]  # the refused turn left no part of a line
            log.write("finished", "t-later")  # after the older ones, though they wait
            filler.unlink()
            log.check()
            assert (log.waiting, log.lost, log.error) == (0, 0, "")

        asyncio.run(turns())
        assert ids(path) == ["t-first"] + [f"t{i:02}" for i in range(30)] + ["t-later"]
        log.close()
