"""What a task costs the SDK while it is outstanding: at most 1 KiB of Python memory each, so one
Executor can hold a million outstanding tasks in about a gigabyte at most.

Measured with tracemalloc (Python's own allocations, not RSS) on a real broker: the tasks go to
an endpoint that is not running, so they all stay outstanding. The queue they land in keeps none
of them (the broker drops each for the next): only the SDK's side is measured here, and the
session's broker is not loaded with them."""

from __future__ import annotations

import gc
import secrets
import threading
import time
import tracemalloc
import uuid

import pika

from gce.sdk import Executor
from gce.transport import names

TASKS = 10_000


def noop():
    return None


def test_an_outstanding_task_costs_the_sdk_at_most_1_kib(broker):
    endpoint_id = str(uuid.uuid4())
    user = f"memory.{secrets.token_hex(3)}"
    ep_url, urls = broker.provision(endpoint_id, users=[user])
    vhost = ep_url.rsplit("/", 1)[1]
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.admin_url_for(vhost)))
        ch = conn.channel()
        ch.queue_declare(f"gce.ep.{endpoint_id}.tasks", arguments={"x-max-length": 1, "x-overflow": "drop-head"})
        ch.queue_bind(f"gce.ep.{endpoint_id}.tasks", names.TASKS_EXCHANGE, routing_key=endpoint_id)
        conn.close()
        ex = Executor(endpoint_id=endpoint_id, broker_url=urls[user])
        try:
            warm = [ex.submit(noop) for _ in range(1000)]  # the first ones fill caches, not the bill
            assert ex._link.wait_published(60)
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            futures = [ex.submit(noop) for _ in range(TASKS)]
            assert ex._link.wait_published(120), "the broker did not confirm the tasks"
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            assert not any(f.done() for f in futures[-100:])  # still outstanding, all of them
            per_task = grown / TASKS
            print(f"{per_task:.0f} bytes per outstanding task")
            assert per_task <= 1024, f"an outstanding task costs the SDK {per_task:.0f} bytes"
        finally:
            ex.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in warm + futures)
    finally:
        broker.ctl("delete_vhost", vhost, check=False)


def double(x):
    return 2 * x


def test_a_burst_of_submits_waits_while_the_broker_has_not_confirmed_max_unsettled_tasks(sdk_broker, gce_home,
                                                                                         monkeypatch):
    """Else the payloads of a burst pile up in the SDK unsent: a million of them at once."""
    from gce.sdk import amqp

    monkeypatch.setattr(amqp, "MAX_UNSETTLED", 50)
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        assert ex.submit(double, 1).result(timeout=60) == 2
        gate, stalled = threading.Event(), threading.Event()
        # The link's thread stops here: nothing is published or confirmed until the gate opens.
        ex._link._conn.ioloop.add_callback_threadsafe(lambda: stalled.set() or gate.wait(30))
        assert stalled.wait(10)
        futures: list = []
        submitter = threading.Thread(target=lambda: futures.extend(ex.submit(double, i) for i in range(200)))
        submitter.start()
        deadline = time.monotonic() + 10
        while len(ex._pending) < 51 and time.monotonic() < deadline:
            time.sleep(0.01)
        submitter.join(0.5)
        assert submitter.is_alive() and len(ex._pending) == 51  # 50 wait for the broker, the 51st submit waits
        gate.set()
        submitter.join(30)
        assert [f.result(timeout=60) for f in futures] == [2 * i for i in range(200)]
