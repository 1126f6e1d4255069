"""The manager's ring of task events (gce.daemon.snapshot.TaskEvents): cursors, what a slow
reader lost, who sees which event, and the failures' sentences and tracebacks."""

from __future__ import annotations

from gce.daemon.activity import TaskDetail
from gce.daemon.snapshot import TRACEBACK_MAX, TaskEvents


def _run(events: TaskEvents, task_id: str, status: str = "success", uid: int | None = 1000, t: float = 100.0) -> None:
    events.received(task_id, "square", "alice@example.org", now=t)
    events.dispatched(task_id, "alice/3f2a", "alice", uid, now=t + 0.5)
    events.finished(task_id, status, "" if status == "success" else "TASK_EXCEPTION",
                    "" if status == "success" else "ZeroDivisionError: division by zero\n  more", now=t + 2.0)


def test_a_task_leaves_three_events_with_its_names_and_times():
    events = TaskEvents()
    _run(events, "t-1", "failed")
    got, cursor, dropped = events.since(0)
    assert (cursor, dropped) == (3, 0)
    assert [(e.seq, e.event) for e in got] == [(1, "received"), (2, "dispatched"), (3, "failed")]
    last = got[-1]
    assert (last.function_name, last.submitter, last.local_user, last.uep) == \
        ("square", "alice@example.org", "alice", "alice/3f2a")
    assert (last.code, last.message, last.queued_for, last.ran_for) == \
        ("TASK_EXCEPTION", "ZeroDivisionError: division by zero", 0.5, 1.5)
    assert got[0].local_user == "" and got[0].queued_for is None


def test_a_reader_gets_only_what_is_new_since_its_cursor():
    events = TaskEvents()
    _run(events, "t-1")
    _, cursor, _ = events.since(0)
    assert events.since(cursor) == ([], 3, 0)
    _run(events, "t-2")
    got, cursor, dropped = events.since(cursor)
    assert [e.seq for e in got] == [4, 5, 6] and (cursor, dropped) == (6, 0)


def test_a_reader_that_fell_behind_the_ring_is_told_how_many_it_lost():
    events = TaskEvents(size=5)
    for i in range(4):
        _run(events, f"t-{i}")  # 12 events, the ring keeps 8..12
    got, cursor, dropped = events.since(3)
    assert [e.seq for e in got] == [8, 9, 10, 11, 12] and (cursor, dropped) == (12, 4)
    assert events.since(0)[2] == 7


def test_a_cursor_of_an_earlier_manager_reads_from_the_start():
    events = TaskEvents()
    _run(events, "t-1")
    got, cursor, dropped = events.since(99)
    assert [e.seq for e in got] == [1, 2, 3] and (cursor, dropped) == (3, 0)


def test_events_are_filtered_by_their_tasks_account():
    events = TaskEvents()
    _run(events, "t-a", uid=1000)
    _run(events, "t-b", uid=1001)
    got, cursor, _ = events.since(0, lambda uid: uid == 1001)
    assert {e.task_id for e in got} == {"t-b"} and cursor == 6
    # received before the account was known, seen once it is: the task is theirs from the start
    assert [e.event for e in got] == ["received", "dispatched", "success"]
    events.received("t-c", "f", "carol@example.org")
    assert events.since(6, lambda uid: uid == 1001)[0] == []  # whose it is not known yet: nobody's but root's
    assert [e.task_id for e in events.since(6)[0]] == ["t-c"]


def test_a_failure_keeps_its_sentence_and_a_bounded_traceback():
    events = TaskEvents()
    events.received("t-1", "f", "alice@example.org", "alice", 1000)
    events.dispatched("t-1", "default", "alice", 1000)
    events.traceback("t-1", "Traceback (most recent call last):\n" + "x" * 20_000)
    events.finished("t-1", "failed", "TASK_EXCEPTION", "ValueError: no\nsecond line")
    uid, detail = events.detail("t-1")
    assert uid == 1000 and isinstance(detail, TaskDetail)
    assert detail.event.event == "failed" and detail.error == "ValueError: no\nsecond line"
    assert detail.traceback.startswith("Traceback") and len(detail.traceback) == TRACEBACK_MAX
    assert events.detail("t-unknown") is None


def test_only_the_last_failures_keep_their_detail():
    events = TaskEvents(failures=2)
    for i in range(3):
        _run(events, f"t-{i}", "failed")
    assert events.detail("t-0")[1].error == ""  # its event is still known, its sentence is not
    assert events.detail("t-2")[1].error.startswith("ZeroDivisionError")


def test_a_recovered_task_is_named_at_dispatch_and_a_refused_one_at_its_answer():
    events = TaskEvents()
    events.dispatched("t-1", "default", "alice", 1000, function_name="square", submitter="alice@example.org")
    ev = events.finished("t-2", "failed", "IDENTITY_NOT_MAPPED", "no account", function_name="cube",
                         submitter="bob@example.org")
    assert events.since(0)[0][0].function_name == "square"
    assert (ev.function_name, ev.submitter, ev.ran_for) == ("cube", "bob@example.org", None)
