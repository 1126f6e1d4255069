"""Tasks and results several to a message (gce.transport.bundles), against the session broker and
the SDK tests' real endpoint: once an Executor has heard that the endpoint takes bundles, its burst
goes in bundles and comes back in bundles, every task runs once and every future gets its own
result; a Client, which reads its queue one message at a time, never gets a bundle; bundles made
by a hostile submitter cost only their own bad tasks; and an Executor whose bundle an endpoint
cannot read (an older one took its place) fails those tasks saying so, then sends tasks one by one.
The administrator's spy queues, bound to gce.tasks and gce.results, see a copy of every message
exactly as it was published."""

from __future__ import annotations

import pickle
import struct
import time
import uuid
from collections import Counter
from typing import Any, Iterator

import pika
import pytest

from gce.sdk import Client, Executor, NoTaskQueue, SubmitRefused, TaskFailed, TaskPending, serialize
from gce.sdk.errors import outcome_and_output
from gce.sdk.settings import broker_user
from gce.sdk.tasks import task_message
from gce.transport import bundles, names, payload
from gce.transport.message import ResultHeaders, failure

pytestmark = pytest.mark.broker
BIG = bundles.SMALL + 1  # a result this big goes alone


def echo(i, size, pad=b""):
    if i % 50 == 7:
        raise ValueError(f"no {i}")
    return i, b"x" * size


class Spy:
    """A queue of the administrator's that gets a copy of every message sent through EXCHANGE
    (gce.results by default) with routing key KEY."""

    def __init__(self, admin_url: str, key: str, exchange: str = names.RESULTS_EXCHANGE) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(admin_url))
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.queue_bind(self.queue, exchange, routing_key=key)

    def messages(self) -> Iterator[tuple[str, bytes, dict]]:
        while True:
            method, props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return
            yield props.content_type, body, props.headers or {}, props

    def count(self, magic: bytes, count_header: str, id_of: Any) -> tuple[Counter[str], Counter[str]]:
        """How many messages of each content type came, and how many times each task id did
        (ID_OF(headers, properties): of each entry of a bundle, else of the message)."""
        kinds: Counter[str] = Counter()
        ids: Counter[str] = Counter()
        for ctype, body, headers, props in self.messages():
            kinds[ctype] += 1
            if ctype in (names.RESULT_BUNDLE_CONTENT_TYPE, names.TASK_BUNDLE_CONTENT_TYPE):
                entries, why = bundles.decode(magic, body)
                assert why == "" and headers[count_header] == str(len(entries)) and len(entries) > 1
                assert all(len(payload) <= bundles.SMALL for _, payload in entries)
                ids.update(id_of(h, None) for h, _ in entries)
            else:
                ids[id_of(headers, props)] += 1
        return kinds, ids

    def close(self) -> None:
        self.conn.close()


def test_an_executors_burst_goes_and_comes_back_in_bundles_each_task_run_once(sdk_broker, gce_home):
    n = 1500
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        # The endpoint's status says it reads bundles: read before the first task, so the burst is
        # bundled from its start (the test below learns it from a result instead).
        spy = Spy(sdk_broker.admin_url, ex.result_queue)
        tasks_spy = Spy(sdk_broker.admin_url, sdk_broker.endpoint_id, names.TASKS_EXCHANGE)
        try:
            sizes = [BIG if i % 100 == 3 else i % 200 for i in range(n)]
            # A big argument makes a big task: it goes alone, as a big result does.
            futs = [ex.submit(echo, i, size, b"p" * BIG if i % 100 == 5 else b"") for i, size in enumerate(sizes)]
            for i, fut in enumerate(futs):
                if i % 50 == 7:
                    exc = fut.exception(timeout=120)
                    assert isinstance(exc, ValueError) and str(exc) == f"no {i}"
                else:
                    assert fut.result(timeout=120) == (i, b"x" * sizes[i])
            kinds, answered = spy.count(bundles.RESULTS, "results",
                                        lambda h, props: ResultHeaders.from_amqp(None, h).task_id)
            task_kinds, sent = tasks_spy.count(bundles.TASKS, "tasks",
                                               lambda h, props: props.message_id if props else h["task-id"])
        finally:
            spy.close()
            tasks_spy.close()
    assert set(answered.values()) == {1} and set(answered) == {f.task_id for f in futs}  # each once
    assert kinds[names.RESULT_BUNDLE_CONTENT_TYPE] > 0
    assert kinds[names.RESULT_CONTENT_TYPE] >= n // 100  # the big ones went alone
    assert sum(kinds.values()) < n / 2, kinds  # far fewer messages than results
    assert task_kinds[names.TASK_BUNDLE_CONTENT_TYPE] > 0
    assert set(sent.values()) == {1} and set(sent) == {f.task_id for f in futs}  # each sent once
    assert task_kinds[names.TASK_CONTENT_TYPE] >= n // 100  # the big ones went alone
    assert sum(task_kinds.values()) < n / 2, task_kinds


