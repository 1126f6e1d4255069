"""gce tasks: the latest tasks of a running endpoint, one task's error and traceback, and its errors."""

from __future__ import annotations

import json
import time

import pytest

from gce import __version__
from gce.commands import tasks
from gce.daemon.client import TaskEvent
from tests.commands.helpers import running
from tests.commands.helpers import answering

AT = 1_800_000_000.0
STATUS = {"name": "demo", "state": "running", "gce_version": __version__}
HOSTILE = "[bold red]x[/]"
TRACEBACK = ("Traceback (most recent call last):\n  File \"<x>\", line 2, in boom\n"
             "ZeroDivisionError: division by zero \x1b]0;pwned\x07")


def event(seq: int, task_id: str, ev: str, **fields) -> dict:
    return {"seq": seq, "at": AT + seq, "task_id": task_id, "event": ev, "function_name": "square",
            "submitter": "alice@uni.edu", "local_user": "alice", "uep": "alice/3f2a", **fields}


EVENTS = [
    event(1, "t-1", "received"),
    event(2, "t-2", "received", function_name=HOSTILE),
    event(3, "t-1", "dispatched", queued_for=0.25),
    event(4, "t-2", "dispatched", queued_for=0.5, function_name=HOSTILE),
    event(5, "t-1", "success", queued_for=0.25, ran_for=1.5),
    event(6, "t-2", "failed", queued_for=0.5, ran_for=75.0, code="TASK_EXCEPTION",
          message="ZeroDivisionError: division by zero", function_name=HOSTILE),
    event(7, "t-3", "received", submitter="bob@uni.edu", local_user="bob", uep=""),
]
SNAPSHOT = {"ok": True, "status": STATUS, "events": EVENTS, "cursor": 7, "dropped": 0}
DETAIL = {"ok": True, **EVENTS[5], "error": "ZeroDivisionError: division by zero", "traceback": TRACEBACK}


def typed(events: list[dict]) -> list[TaskEvent]:
    return [TaskEvent.from_dict(e) for e in events]


def clock(seq: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(AT + seq))


def test_latest_keeps_each_tasks_last_event_in_the_order_they_happened():
    assert [(e.task_id, e.event) for e in tasks.latest(typed(EVENTS), failed=False, limit=20)] == [
        ("t-1", "success"), ("t-2", "failed"), ("t-3", "received")]
    assert [e.task_id for e in tasks.latest(typed(EVENTS), failed=False, limit=2)] == ["t-2", "t-3"]
    assert [e.task_id for e in tasks.latest(typed(EVENTS), failed=True, limit=20)] == ["t-2"]


def test_task_rows():
    assert tasks.task_rows(tasks.latest(typed(EVENTS), failed=False, limit=20)) == [
        [clock(5), "t-1", "square", "alice@uni.edu", "alice", "success", "0.2s", "1.5s", "", ""],
        [clock(6), "t-2", HOSTILE, "alice@uni.edu", "alice", "failed", "0.5s", "1m 15s", "TASK_EXCEPTION",
         "ZeroDivisionError: division by zero"],
        [clock(7), "t-3", "square", "bob@uni.edu", "bob", "received", None, None, "", ""],
    ]


def test_gce_tasks_asks_for_a_snapshot_and_prints_the_table(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"snapshot": SNAPSHOT}) as requests:
        result = gce("tasks", "demo")
    assert requests == [{"command": "snapshot", "args": {"since": 0}}]
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "TIME      TASK  FUNCTION        SUBMITTER      USER   STATE     QUEUED FOR  RAN FOR  CODE            MESSAGE",
        f"{clock(5)}  t-1   square          alice@uni.edu  alice  success   0.2s        1.5s     -               -",
        f"{clock(6)}  t-2   [bold red]x[/]  alice@uni.edu  alice  failed    0.5s        1m 15s   TASK_EXCEPTION  "
        "ZeroDivisionError: division by zero",
        f"{clock(7)}  t-3   square          bob@uni.edu    bob    received  -           -        -               -",
    ]


def test_gce_tasks_failed_limit_and_json(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"snapshot": SNAPSHOT}):
        failed = gce("tasks", "demo", "--failed", "--json")
        last = gce("tasks", "demo", "--limit", "1", "--json")
        bad = gce("tasks", "demo", "--limit", "0")
    assert failed.exit_code == 0
    assert json.loads(failed.stdout) == [TaskEvent.from_dict(EVENTS[5]).to_dict()]
    assert [e["task_id"] for e in json.loads(last.stdout)] == ["t-3"]
    assert bad.exit_code == 2


