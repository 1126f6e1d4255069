from __future__ import annotations

import json
import uuid

import pytest

from gce.transport.message import BadMessage, ResultHeaders, TaskHeaders, parse_task

FID = "a" * 64


def _headers(**over):
    th = TaskHeaders(task_id=str(uuid.uuid4()), user_id="alice", reply_to="q", function_id=FID,
                     user_endpoint_config={"k": "v"}, submitted_at=12.5)
    h = th.amqp_headers()
    h.update(over)
    return th, h


def test_a_task_round_trips_through_amqp_headers():
    th, h = _headers()
    got = parse_task(th.task_id, "alice", "q", h)
    assert got == th


@pytest.mark.parametrize(
    "props, headers, why",
    [
        ((None, "alice", "q"), {}, "no message_id"),
        (("not-a-uuid", "alice", "q"), {}, "is not a UUID"),
        ((str(uuid.uuid4()), None, "q"), {}, "no user_id"),
        ((str(uuid.uuid4()), "alice", None), {}, "no reply_to"),
        ((str(uuid.uuid4()), "alice", "q"), None, "no headers"),
        ((str(uuid.uuid4()), "alice", "q"), {"gce-protocol": 99}, "unsupported protocol"),
    ],
)
def test_malformed_properties_are_refused_with_a_reason(props, headers, why):
    if headers == {}:
        headers = _headers()[1]
    with pytest.raises(BadMessage, match=why):
        parse_task(*props, headers)


@pytest.mark.parametrize(
    "over, why",
    [
        ({"function-id": "xyz"}, "sha256"),
        ({"function-id": None}, "no 'function-id'"),
        ({"user-endpoint-config": "{nope"}, "not valid JSON"),
        ({"user-endpoint-config": "[1, 2]"}, "must be a JSON object"),
        ({"resource-specification": "x" * 70000}, "over the 65,536-byte limit"),
        ({"submitted-at": "soon"}, "not a number"),
        ({"serializer": b"\xff\xfe"}, "not UTF-8"),
        ({"python-version": 3.11}, "is not text"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(over, why):
    th, h = _headers(**over)
    if over.get("function-id", "") is None:
        del h["function-id"]
    with pytest.raises(BadMessage, match=why) as info:
        parse_task(th.task_id, "alice", "q", h)
    assert info.value.code == ("PAYLOAD_TOO_LARGE" if "limit" in why else "BAD_MESSAGE")


def test_result_headers_tolerate_missing_and_garbled_fields():
    rh = ResultHeaders.from_amqp("tid", {"status": b"success", "timings": "not json"})
    assert (rh.task_id, rh.status, rh.timings) == ("tid", "success", {})
    full = ResultHeaders("t", "e", "failed", "WORKER_LOST", "boom", {"a": 1})
    assert ResultHeaders.from_amqp(None, full.amqp_headers()) == full
    assert json.loads(full.amqp_headers()["timings"]) == {"a": 1}