def test_a_clients_tasks_are_answered_one_message_each(sdk_broker, gce_home, monkeypatch):
    monkeypatch.setenv("GCE_BROKER_URL", sdk_broker.user_url)
    with Client() as c:
        spy = Spy(sdk_broker.admin_url, c.result_queue)
        try:
            fid = c.register_function(echo)
            ids = [c.run(i, 10, endpoint_id=sdk_broker.endpoint_id, function_id=fid) for i in range(40)]
            for i, tid in enumerate(ids):
                for _ in range(600):
                    try:
                        value = c.get_result(tid)
                        break
                    except TaskPending:
                        time.sleep(0.05)
                    except ValueError as e:  # the task's own error
                        value = e
                        break
                if i % 50 == 7:
                    assert isinstance(value, ValueError) and str(value) == f"no {i}"
                else:
                    assert value == (i, b"x" * 10)
            kinds = Counter(ctype for ctype, _, _, _ in spy.messages())
        finally:
            spy.close()
    assert kinds == {names.RESULT_CONTENT_TYPE: 40}


def triple(x):
    return 3 * x


def _results_of(ch, queue: str, wanted: set[str], timeout: float = 60) -> dict[str, tuple[ResultHeaders, bytes]]:
    got: dict[str, tuple[ResultHeaders, bytes]] = {}
    deadline = time.monotonic() + timeout
    while not wanted <= set(got) and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        assert props.content_type == names.RESULT_CONTENT_TYPE  # these tasks did not ask for bundles
        rh = ResultHeaders.from_amqp(props.correlation_id, props.headers)
        got[rh.task_id] = (rh, body)
    return got


