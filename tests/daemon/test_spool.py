from __future__ import annotations

import os

from gce.daemon.spool import Spool


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