def test_no_tasks_is_said(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"snapshot": {**SNAPSHOT, "events": EVENTS[:1]}}):
        result = gce("tasks", "demo", "--failed")
    assert (result.exit_code, result.stdout) == (0, "endpoint demo has no failed tasks to show\n")


def test_one_task_shows_its_error_and_remote_traceback_literally(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"task": DETAIL}) as requests:
        result = gce("tasks", "demo", "--task", "t-2")
        as_json = gce("tasks", "demo", "--task", "t-2", "--json")
    assert requests[0] == {"command": "task", "args": {"task_id": "t-2"}}
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "task t-2\n"
        f"  function       {HOSTILE}\n"
        "  submitter      alice@uni.edu\n"
        "  local user     alice\n"
        "  user endpoint  alice/3f2a\n"
        f"  state          failed at {clock(6)}\n"
        "  queued for     0.5s\n"
        "  ran for        1m 15s\n"
        "  code           TASK_EXCEPTION\n"
        "  message        ZeroDivisionError: division by zero\n"
        "error:\n"
        "  ZeroDivisionError: division by zero\n"
        "remote traceback:\n"
        "  Traceback (most recent call last):\n"
        "    File \"<x>\", line 2, in boom\n"
        "  ZeroDivisionError: division by zero\n"
    )
    detail = json.loads(as_json.stdout)
    assert (detail["task_id"], detail["traceback"]) == ("t-2", TRACEBACK)  # JSON keeps the text as sent


def test_a_task_the_endpoint_does_not_know(gce, configured):
    paths = configured("demo")
    missing = {"ok": False, "code": "NOT_FOUND", "error": "no task 't-9' among the endpoint's recent tasks"}
    with running(paths), answering(paths, {"task": missing}):
        result = gce("tasks", "demo", "--task", "t-9")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == ("error: no task t-9 on endpoint 'demo': no task 't-9' among the endpoint's recent tasks\n"
                             "hint: gce tasks demo lists the tasks the endpoint still remembers\n")


def test_a_stopped_endpoint_is_exit_3_and_an_unknown_one_78(gce, configured, home):
    configured("demo")
    for args in (["tasks", "demo"], ["tasks", "demo", "--task", "t-1"]):
        stopped = gce(*args)
        assert (stopped.exit_code, stopped.stdout) == (3, "")
        assert stopped.stderr == "error: endpoint 'demo' is not running: it is stopped\nhint: gce start demo --detach\n"
    unknown = gce("tasks", "nope")
    assert (unknown.exit_code, unknown.stdout) == (78, "")


def square(x):
    return x * x


def boom():
    return 1 / 0


@pytest.mark.broker
def test_gce_tasks_of_a_real_endpoint(broker, home, gce_bin):
    from tests.endpoint import Endpoint

    endpoint = Endpoint(broker, home, name="tsk", engine="thread")
    endpoint.start()
    try:
        with endpoint.executor() as ex:
            assert ex.submit(square, 3).result(timeout=60) == 9
            failing = ex.submit(boom)
            with pytest.raises(ZeroDivisionError):
                failing.result(timeout=60)
        listed = gce_bin("tasks", "tsk", "--json")
        failed = gce_bin("tasks", "tsk", "--failed")
        task_id = [e for e in json.loads(listed.stdout) if e["event"] == "failed"][0]["task_id"]
        one = gce_bin("tasks", "tsk", "--task", task_id)
    finally:
        endpoint.stop()
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)
    assert sorted((e["function_name"], e["event"]) for e in events) == [("boom", "failed"), ("square", "success")]
    assert failed.returncode == 0 and len(failed.stdout.splitlines()) == 2 and " boom " in failed.stdout
    assert one.returncode == 0, one.stderr
    assert "  function       boom\n" in one.stdout
    assert "error:\n" in one.stdout and "ZeroDivisionError" in one.stdout
    assert "remote traceback:\n" in one.stdout, one.stdout
    assert ", in boom\n" in one.stdout  # the worker's own frame, as the worker wrote it


def test_a_manager_that_holds_its_lock_but_does_not_answer_is_not_running(gce, configured):
    paths = configured("demo")
    with running(paths):
        for args in (["tasks", "demo"], ["blocks", "demo"]):
            result = gce(*args)
            assert (result.exit_code, result.stdout) == (3, "")
            assert result.stderr == (f"error: endpoint 'demo' is not running: no manager answers on "
                                     f"{paths.control_socket}\nhint: gce start demo\n")