def test_a_hostile_bundle_costs_only_its_own_bad_tasks(sdk_broker, gce_home):
    """Bundles made by hand, as a hostile or buggy submitter would: each readable task is taken as
    if it came alone (a bad one is answered BAD_MESSAGE under its own id), what cannot be read is
    dropped with a warning, and the endpoint goes on answering."""
    user = broker_user(sdk_broker.user_url)
    conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.user_url))
    ch = conn.channel()
    reply_to = names.result_queue(user, "hostile-bundles")
    ch.queue_declare(reply_to, exclusive=True)
    ch.queue_bind(reply_to, names.RESULTS_EXCHANGE, routing_key=reply_to)
    kind, blob = serialize.serialize_function(triple)
    fid = serialize.function_id_of(kind, blob)

    def task(x: int) -> tuple[dict, bytes]:
        tid, body, props = task_message(kind, blob, fid, (x,), {}, user=user, reply_to=reply_to,
                                        user_endpoint_config={}, resource_specification={},
                                        max_payload_bytes=1 << 20)
        return {**props.headers, "task-id": tid}, body

    def publish(body: bytes) -> None:
        ch.basic_publish(names.TASKS_EXCHANGE, sdk_broker.endpoint_id, body, pika.BasicProperties(
            message_id=str(uuid.uuid4()), user_id=user, reply_to=reply_to, delivery_mode=2,
            content_type=names.TASK_BUNDLE_CONTENT_TYPE, headers={"gce-protocol": names.PROTOCOL_VERSION}))

    try:
        good = [task(x) for x in range(5)]
        wrong_fid = ({**task(100)[0], "function-id": "f" * 63 + "g"}, task(100)[1])
        not_a_uuid = ({**task(101)[0], "task-id": "not-a-uuid"}, task(101)[1])
        no_id = ({k: v for k, v in task(102)[0].items() if k != "task-id"}, task(102)[1])
        publish(bundles.encode(bundles.TASKS, [good[0], wrong_fid, good[1], not_a_uuid, no_id, good[2]]))
        cut = bundles.encode(bundles.TASKS, [good[3], task(103)])
        publish(cut[:-10])  # the second task cut short: the first is taken
        publish(bundles.TASKS + struct.pack("!I", 2**32 - 1) + b"{}")  # headers of 4 GiB, it says
        nested = b"[" * 50_000 + b"]" * 50_000
        publish(bundles.TASKS + struct.pack("!I", len(nested)) + nested + struct.pack("!I", 0))
        publish(b"not a bundle at all")
        publish(bundles.encode(bundles.TASKS, [good[4]]))  # after all that: still answered
        ids = [h["task-id"] for h, _ in good]
        got = _results_of(ch, reply_to, {*ids, wrong_fid[0]["task-id"], "not-a-uuid"})
        for x, tid in enumerate(ids):
            rh, body = got[tid]
            assert outcome_and_output(rh, body)[:2] == (True, 3 * x), rh
        rh, _ = got[wrong_fid[0]["task-id"]]
        assert (rh.status, rh.error_code) == ("failed", "BAD_MESSAGE")
        assert "'function-id' header is not a sha256 hex digest" in rh.error_message
        rh, _ = got["not-a-uuid"]
        assert rh.error_code == "BAD_MESSAGE" and "is not a UUID" in rh.error_message
        time.sleep(0.5)
        assert set(got) == {*ids, wrong_fid[0]["task-id"], "not-a-uuid"}  # nothing for what had no id
    finally:
        conn.close()


def test_a_bundle_an_endpoint_cannot_read_fails_its_tasks_saying_so_and_later_tasks_go_alone(
        sdk_broker, gce_home, spy):
    """The test plays the endpoint (the spy endpoint has no manager): its first answer says it reads
    bundles, then it answers a bundle as a manager of an earlier version does, which reads one task
    per message: refused as a task with no function-id, under the bundle's message id."""
    endpoint = sdk_broker.spy_endpoint_id
    admin = pika.BlockingConnection(pika.URLParameters(sdk_broker.admin_url))
    ach = admin.channel()

    def answer(props: Any, rh: ResultHeaders, body: bytes = b"", reads_bundles: bool = False) -> None:
        headers = rh.amqp_headers()
        if not reads_bundles:  # an older manager's answer says nothing of bundles
            del headers[bundles.TASK_BUNDLES_HEADER]
        ach.basic_publish(names.RESULTS_EXCHANGE, props.reply_to, body, pika.BasicProperties(
            correlation_id=rh.task_id, headers=headers, content_type=names.RESULT_CONTENT_TYPE))

    ex = Executor(endpoint_id=endpoint, broker_url=sdk_broker.user_url)
    try:  # nothing answers its last tasks: the Executor must not wait for them, whatever fails here
        first = ex.submit(triple, 1)
        [(props, _)] = spy.take(1)
        answer(props, ResultHeaders(props.message_id, endpoint, "success"), payload.pack_ok(pickle.dumps(3)),
               reads_bundles=True)
        assert first.result(timeout=30) == 3
        futs = {}
        for x in range(40):
            fut = ex.submit(triple, x)
            futs[fut.task_id] = fut
        bundled: list[str] = []
        alone: list[str] = []
        while len(bundled) + len(alone) < len(futs):
            [(props, body)] = spy.take(1, timeout=30)
            if props.content_type == names.TASK_BUNDLE_CONTENT_TYPE:
                tasks, _ = bundles.decode(bundles.TASKS, body)
                bundled += [h["task-id"] for h, _ in tasks]
                answer(props, failure(props.message_id, endpoint, "BAD_MESSAGE",
                                      "the task message has no 'function-id' header"))
            else:
                alone.append(props.message_id)
                answer(props, ResultHeaders(props.message_id, endpoint, "success"),
                       payload.pack_ok(pickle.dumps(0)))
        assert bundled, "the burst went in no bundle"
        for tid in bundled:
            with pytest.raises(TaskFailed) as failed:
                futs[tid].result(timeout=30)
            assert failed.value.code == "BAD_MESSAGE"
            assert "could not read the bundle of tasks this task was sent in (the task message has no " \
                   "'function-id' header)" in failed.value.message
            assert "The task did not run; submit it again" in failed.value.message
        for tid in alone:
            assert futs[tid].result(timeout=30) == 0
        again = [ex.submit(triple, x) for x in range(20)]
        kinds = {props.content_type for props, _ in spy.take(20, timeout=30)}
        assert kinds == {names.TASK_CONTENT_TYPE}  # one per message from now on
        ex.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in again)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
        admin.close()


