"""The typed blocks, nodes and task events of `gce monitor`'s data: JSON round trips, tolerance of
other gce versions, refusal of values of the wrong type (naming the field)."""

from __future__ import annotations

import json

import pytest

from gce.daemon.activity import (BlockStatus, BlockTransition, NodeStatus, NodeTask, StatusError, TaskDetail,
                                 TaskEvent)
from gce.daemon.status import EndpointStatus, EngineStatus, Snapshot, UepStatus

BLOCK = {"block_id": "0", "job_id": "1234", "provider": "SlurmProvider", "state": "running", "raw_state": "RUNNING",
         "reason": "", "submitted_at": 1796598123.5, "updated_at": 1796598130.0, "walltime": "00:10:00",
         "walltime_left": 512.0, "workers": 2,
         "transitions": [{"at": 1796598123.5, "state": "pending", "raw_state": "PENDING", "reason": "Priority"},
                         {"at": 1796598130.0, "state": "running", "raw_state": "RUNNING", "reason": ""}],
         "submit_script": "/home/a/.gce/x/submit_scripts/parsl.htex.block-0.123.submit",
         "stdout": "/home/a/.gce/x/submit_scripts/parsl.htex.block-0.123.stdout", "stderr": None}
NODE = {"manager": "a1b2c3", "host": "node01", "block_id": "0", "workers": 4, "busy": 1, "idle": 3,
        "last_heartbeat": 1796598131.0, "python": "3.11.2", "parsl": "2025.1.6",
        "tasks": [{"task_id": "5f0e0b7c-0000-4000-8000-000000000001", "started_at": 1796598131.0}]}
EVENT = {"seq": 17, "at": 1796598132.0, "task_id": "5f0e0b7c-0000-4000-8000-000000000001", "event": "failed",
         "function_name": "square", "submitter": "alice@example.org", "local_user": "alice", "uep": "alice/3f2a",
         "code": "TASK_EXCEPTION", "message": "ZeroDivisionError: division by zero", "queued_for": 0.5,
         "ran_for": 1.25}


def test_a_block_reads_every_field_of_the_contract():
    block = BlockStatus.from_dict(BLOCK)
    assert block.job_id == "1234" and block.walltime_left == 512.0 and block.stderr is None
    assert block.transitions == (BlockTransition(1796598123.5, "pending", "PENDING", "Priority"),
                                 BlockTransition(1796598130.0, "running", "RUNNING", ""))
    assert block.to_dict() == BLOCK


def test_a_node_and_the_tasks_its_workers_run_survive_json():
    node = NodeStatus.from_dict(json.loads(json.dumps(NODE)))
    assert node.tasks == (NodeTask("5f0e0b7c-0000-4000-8000-000000000001", 1796598131.0),)
    assert node.to_dict() == NODE


def test_an_event_and_a_task_detail_survive_json():
    event = TaskEvent.from_dict(EVENT)
    assert event.to_dict() == EVENT
    detail = TaskDetail(event, "the function raised", "Traceback (most recent call last):\n  ...")
    data = json.loads(json.dumps(detail.to_dict()))
    assert data["seq"] == 17 and data["traceback"].startswith("Traceback")
    assert TaskDetail.from_dict(data) == detail


def test_the_engine_carries_versions_blocks_and_nodes_and_reports_only_what_it_knows():
    data = {"type": "HighThroughputEngine", "blocks": 1, "versions": {"python": "3.11.2", "parsl": "2025.1.6",
                                                                        "gce": "0.1.0"},
            "block_list": [BLOCK], "nodes": [NODE]}
    engine = EngineStatus.from_dict(data)
    assert engine.block_list == (BlockStatus.from_dict(BLOCK),) and engine.nodes == (NodeStatus.from_dict(NODE),)
    assert engine.versions == {"python": "3.11.2", "parsl": "2025.1.6", "gce": "0.1.0"}
    assert engine.to_dict() == data
    assert EngineStatus(type="ThreadPoolEngine").to_dict() == {"type": "ThreadPoolEngine"}


def test_missing_fields_take_their_defaults_and_unknown_ones_are_ignored():
    assert BlockStatus.from_dict({"block_id": "3", "cgroup": "x"}) == BlockStatus(block_id="3")
    assert NodeStatus.from_dict({}) == NodeStatus()
    assert TaskEvent.from_dict({"seq": 2, "gpu": 1}) == TaskEvent(seq=2)


def test_a_snapshot_survives_json_both_ways():
    status = EndpointStatus(name="demo", state="running", user_endpoints=(
        UepStatus("default", 7, "running", engine=EngineStatus.from_dict({"block_list": [BLOCK], "nodes": [NODE]})),))
    snap = Snapshot(status, (TaskEvent.from_dict(EVENT),), cursor=17, dropped=3)
    data = json.loads(json.dumps(snap.to_dict()))
    assert list(data) == ["status", "events", "cursor", "dropped"]
    assert Snapshot.from_dict(data) == snap
    assert Snapshot.from_dict({"status": {"name": "demo"}}) == Snapshot(EndpointStatus(name="demo", protocol=0))


@pytest.mark.parametrize("read, data, field", [
    (BlockStatus.from_dict, {**BLOCK, "workers": "2"}, "block.workers"),
    (BlockStatus.from_dict, {**BLOCK, "transitions": [{"at": "noon"}]}, "block.transitions[0].at"),
    (NodeStatus.from_dict, {**NODE, "busy": True}, "node.busy"),
    (NodeStatus.from_dict, {**NODE, "tasks": {"a": 1}}, "node.tasks"),
    (TaskEvent.from_dict, {**EVENT, "seq": 1.5}, "event.seq"),
    (lambda d: EngineStatus.from_dict(d), {"block_list": [{"job_id": 1234}]}, "engine.block_list[0].job_id"),
    (lambda d: EngineStatus.from_dict(d), {"versions": {"python": 3}}, "engine.versions.python"),
    (lambda d: Snapshot.from_dict(d), {"events": [{"event": 1}]}, "events[0].event"),
    (lambda d: Snapshot.from_dict(d), {"cursor": "9"}, "cursor"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_its_field(read, data, field):
    with pytest.raises(StatusError) as e:
        read(data)
    assert e.value.field == field
