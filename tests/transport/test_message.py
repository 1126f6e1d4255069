from __future__ import annotations

import json
import uuid

import pytest

from gce.transport.message import BadMessage, ResultHeaders, TaskHeaders, parse_task

FID = "a" * 64
Q = "gce.results.alice.q1"  # one of alice's own result queues


def _headers(**over):
    th = TaskHeaders(task_id=str(uuid.uuid4()), user_id="alice", reply_to=Q, function_id=FID,
                     user_endpoint_config={"k": "v"}, submitted_at=12.5)
    h = th.amqp_headers()
    h.update(over)
    return th, h


def test_a_task_round_trips_through_amqp_headers():
    th, h = _headers()
    got = parse_task(th.task_id, "alice", Q, h)
    assert got == th


@pytest.mark.parametrize(
    "props, headers, why",
    [
        ((None, "alice", Q), {}, "no message_id"),
        (("not-a-uuid", "alice", Q), {}, "is not a UUID"),
        (("1C3D1F0E-62B9-4C1A-9F0B-3A1F3E2D4C5B", "alice", Q), {}, "not a UUID in canonical form"),
        (("{1c3d1f0e-62b9-4c1a-9f0b-3a1f3e2d4c5b}", "alice", Q), {}, "not a UUID in canonical form"),
        ((str(uuid.uuid4()), None, Q), {}, "no user_id"),
        ((str(uuid.uuid4()), "alice", None), {}, "no reply_to"),
        ((str(uuid.uuid4()), "alice", Q), None, "no headers"),
        ((str(uuid.uuid4()), "alice", Q), {"gce-protocol": 99}, "unsupported protocol"),
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
        ({"function-name": 7}, "is not text"),
        ({"function-name": "f" * 201}, "'function-name' header is 201 characters long; a function's name may have 200"),
        ({"function-name": "x\x1b]0;pwned\x07"}, "'function-name' header is not plain text"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(over, why):
    th, h = _headers(**over)
    if over.get("function-id", "") is None:
        del h["function-id"]
    with pytest.raises(BadMessage, match=why) as info:
        parse_task(th.task_id, "alice", Q, h)
    assert info.value.code == ("PAYLOAD_TOO_LARGE" if "limit" in why else "BAD_MESSAGE")


def test_the_function_name_travels_as_plain_text_and_is_optional():
    th, h = _headers()
    h["function-name"] = "square"
    assert parse_task(th.task_id, "alice", Q, h).function_name == "square"
    del h["function-name"]  # an SDK from before the header
    assert parse_task(th.task_id, "alice", Q, h).function_name == ""
    named = TaskHeaders(task_id=th.task_id, user_id="alice", reply_to=Q, function_id=FID, function_name="[bold]x[/]")
    assert named.amqp_headers()["function-name"] == "[bold]x[/]"
    assert parse_task(th.task_id, "alice", Q, named.amqp_headers()).function_name == "[bold]x[/]"


def test_result_headers_tolerate_missing_and_garbled_fields():
    rh = ResultHeaders.from_amqp("tid", {"status": b"success", "timings": "not json"})
    assert (rh.task_id, rh.status, rh.timings) == ("tid", "success", {})
    rh = ResultHeaders.from_amqp("tid", {"status": b"failed", "timings": "[" * 100_000 + "]" * 100_000})
    assert rh.timings == {}  # nested beyond reason: no RecursionError in the submitter's process
    full = ResultHeaders("t", "e", "failed", "WORKER_LOST", "boom", {"a": 1})
    assert ResultHeaders.from_amqp(None, full.amqp_headers()) == full
    assert json.loads(full.amqp_headers()["timings"]) == {"a": 1}


def _nested(depth: int, leaf="x"):
    """A JSON text nested DEPTH objects deep, built without recursion."""
    return '{"a": ' * depth + json.dumps(leaf) + "}" * depth


@pytest.mark.parametrize("text", [_nested(33), _nested(950), "[" * 30_000 + "]" * 30_000])
def test_a_deeply_nested_json_header_is_refused_before_it_is_parsed(text):
    for key in ("user-endpoint-config", "resource-specification"):
        th, h = _headers(**{key: text})
        with pytest.raises(BadMessage, match=f"'{key}' header is refused: it nests more than 32 levels") as info:
            parse_task(th.task_id, "alice", Q, h)
        assert info.value.code == "BAD_MESSAGE"


def test_nesting_up_to_the_limit_parses_and_round_trips():
    th, h = _headers(**{"user-endpoint-config": _nested(32)})
    got = parse_task(th.task_id, "alice", Q, h)
    assert json.dumps(got.to_dict()["user_endpoint_config"]) == _nested(32)


def test_brackets_inside_strings_do_not_count_as_nesting():
    th, h = _headers(**{"user-endpoint-config": json.dumps({"script": "[{" * 5000})})
    assert parse_task(th.task_id, "alice", Q, h).user_endpoint_config == {"script": "[{" * 5000}


@pytest.mark.parametrize("depth", [5, 600, 20_000])
def test_nested_amqp_tables_and_arrays_in_headers_are_refused(depth):
    th, h = _headers()
    table: dict = {}
    array: list = []
    t, a = table, array
    for _ in range(depth):
        t["k"] = {}
        t = t["k"]
        a.append([])
        a = a[0]
    for value in (table, array):
        with pytest.raises(BadMessage, match="headers are refused: it nests more than 4 levels"):
            parse_task(th.task_id, "alice", Q, {**h, "extra": value})


def test_headers_too_big_in_all_are_refused_as_too_large():
    th, h = _headers()
    many = {f"x-{i}": "y" * 60_000 for i in range(5)}
    with pytest.raises(BadMessage, match="headers add up to more than") as info:
        parse_task(th.task_id, "alice", Q, {**h, **many})
    assert info.value.code == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("reply_to", [
    "gce.results.bob.q1",  # another user's queue
    "gce.results.alice.x.q1",  # user alice.x's queue, or a queue alice may not own
    "gce.results.alice.",  # no queue id
    "gce.results.alice",
    "gce.ep.00000000-0000-0000-0000-000000000000.tasks",  # anything else the endpoint may publish to
    "amq.rabbitmq.reply-to",
    "gce.results.alice." + "x" * 200,
])
def test_reply_to_must_be_one_of_the_submitters_own_result_queues(reply_to):
    th, h = _headers()
    with pytest.raises(BadMessage, match=r"is not one of the submitter's own result queues \('gce.results.alice.<id>'\)"):
        parse_task(th.task_id, "alice", reply_to, h)


def test_a_user_whose_name_extends_another_cannot_name_its_queues():
    th, h = _headers()
    with pytest.raises(BadMessage, match="result queues"):
        parse_task(th.task_id, "alice", "gce.results.alice.x.q1", h)
    assert parse_task(th.task_id, "alice.x", "gce.results.alice.x.q1", h).reply_to == "gce.results.alice.x.q1"


def test_the_spool_copy_of_a_task_replays_with_fields_it_does_not_know():
    th, _ = _headers()
    assert TaskHeaders.from_dict({**th.to_dict(), "added_later": 1}) == th


GOOD_RESULT = {"task_id": "t1", "endpoint_id": "forged", "status": "success", "error_code": "",
               "error_message": "", "timings": {"started": 1.0}}


def test_a_result_from_a_user_endpoint_takes_the_managers_endpoint_id():
    rh = ResultHeaders.from_uep(GOOD_RESULT, "the-real-one")
    assert (rh.task_id, rh.endpoint_id, rh.status, rh.timings) == ("t1", "the-real-one", "success", {"started": 1.0})


@pytest.mark.parametrize("header, why", [
    ([1, 2], "not an object"),
    ({**GOOD_RESULT, "extra": 1}, "unknown fields"),
    ({**GOOD_RESULT, "task_id": 5}, "task_id is not a task id"),
    ({**GOOD_RESULT, "task_id": "t" * 65}, "task_id is not a task id"),
    ({**GOOD_RESULT, "status": "great"}, "neither 'success' nor 'failed'"),
    ({**GOOD_RESULT, "error_message": {"a": 1}}, "not text of a sensible size"),
    ({**GOOD_RESULT, "error_code": "x" * 65}, "not text of a sensible size"),
    ({**GOOD_RESULT, "timings": {"a": "soon"}}, "timings are not a small object of numbers"),
    ({**GOOD_RESULT, "timings": {str(i): i for i in range(17)}}, "timings are not a small object"),
])
def test_a_malformed_result_from_a_user_endpoint_is_refused(header, why):
    with pytest.raises(BadMessage, match=why):
        ResultHeaders.from_uep(header, "e")


def test_to_dict_gives_what_dataclasses_asdict_gives_and_a_result_copies_its_timings():
    import dataclasses

    th = TaskHeaders(task_id=str(uuid.uuid4()), user_id="alice", reply_to="gce.results.alice.1", function_id="f" * 64,
                     user_endpoint_config={"a": [1, {"b": 2}]}, resource_specification={"walltime": 5},
                     max_retries_on_system_failure=2, result_bundles=True)
    assert th.to_dict() == dataclasses.asdict(th)
    assert TaskHeaders.from_dict(json.loads(json.dumps(th.to_dict()))) == th
    rh = ResultHeaders("t1", "ep", "failed", "USER_EXCEPTION", "boom", {"started": 1.0})
    d = rh.to_dict()
    assert d == dataclasses.asdict(rh)
    d["timings"]["finished"] = 2.0  # the spool's copy is its own
    assert rh.timings == {"started": 1.0}