@pytest.mark.parametrize("where, error", [("unstarted", NoTaskQueue), ("forbidden", SubmitRefused)])
def test_a_bundle_the_broker_refuses_or_returns_fails_each_of_its_tasks(sdk_broker, gce_home, where, error):
    """No queue is bound for the endpoint (the broker returns the bundle), or the submitter may not
    send to it (the broker closes the channel): each task of each bundle fails as it would alone."""
    endpoint = {"unstarted": sdk_broker.unstarted_endpoint_id, "forbidden": sdk_broker.forbidden_endpoint_id}[where]
    with Executor(endpoint_id=endpoint, broker_url=sdk_broker.user_url) as ex:
        ex._link.bundle_tasks_to(endpoint)  # as if its status had said that it reads bundles
        futs = [ex.submit(triple, i) for i in range(200)]
        for fut in futs:
            with pytest.raises(error):
                fut.result(timeout=30)
        assert any(fut._bundle for fut in futs)  # some went in bundles
        ex.endpoint_id = sdk_broker.endpoint_id
        assert ex.submit(triple, 2).result(timeout=30) == 6  # the link goes on


def test_tasks_reach_the_broker_in_the_order_they_were_submitted_bundled_or_not(sdk_broker, gce_home, spy):
    """Big tasks (alone) among small ones (bundled) to one endpoint: the messages on its queue hold
    the tasks in the order of their submits, a big one never overtaking the bundle before it."""
    endpoint = sdk_broker.spy_endpoint_id
    ex = Executor(endpoint_id=endpoint, broker_url=sdk_broker.user_url)
    try:  # nothing answers these tasks: the Executor must not wait for them, whatever fails here
        ex._link.bundle_tasks_to(endpoint)  # as if its status had said that it reads bundles
        futs = [ex.submit(echo, i, 0, b"p" * BIG if i % 25 == 24 else b"") for i in range(300)]
        order: list[str] = []
        kinds: Counter[str] = Counter()
        while len(order) < len(futs):
            [(props, body)] = spy.take(1, timeout=30)
            kinds[props.content_type] += 1
            if props.content_type == names.TASK_BUNDLE_CONTENT_TYPE:
                order += [h["task-id"] for h, _ in bundles.decode(bundles.TASKS, body)[0]]
            else:
                order.append(props.message_id)
        assert order == [f.task_id for f in futs]
        assert kinds[names.TASK_BUNDLE_CONTENT_TYPE] > 0 and kinds[names.TASK_CONTENT_TYPE] >= 12
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
