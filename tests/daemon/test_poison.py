"""One message can only ever harm itself: poison and fuzzed task messages against a real manager.

Each test publishes hostile messages with a real broker account (so the broker's own user_id
check holds, as in production), then proves that the endpoint stayed on the broker: the next
good task is answered within seconds, the manager never reconnected, and every message that
named one of its sender's own queues got exactly one answer, while another user's queue got none.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
import uuid
from decimal import Decimal

import pytest

from gce.daemon import control
from gce.transport import limits
from tests.endpoint import RawClient

pytestmark = pytest.mark.broker
SEED = 20261206
ANSWER_WITHIN = 10.0  # seconds for a good task after the poison


def nap(i):
    return i


@contextlib.contextmanager
def deep_recursion():
    """pika encodes header tables recursively: room to publish what an attacker would."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def nested_table(depth: int) -> dict:
    top: dict = {}
    t = top
    for _ in range(depth):
        t["k"] = {}
        t = t["k"]
    return top


def nested_array(depth: int) -> list:
    top: list = []
    a = top
    for _ in range(depth):
        a.append([])
        a = a[0]
    return top


def good_task_answered(raw: RawClient) -> float:
    """Seconds until a well-formed task is answered (it must succeed)."""
    tid, headers, body = raw.task(nap, (7,))
    t0 = time.monotonic()
    raw.publish(body, tid, headers)
    got = raw.results(1, timeout=ANSWER_WITHIN)
    assert tid in got and got[tid].status == "success", f"the good task was not answered: {got}"
    return time.monotonic() - t0


def connections_made(ep) -> int:
    return ep.log().count("connected to the broker node")


