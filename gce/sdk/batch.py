"""Batches for the Client, as Globus Compute's SDK has them: many tasks in one submission.

    batch = client.create_batch()
    for i in range(10_000):
        batch.add(function_id, args=(i,))
    r = client.batch_run(endpoint_id, batch)    # {"tasks": {function_id: [task_id, ...]}, ...}
    client.get_batch_result(r["tasks"][function_id])

``batch_run`` publishes the whole batch on one channel of a connection of its own, back to back,
and waits once for the broker's publisher confirms (``Basic.Ack`` with ``multiple``): a batch of
10,000 costs a few round trips, where ``Client.run`` waits for one confirm per task.
``get_batch_result`` reads the Client's result queue once for all the ids asked for.
"""

from __future__ import annotations

import uuid
from typing import Any

import pika

from gce.sdk.errors import BrokerUnavailable, connect_error, nacked, no_task_queue, outcome, submit_refused
from gce.sdk.settings import FunctionStore, connection_parameters, json_object, redact
from gce.sdk.tasks import check_resource_specification, task_message
from gce.transport import connect, names
from gce.transport.confirms import Confirms
from gce.transport.message import ResultHeaders

# The functions below take the Client as ``client: Any``: client.py imports this module, and the
# layout allows no import circle, not even one for types.
Client = Any

# Published and not yet confirmed, at most: a batch of a million holds this many in pika's buffers.
WINDOW = 10_000
# get_batch_result's consumer: at most this many results unacked at once (the ones not asked for
# stay unacked until the scan ends, so this bounds what it can pass over), and how long it waits
# for the next message before taking the queue as read.
SCAN_PREFETCH = 65_535
SCAN_IDLE_SECONDS = 1.0
# A nacked task is published again this many times before batch_run fails (a quorum queue whose
# leader just went down nacks until a new one is elected).
NACK_RETRIES = 3


class Batch:
    """Tasks to submit together with ``Client.batch_run``: ``add(function_id, args, kwargs)`` each.

    Arguments are serialized when the batch is run. ``task_group_id`` is returned by batch_run
    (one is made when None); the results go to the Client's result queue, like ``Client.run``'s.
    """

    def __init__(self, task_group_id: str | uuid.UUID | None = None, resource_specification: dict | None = None,
                 user_endpoint_config: dict | None = None, functions: FunctionStore | None = None) -> None:
        self.task_group_id = None if task_group_id is None else str(uuid.UUID(str(task_group_id)))
        self.resource_specification = check_resource_specification(
            json_object(resource_specification, "resource_specification"))
        self.user_endpoint_config = json_object(user_endpoint_config, "user_endpoint_config")
        self.tasks: dict[str, list[tuple[tuple, dict]]] = {}
        self._functions = functions

    def add(self, function_id: str, args: tuple | list | None = None, kwargs: dict | None = None) -> None:
        """One more call of the registered FUNCTION_ID (Globus Compute's argument order)."""
        args = () if args is None else args
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(args, (list, tuple)):
            raise TypeError(f"args must be a tuple or a list, not {type(args).__name__}")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise TypeError("kwargs must be a dict with str keys")
        if self._functions is not None:
            self._functions.get(function_id)  # UnknownFunction now, not at batch_run
        self.tasks.setdefault(function_id, []).append((tuple(args), dict(kwargs)))

    def __len__(self) -> int:
        return sum(len(calls) for calls in self.tasks.values())

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"<gce Batch of {len(self)} task(s) of {len(self.tasks)} function(s)>"


def run(client: Client, endpoint_id: str | uuid.UUID, batch: Batch) -> dict[str, Any]:
    """Client.batch_run: build every task message first (PayloadTooLarge or UnknownFunction before
    anything is sent), then publish them all and wait for the broker to confirm each."""
    if not batch:
        raise ValueError("the batch holds no task: add some with batch.add(function_id, args, kwargs)")
    endpoint_id = str(uuid.UUID(str(endpoint_id)))
    messages: list[tuple[str, bytes, pika.BasicProperties]] = []
    tasks: dict[str, list[str]] = {}
    for function_id, calls in batch.tasks.items():
        kind, blob = client._functions.get(function_id)
        for args, kwargs in calls:
            message = task_message(kind, blob, function_id, args, kwargs, user=client.broker_user,
                                   reply_to=client.result_queue, user_endpoint_config=batch.user_endpoint_config,
                                   resource_specification=batch.resource_specification,
                                   max_payload_bytes=client.max_payload_bytes)
            messages.append(message)
            tasks.setdefault(function_id, []).append(message[0])
    client._call(lambda ch: None)  # declares the result queue before any result can be routed to it
    _Publisher(client, endpoint_id, messages).run()
    return {"request_id": str(uuid.uuid4()), "task_group_id": batch.task_group_id or str(uuid.uuid4()),
            "endpoint_id": endpoint_id, "tasks": tasks}


