"""The user endpoint's own deadline for tasks with a time limit (gce.uep.deadlines), and the limit
a task's resource specification carries (gce.uep.pools.split_spec)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gce.transport import frames
from gce.transport.message import TaskHeaders
from gce.transport.payload import KIND_SOURCE, function_id_of, pack_task
from gce.uep.deadlines import Deadlines, Limited
from gce.uep.pools import split_spec
from tests.uep.uep_process import UepProcess


def test_a_task_is_answered_at_its_limit_plus_the_grace_counted_from_when_a_worker_began_it():
    began: dict[str, float] = {}
    answered: list[Limited] = []
    d = Deadlines(began.get, answered.append, grace=2)
    d.add("t", 1)
    handed = d.claim("t")
    d.add("t", 1)
    assert d.check(now=handed.handed_at + 100) == [] and answered == []  # never began: waits, however long
    began["t"] = 1000.0
    assert d.check(now=1002.9) == []
    assert [t.task_id for t in d.check(now=1003.0)] == ["t"] and [t.task_id for t in answered] == ["t"]
    assert d.overdue == 1
    assert d.claim("t") is None  # its outcome, coming later, is not answered again
    assert d.check(now=2000) == [] and len(answered) == 1


def test_past_limit_counts_from_the_hand_over_when_the_engine_cannot_tell():
    d = Deadlines(lambda task_id: None, lambda task: None)
    d.add("t", 5)
    task = d.claim("t")
    assert not d.past_limit(task, now=task.handed_at + 4.9)
    assert d.past_limit(task, now=task.handed_at + 5)
    answer = task.answer("ep", "its worker was killed")
    assert answer.error_code == "TIMEOUT" and "time limit of 5 s: its worker was killed (its walltime" in \
        answer.error_message


def test_split_spec_takes_the_walltime_out_and_refuses_one_that_is_not_a_time():
    assert split_spec({"walltime": 2, "num_nodes": 1}) == ({"num_nodes": 1}, 2.0)
    assert split_spec({}) == ({}, None)
    for bad in ("60", True, 0, -1, math.nan, math.inf, [1]):
        with pytest.raises(ValueError, match=r"resource_specification\['walltime'\] must be a positive"):
            split_spec({"walltime": bad})


def test_a_task_whose_walltime_is_not_a_time_is_answered_bad_message(tmp_path: Path):
    uep = UepProcess({"type": "ThreadPoolEngine", "max_workers": 1}, tmp_path)
    try:
        blob = b"f\ndef f():\n    return 1\n"
        th = TaskHeaders(task_id="bad-walltime", user_id="alice", reply_to="r", serializer="source",
                         function_id=function_id_of(KIND_SOURCE, blob), resource_specification={"walltime": "1h"})
        uep.send(frames.TASK, {"task": th.to_dict()}, pack_task(KIND_SOURCE, blob, b"\x80\x04\x95"))
        _, header, _ = uep.wait_for(lambda k, h: k == frames.RESULT, 30)
    finally:
        uep.close()
    assert header["task_id"] == "bad-walltime" and header["error_code"] == "BAD_MESSAGE"
    assert "walltime'] must be a positive, finite number of seconds, not '1h'" in header["error_message"]