def test_poison_headers_are_answered_bad_message_and_the_next_task_runs_within_seconds(make_endpoint):
    ep = make_endpoint(engine="thread")
    ep.start()
    pid = ep.manager_pid()
    raw = RawClient(ep.user_url, ep.endpoint_id)
    poison = {
        "config 950 deep": lambda h: {**h, "user-endpoint-config": '{"a": ' * 950 + "1" + "}" * 950},
        "config 30,000 deep": lambda h: {**h, "user-endpoint-config": "[" * 30_000 + "]" * 30_000},
        "spec 30,000 deep": lambda h: {**h, "resource-specification": "[" * 30_000 + "]" * 30_000},
        "table 600 deep": lambda h: {**h, "x-deep": nested_table(600)},
        "table 18,000 deep": lambda h: {**h, "x-deep": nested_table(18_000)},  # fills a 128 KiB frame
        "array 25,000 deep": lambda h: {**h, "x-deep": nested_array(25_000)},
    }
    sent = {}
    with deep_recursion():
        for name, make in poison.items():
            tid, headers, body = raw.task(nap, (1,))
            raw.publish(body, tid, make(headers))
            sent[tid] = name
    answers = raw.results(len(sent), timeout=30)
    assert {sent[t]: r.error_code for t, r in answers.items()} == {name: "BAD_MESSAGE" for name in poison}
    assert all("nests more than" in answers[t].error_message for t in sent), answers
    assert good_task_answered(raw) < ANSWER_WITHIN
    raw.close()
    assert ep.manager_pid() == pid and connections_made(ep) == 1, ep.log()[-3000:]
    assert control.request(ep.paths, "status")["tasks"]["malformed"] == len(poison)


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["str", "bytes", "int", "decimal", "bool", "none"] + (["dict", "list"] if depth < 6 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return "".join(rng.choice("ab{}[]\"\\:,é\x00 ") for _ in range(rng.randrange(0, 40)))
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    if kind == "int":
        return rng.choice([0, -1, 2**31 - 1, -(2**63), rng.randrange(-1000, 1000)])
    if kind == "decimal":  # pika encodes no floats
        return rng.choice([Decimal("0.5"), Decimal(-10) ** 9, Decimal(0)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "dict":
        return {str(rng.randrange(1000)): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _mutate(rng: random.Random, headers: dict) -> dict:
    h = dict(headers)
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice(sorted(h) + ["x-extra"])
        what = rng.randrange(8)
        if what == 0:
            h.pop(key, None)
        elif what == 1:
            h[key] = _random_value(rng)
        elif what == 2:
            h[key] = nested_table(rng.choice([5, 50, 999, 5000]))
        elif what == 3:
            depth = rng.choice([33, 500, 20_000])
            h[rng.choice(["user-endpoint-config", "resource-specification"])] = "[" * depth + "]" * depth
        elif what == 4:
            h[key] = rng.choice(["{", "[1,", '{"a": NaN}', '"\\ud800"', "1e999", "", "null", "{}" * 3])
        elif what == 5:
            h[key] = "y" * rng.choice([1000, 66_000])
        elif what == 6:
            h["gce-protocol"] = _random_value(rng)
        else:
            h["submitted-at"] = rng.choice(["nan", "-inf", "1e999", "0x10", "", "1" * 400])
    return h


def test_fuzzed_messages_never_take_the_endpoint_off_the_broker(make_endpoint):
    ep = make_endpoint(engine="thread", others=("bob",))
    ep.start()
    pid = ep.manager_pid()
    rng = random.Random(SEED)
    alice = RawClient(ep.user_url, ep.endpoint_id)
    bob = RawClient(ep.urls["bob"], ep.endpoint_id, user="bob")
    answerable = set()
    with deep_recursion():
        for i in range(300):
            tid, headers, body = alice.task(nap, (i,))
            message_id = rng.choice([tid] * 6 + ["", f"not-a-uuid-{i}", str(uuid.uuid4()).upper()])
            reply_to = rng.choice(["__mine__"] * 5 + [bob.queue, "gce.results.bob.x", "gce.results.alice", None])
            user_id = rng.choice(["__me__"] * 9 + [None])
            body = rng.choice([body, body, b"", bytes(rng.randrange(256) for _ in range(rng.randrange(2000)))])
            mutated = _mutate(rng, headers)
            while limits.headers_size(mutated, limit=10**9, depth=10**6) > 110_000:  # fits in one frame
                mutated = _mutate(rng, headers)
            alice.publish(body, message_id or None, mutated, user_id=user_id, reply_to=reply_to)
            if message_id and reply_to == "__mine__" and user_id == "__me__":
                answerable.add(message_id[:100])
    answers = alice.results(len(answerable), timeout=60)
    assert set(answers) == answerable, f"missing: {sorted(answerable - set(answers))[:5]}"
    assert all(r.status == "failed" and r.error_code and r.error_message for r in answers.values()
               if r.status != "success")
    extra = alice.results(1, timeout=2)  # exactly once: nothing more arrives
    assert not extra
    assert not bob.results(1, timeout=1), "a result went to another user's queue"
    assert good_task_answered(alice) < ANSWER_WITHIN
    alice.close()
    bob.close()
    assert ep.manager_pid() == pid and connections_made(ep) == 1, ep.log()[-3000:]
    status = control.request(ep.paths, "status")
    assert status["state"] == "running" and status["tasks"]["malformed"] > 100
    assert "Traceback" not in ep.log(), ep.log()[-3000:]
    json.dumps(status)  # the status stays serialisable whatever was sent


def ran(marker):
    from pathlib import Path

    Path(marker).write_text("ran")
    return "alice's output"


def test_a_task_naming_another_users_queue_is_refused_and_never_runs(make_endpoint, tmp_path):
    ep = make_endpoint(engine="thread", others=("bob",))
    ep.start()
    alice = RawClient(ep.user_url, ep.endpoint_id)
    bob = RawClient(ep.urls["bob"], ep.endpoint_id, user="bob")
    marker = tmp_path / "ran"
    tid, headers, body = alice.task(ran, (str(marker),))
    alice.publish(body, tid, headers, reply_to=bob.queue)
    assert good_task_answered(alice) < ANSWER_WITHIN  # handled in order: the refusal is behind us
    assert not bob.results(1, timeout=2), "alice's task answered into bob's queue"
    assert not marker.exists(), "the task ran"
    assert "is not one of the submitter's own result queues" in ep.log()
    alice.close()
    bob.close()