class _Publisher:
    """One SelectConnection, run in the calling thread until every message is confirmed."""

    def __init__(self, client: Client, endpoint_id: str, messages: list[tuple[str, bytes, Any]]) -> None:
        self.client, self.endpoint_id = client, endpoint_id
        self.todo = list(reversed(messages))  # popped from the end: in order
        self.confirms: Confirms[tuple[str, bytes, Any]] = Confirms()
        self.returned: set[str] = set()
        self.nacks: dict[str, int] = {}
        self.error: Exception | None = None
        self.ch: Any = None

    def run(self) -> None:
        listed = connection_parameters(self.client.url, self.client.heartbeat, "gce sdk batch")
        hosts = connect.Hosts()
        for _ in listed:
            params = hosts.pick(listed)
            self.error = None
            conn = pika.SelectConnection(params, on_open_callback=lambda c: c.channel(on_open_callback=self._on_channel),
                                         on_open_error_callback=self._on_open_error,
                                         on_close_callback=lambda c, _why: c.ioloop.stop())
            self.conn = conn
            conn.ioloop.start()
            conn.ioloop.close()
            if not isinstance(self.error, BrokerUnavailable) or self.confirms.waiting or not self.todo:
                break  # only a node that could not be reached sends us to the next one
            hosts.failed()
        if self.error is not None:
            raise self.error
        if self.todo or self.confirms.waiting:
            raise BrokerUnavailable(f"the broker connection closed before it confirmed {len(self.todo) + len(self.confirms.waiting)} "
                                    f"task(s) of the batch; run the batch again")

    def _on_open_error(self, conn: Any, exc: BaseException) -> None:
        self.error = connect_error(redact(self.client.url), self.client.broker_user, exc)
        conn.ioloop.stop()

    def _on_channel(self, ch: Any) -> None:
        self.ch = ch
        ch.add_on_close_callback(self._on_channel_closed)
        ch.add_on_return_callback(lambda _c, _m, props, _b: self.returned.add(props.message_id))
        ch.confirm_delivery(self._on_confirm, callback=lambda _f: self._publish())

    def _publish(self) -> None:
        while self.todo and len(self.confirms.waiting) < WINDOW:
            message = self.todo.pop()
            self.ch.basic_publish(names.TASKS_EXCHANGE, self.endpoint_id, message[1], message[2], mandatory=True)
            self.confirms.published(message)
        if not self.todo and not self.confirms.waiting:
            self.conn.close()

    def _on_confirm(self, frame: Any) -> None:
        done, acked = self.confirms.settle(frame)
        for message in done:
            task_id = message[0]
            if task_id in self.returned:  # basic.return comes before the ack: no queue for the endpoint
                return self._fail(no_task_queue(self.endpoint_id, task_id))
            if not acked:
                self.nacks[task_id] = self.nacks.get(task_id, 0) + 1
                if self.nacks[task_id] > NACK_RETRIES:
                    return self._fail(nacked(self.endpoint_id, task_id))
                self.todo.append(message)
        self._publish()

    def _on_channel_closed(self, ch: Any, reason: BaseException) -> None:
        if self.error is None and (self.todo or self.confirms.waiting):
            text = getattr(reason, "reply_text", "") or str(reason)
            self.error = submit_refused(self.endpoint_id, self.client.broker_user, text)
        if not (self.conn.is_closing or self.conn.is_closed):
            self.conn.close()

    def _fail(self, error: Exception) -> None:
        self.error = error
        if self.ch is not None and self.ch.is_open:
            self.ch.close()


def results(client: Client, task_ids: list[str | uuid.UUID]) -> dict[str, dict[str, Any]]:
    """Client.get_batch_result: one pass over the result queue for every id asked for."""
    wanted = {str(uuid.UUID(str(t))) for t in task_ids}
    with client._lock:
        missing = wanted - client._taken
        if missing:
            client._call(lambda ch: _scan(client, ch, missing))
        return {task_id: _info(task_id, client._results.get(task_id) if task_id in client._taken else None)
                for task_id in wanted}


def _scan(client: Client, ch: Any, wanted: set[str]) -> None:
    """Take WANTED's results (acked), and duplicates of results taken before; the others are left
    unacked, requeued for the next reader when the channel closes.

    A consumer, not basic_get: the broker streams what is ready without a round trip per message
    (10,000 results: a basic_get each took 4.8 s here). It stops once all are found, or once it has
    seen as many messages as were ready when it began."""
    ready = ch.queue_declare(client.result_queue, passive=True).method.message_count
    left, seen = set(wanted), 0
    if not ready:
        return
    ch.basic_qos(prefetch_count=min(ready, SCAN_PREFETCH))
    for method, props, body in ch.consume(client.result_queue, inactivity_timeout=SCAN_IDLE_SECONDS):
        if method is None:  # another reader holds the rest
            break
        seen += 1
        rh = ResultHeaders.from_amqp(props.correlation_id, props.headers)
        if rh.task_id in left or rh.task_id in client._taken:
            ch.basic_ack(method.delivery_tag)
            if rh.task_id in left:
                client._results[rh.task_id] = (rh, body)
                client._taken.add(rh.task_id)
                left.discard(rh.task_id)
        else:
            client._results[rh.task_id] = (rh, body)
        if not left or seen >= ready:
            break
    ch.cancel()  # what was delivered and not acked goes back to the queue


def _info(task_id: str, got: tuple[ResultHeaders, bytes] | None) -> dict[str, Any]:
    """Globus Compute's shape of one task in get_batch_result."""
    if got is None:
        return {"task_id": task_id, "pending": True, "status": "pending"}
    rh, body = got
    ok, value = outcome(rh, body)
    info: dict[str, Any] = {"task_id": task_id, "pending": False, "status": "success" if ok else "failed",
                            "endpoint_id": rh.endpoint_id, "timings": rh.timings}
    info["result" if ok else "exception"] = value
    if not ok:
        info["reason"] = str(value)
    completed = rh.timings.get("finished")
    if completed is not None:
        info["completion_t"] = str(completed)
    return info
