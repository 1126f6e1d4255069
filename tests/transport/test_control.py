"""Control messages as the manager reads them: refused with a sentence before anything is trusted."""

from __future__ import annotations

import json
import uuid

import pytest

from gce.transport import control
from gce.transport.message import BadMessage

ALICE_QUEUE = "gce.results.alice.control1"


def _parse(**over):
    task = str(uuid.uuid4())
    args = {"message_id": str(uuid.uuid4()), "user_id": "alice", "reply_to": ALICE_QUEUE,
            "headers": control.request_headers(control.CANCEL, [task, task])}
    args.update(over)
    return control.parse_request(args["message_id"], args["user_id"], args["reply_to"], args["headers"])


def test_a_request_names_its_asker_its_kind_and_each_task_once():
    req = _parse()
    assert (req.kind, req.user_id, req.reply_to, len(req.task_ids)) == ("cancel", "alice", ALICE_QUEUE, 1)
    assert control.is_control(control.request_headers(control.STATE, list(req.task_ids)))
    assert not control.is_control({"function-id": "x"}) and not control.is_control(None)


@pytest.mark.parametrize("over, words", [
    ({"user_id": None}, "has no user_id"),
    ({"reply_to": "gce.results.bob.x"}, "not one of the asker's own result queues"),
    ({"message_id": "nope"}, "is not a UUID"),
    ({"headers": {"gce-protocol": 1, "gce-control": "explode", "task-ids": "[]"}}, "not one of ('cancel', 'state')"),
    ({"headers": {"gce-protocol": 2, "gce-control": "cancel", "task-ids": "[]"}}, "unsupported protocol version 2"),
    ({"headers": {"gce-protocol": 1, "gce-control": "state", "task-ids": "[]"}}, "a JSON list of 1 to 1000"),
    ({"headers": {"gce-protocol": 1, "gce-control": "state", "task-ids": "[[[["}}, "not valid JSON"),
    ({"headers": {"gce-protocol": 1, "gce-control": "state", "task-ids": json.dumps(["x"])}}, "'x' is not a UUID"),
    ({"headers": {"gce-protocol": 1, "gce-control": "state",
                  "task-ids": json.dumps([str(uuid.uuid4())] * 1001)}}, "1 to 1000"),
])
def test_a_bad_request_is_refused_saying_why(over, words):
    with pytest.raises(BadMessage, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        _parse(**over)


def test_an_answer_is_checked_before_the_sdk_reads_it():
    body = control.answer_body("r", "state", {"t": {"state": "running", "since": 1.0}})
    assert control.parse_answer(body)["tasks"] == {"t": {"state": "running", "since": 1.0}}
    for bad in (b"not json", b"[]", b'{"tasks": 3}', b"[" * 100 + b"]" * 100):
        with pytest.raises(ValueError):
            control.parse_answer(bad)
