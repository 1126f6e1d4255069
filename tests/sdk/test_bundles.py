"""Results several to a message (gce.transport.bundles), against the session broker and the
SDK tests' real endpoint: an Executor's burst comes back in bundles and every future gets its own
result, once; a Client, which reads its queue one message at a time, never gets a bundle. The
administrator's spy queue, bound to gce.results with the submitter's queue as key, sees a copy of
every result message exactly as the endpoint published it."""

from __future__ import annotations

import time
from collections import Counter
from typing import Iterator

import pika
import pytest

from gce.sdk import Client, Executor, TaskPending
from gce.transport import bundles, names
from gce.transport.message import ResultHeaders

pytestmark = pytest.mark.broker
BIG = bundles.SMALL + 1  # a result this big goes alone


def echo(i, size):
    if i % 50 == 7:
        raise ValueError(f"no {i}")
    return i, b"x" * size


class Spy:
    """A queue of the administrator's that gets a copy of every result sent to QUEUE."""

    def __init__(self, admin_url: str, queue: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(admin_url))
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.queue_bind(self.queue, names.RESULTS_EXCHANGE, routing_key=queue)

    def messages(self) -> Iterator[tuple[str, bytes, dict]]:
        while True:
            method, props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return
            yield props.content_type, body, props.headers or {}

    def close(self) -> None:
        self.conn.close()


def test_an_executors_burst_comes_back_in_bundles_each_result_to_its_own_future(sdk_broker, gce_home):
    n = 1500
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        spy = Spy(sdk_broker.admin_url, ex.result_queue)
        try:
            sizes = [BIG if i % 100 == 3 else i % 200 for i in range(n)]
            futs = [ex.submit(echo, i, size) for i, size in enumerate(sizes)]
            for i, fut in enumerate(futs):
                if i % 50 == 7:
                    exc = fut.exception(timeout=120)
                    assert isinstance(exc, ValueError) and str(exc) == f"no {i}"
                else:
                    assert fut.result(timeout=120) == (i, b"x" * sizes[i])
            kinds: Counter[str] = Counter()
            answered: Counter[str] = Counter()
            for ctype, body, headers in spy.messages():
                kinds[ctype] += 1
                if ctype == names.RESULT_BUNDLE_CONTENT_TYPE:
                    results, why = bundles.decode(bundles.RESULTS, body)
                    assert why == "" and headers["results"] == str(len(results)) and len(results) > 1
                    assert all(len(payload) <= bundles.SMALL for _, payload in results)
                    answered.update(ResultHeaders.from_amqp(None, h).task_id for h, _ in results)
                else:
                    answered[ResultHeaders.from_amqp(None, headers).task_id] += 1
        finally:
            spy.close()
    assert set(answered.values()) == {1} and set(answered) == {f.task_id for f in futs}  # each once
    assert kinds[names.RESULT_BUNDLE_CONTENT_TYPE] > 0
    assert kinds[names.RESULT_CONTENT_TYPE] >= n // 100  # the big ones went alone
    assert sum(kinds.values()) < n / 2, kinds  # far fewer messages than results


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
            kinds = Counter(ctype for ctype, _, _ in spy.messages())
        finally:
            spy.close()
    assert kinds == {names.RESULT_CONTENT_TYPE: 40}
