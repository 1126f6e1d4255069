"""``Client``: fire-and-forget tasks whose results can be fetched later, from any process.

    c = Client()
    fid = c.register_function(double)            # also saved under ~/.gce/sdk/functions
    tid = c.run(7, endpoint_id=ep, function_id=fid)
    ...                                           # later, maybe in another process:
    print(Client().get_result(tid))

Results of every Client of one broker user wait in one durable queue
(``gce.results.<user>.client``, expiring after 14 days unused). ``get_result`` reads it with
``basic_get``: it acks only the result asked for and leaves the others unacked, then closes
the channel so the broker requeues them for whoever asks next. Nothing is lost.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

from gce.sdk.errors import (BrokerUnavailable, TaskPending, UnknownFunction, nacked, no_task_queue, outcome,
                           submit_refused)
from gce.sdk.registry import Registry
from gce.sdk.versions import Checker
from gce.sdk import control
from gce.sdk.settings import (FunctionStore, RegistersFunctions, broker_user, connection_parameters, functions_dir,
                              json_object, redact, resolve_broker_url)
from gce.sdk.tasks import DEFAULT_MAX_PAYLOAD_BYTES, task_message
from gce.transport import connect, names
from gce.transport.message import ResultHeaders

if TYPE_CHECKING:
    from gce.sdk.batch import Batch

# A status older than this (three missed 30 s reports) means the endpoint is offline.
STATUS_STALE_SECONDS = 120.0


class Client(RegistersFunctions):
    """Submit tasks by function id and collect their results by task id."""

    def __init__(self, broker_url: str | None = None, *, amqp_heartbeat: int = 30,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self.url = resolve_broker_url(broker_url)
        self.broker_user = broker_user(self.url)
        self.result_queue = names.client_result_queue(self.broker_user)
        self.heartbeat = amqp_heartbeat
        self.max_payload_bytes = max_payload_bytes
        self._functions = FunctionStore(functions_dir(), Registry(lambda op: self._call(op, queue=False),
                                                                  self.broker_user, self.url))
        self._versions = Checker(self.get_endpoint_status)  # before the first task to each endpoint
        self._results: dict[str, tuple[ResultHeaders, bytes]] = {}  # seen in the queue, by task id
        self._taken: set[str] = set()  # acked by this Client: the broker no longer holds them
        self._endpoints: dict[str, str] = {}  # task id -> the endpoint this Client sent it to (get_task, cancel)
        self._conn: Any = None
        self._hosts = connect.Hosts()  # which of the URL's broker hosts (a cluster's nodes) is next
        self.node = ""  # HOST:PORT of the broker node last reached
        self._queue_ready = False
        self._lock = threading.RLock()  # pika is not thread-safe: one caller at a time

    # -- the connection ----------------------------------------------------------------
    def _connect(self) -> Any:
        """A connection to the first broker node the URL lists that answers, the last one reached first."""
        import pika

        listed = connection_parameters(self.url, self.heartbeat, "gce sdk client")
        for _ in listed:
            params = self._hosts.pick(listed)
            try:
                conn = pika.BlockingConnection(params)
            except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError) as e:
                raise BrokerUnavailable(f"the broker at {redact(self.url)} refused user {self.broker_user!r}: "
                                        f"{e!r}") from None  # a cluster's nodes share accounts: no next node
            except pika.exceptions.AMQPError as e:
                error = e
                self._hosts.failed()
                continue
            self._hosts.reached()
            self.node = connect.node(params)
            return conn
        raise BrokerUnavailable(f"cannot connect to the broker at {redact(self.url)}: {error!r}") from None

    def _declare_queue(self, ch: Any) -> None:
        # Declared once per connection, only by what needs it (not by get_endpoint_status);
        # declaring also restarts the queue's 14-day expiry.
        import pika

        try:
            ch.queue_declare(self.result_queue, durable=True,
                             arguments=connect.result_queue_arguments(self.url, names.CLIENT_QUEUE_EXPIRES_MS))
            ch.queue_bind(self.result_queue, names.RESULTS_EXCHANGE, routing_key=self.result_queue)
        except pika.exceptions.ChannelClosedByBroker as e:
            raise BrokerUnavailable(f"could not set up result queue {self.result_queue!r} on {redact(self.url)}: "
                                    f"{e.reply_text} (does {self.broker_user!r} lack a permission?)") from None
        self._queue_ready = True

    def _call(self, op: Callable[[Any], Any], queue: bool = True) -> Any:
        """OP(channel) on a fresh channel, reconnecting once if the idle connection was lost."""
        import pika

        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or not self._conn.is_open:
                    self._conn, self._queue_ready = self._connect(), False
                try:
                    ch = self._conn.channel()
                    try:
                        if queue and not self._queue_ready:
                            self._declare_queue(ch)
                        return op(ch)
                    finally:
                        if ch.is_open:
                            ch.close()
                except (pika.exceptions.AMQPConnectionError, pika.exceptions.ConnectionWrongStateError):
                    # A BlockingConnection left idle misses heartbeats and is dropped by the broker.
                    self._conn = None
                    if attempt == 2:
                        raise BrokerUnavailable(f"lost the connection to the broker at {redact(self.url)}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running -----------------------------------------------------------------------
    def run(self, *args: Any, endpoint_id: str | uuid.UUID, function_id: str, user_endpoint_config: dict | None = None,
            resource_specification: dict | None = None, **kwargs: Any) -> str:
        """Submit one task; return its task_id once the broker has it (publisher confirm)."""
        import pika

        endpoint_id = str(uuid.UUID(str(endpoint_id)))
        kind, blob = self._functions.get(function_id)
        self._versions.check(endpoint_id, kind)  # VersionMismatch, or a VersionWarning once
        task_id, body, props = task_message(
            kind, blob, function_id, args, kwargs, user=self.broker_user, reply_to=self.result_queue,
            user_endpoint_config=json_object(user_endpoint_config, "user_endpoint_config"),
            resource_specification=json_object(resource_specification, "resource_specification"),
            max_payload_bytes=self.max_payload_bytes)

        def publish_task(ch: Any) -> None:
            ch.confirm_delivery()
            try:
                ch.basic_publish(names.TASKS_EXCHANGE, endpoint_id, body, props, mandatory=True)
            except pika.exceptions.UnroutableError:
                raise no_task_queue(endpoint_id, task_id) from None
            except pika.exceptions.ChannelClosedByBroker as e:
                raise submit_refused(endpoint_id, self.broker_user, e.reply_text, task_id) from None
            except pika.exceptions.NackError:
                raise nacked(endpoint_id, task_id) from None

        self._call(publish_task)
        self._endpoints[task_id] = endpoint_id
        return task_id

    # -- batches (gce/sdk/batch.py) ----------------------------------------------------
    def create_batch(self, task_group_id: str | uuid.UUID | None = None, resource_specification: dict | None = None,
                     user_endpoint_config: dict | None = None, **_ignored: Any) -> Batch:
        """A Batch to fill with ``batch.add(function_id, args, kwargs)`` and run with ``batch_run``."""
        from gce.sdk.batch import Batch

        return Batch(task_group_id, resource_specification, user_endpoint_config, functions=self._functions)

    def batch_run(self, endpoint_id: str | uuid.UUID, batch: Batch) -> dict[str, Any]:
        """Submit every task of BATCH at once; return ``{"tasks": {function_id: [task_id, ...]},
        "task_group_id", "endpoint_id", "request_id"}`` once the broker has confirmed them all."""
        from gce.sdk import batch as batches

        return batches.run(self, endpoint_id, batch)

    def get_batch_result(self, task_id_list: list[str | uuid.UUID]) -> dict[str, dict[str, Any]]:
        """``get_task`` for many tasks, in one pass over the result queue: task_id -> its dict."""
        from gce.sdk import batch as batches

        return batches.results(self, task_id_list)

    # -- results -----------------------------------------------------------------------
    def _fetch(self, task_id: str) -> tuple[ResultHeaders, bytes] | None:
        """Scan the queue for TASK_ID's result; ack it alone, remember the others unacked."""
        with self._lock:
            if task_id in self._taken:
                return self._results[task_id]
            found = self._call(lambda ch: self._scan(ch, task_id))
            if found is None and task_id in self._results:
                found = self._results[task_id]  # another Client took it after we saw it
            return found

    def _scan(self, ch: Any, task_id: str) -> tuple[ResultHeaders, bytes] | None:
        while True:
            method, props, body = ch.basic_get(self.result_queue, auto_ack=False)
            if method is None:  # nothing more for us right now
                return None
            rh = ResultHeaders.from_amqp(props.correlation_id, props.headers)
            if rh.task_id == task_id or rh.task_id in self._taken:
                ch.basic_ack(method.delivery_tag)  # the one asked for, or a duplicate of one taken
                if rh.task_id == task_id:
                    self._results[task_id] = (rh, body)
                    self._taken.add(task_id)
                    return rh, body
            else:
                self._results[rh.task_id] = (rh, body)  # unacked: requeued when _call closes the channel

    def get_result(self, task_id: str) -> Any:
        """The task's value; raise its exception if it failed, TaskPending if not done yet."""
        task_id = str(uuid.UUID(str(task_id)))
        got = self._fetch(task_id)
        if got is None:
            raise TaskPending(task_id)
        ok, value = outcome(*got)
        if not ok:
            raise value
        return value

    def get_task(self, task_id: str, endpoint_id: str | uuid.UUID | None = None,
                 timeout: float = control.ANSWER_SECONDS) -> dict[str, Any]:
        """Globus Compute's shape: task_id, pending, status, then result or exception; and ``state``:
        queued (on the broker), waiting (at the endpoint), running (on a worker, ``since`` when), done
        or unknown. Without a result yet the endpoint is asked (the one this Client sent the task to,
        else ENDPOINT_ID), waiting TIMEOUT seconds for its answer; ``status`` is then the state."""
        task_id = str(uuid.UUID(str(task_id)))
        got = self._fetch(task_id)
        if got is None:
            return self._state(task_id, endpoint_id, timeout)
        rh, body = got
        ok, value = outcome(rh, body)
        info: dict[str, Any] = {"task_id": task_id, "pending": False, "status": "success" if ok else "failed",
                                "state": control.DONE,
                                "endpoint_id": rh.endpoint_id, "timings": rh.timings}
        if ok:
            info["result"] = value
        else:
            info["exception"] = value
            info["reason"] = str(value)
        return info

    def get_function(self, function_id: str) -> dict[str, Any]:
        """A registered function's metadata, as the broker holds it for this broker user:
        function_id, function_name, kind (cloudpickle or source), size (bytes), sha256 (the
        content hash, which is its id), registered (a Unix time), and the python_version,
        gce_version and cloudpickle_version it was registered with. UnknownFunction if none."""
        if not (isinstance(function_id, str) and len(function_id) == 64
                and all(c in "0123456789abcdef" for c in function_id)):
            raise UnknownFunction(str(function_id), "a function id is 64 hexadecimal digits")
        return self._functions.remote.get(function_id)[2]  # type: ignore[union-attr]

    # -- where a task is, and cancelling it (gce.sdk.control) -------------------------
    def _ask(self, kind: str, task_id: str, endpoint_id: str | uuid.UUID | None, timeout: float
             ) -> tuple[str, dict[str, Any] | None]:
        endpoint = endpoint_id or self._endpoints.get(task_id)
        if endpoint is None:
            raise ValueError(f"this Client did not send task {task_id}: pass the endpoint_id it was sent to")
        ep = str(uuid.UUID(str(endpoint)))
        return ep, self._call(lambda ch: control.ask(ch, self.broker_user, ep, kind, [task_id], timeout), queue=False)

    def _state(self, task_id: str, endpoint_id: str | uuid.UUID | None, timeout: float) -> dict[str, Any]:
        if endpoint_id is None and task_id not in self._endpoints:
            return {"task_id": task_id, "pending": True, "status": "pending", "state": control.UNKNOWN,
                    "reason": "no result yet, and this Client did not send it: pass endpoint_id to ask its endpoint"}
        said = self.task_state(task_id, endpoint_id, timeout)
        if said["state"] == control.DONE and self._fetch(task_id) is not None:  # its result came meanwhile
            return self.get_task(task_id)
        return said

    def task_state(self, task_id: str, endpoint_id: str | uuid.UUID | None = None,
                   timeout: float = control.ANSWER_SECONDS) -> dict[str, Any]:
        """Where a task is as its endpoint says it (get_task's ``state``, ``since``, ``reason``), without
        looking for its result: what an Executor's future asks (TaskFuture.state)."""
        task_id = str(uuid.UUID(str(task_id)))
        ep, answer = self._ask(control.STATE, task_id, endpoint_id, timeout)
        said = control.state_of(answer, task_id, timeout)
        return {"task_id": task_id, "pending": True, "status": said["state"], "endpoint_id": ep, **said}

    def cancel(self, task_id: str, endpoint_id: str | uuid.UUID | None = None,
               timeout: float = control.ANSWER_SECONDS) -> dict[str, Any]:
        """Cancel a task: one that has not started is answered CANCELLED and never runs; a running one
        is stopped (as its endpoint's engine allows) and answered CANCELLED, unless it finished first.
        Only its submitter may cancel it. Returns the endpoint's word: ``cancelled`` (bool), ``state``
        before the cancel, and ``reason``; ``state`` queued when the endpoint did not answer within
        TIMEOUT seconds (the cancel then waits behind the task on the broker, and stops it when taken).
        ENDPOINT_ID: where the task went, for a task this Client did not send."""
        task_id = str(uuid.UUID(str(task_id)))
        ep, answer = self._ask(control.CANCEL, task_id, endpoint_id, timeout)
        said = control.state_of(answer, task_id, timeout)
        if answer is None:
            said["reason"] = (f"the endpoint did not answer within {timeout:g} s: the cancel waits on the broker "
                              "behind the task, and stops it when the endpoint takes them")
        return {"task_id": task_id, "endpoint_id": ep, "cancelled": bool(said.pop("cancelled", False)), **said}

    def get_endpoints(self) -> list[dict[str, Any]]:
        """The endpoints this broker user may submit to, as ``gce broker provision`` last listed them
        for her: each with endpoint_id, display_name, status (online, offline or unknown), last_seen
        (a Unix time or None), reason and details (see get_endpoint_status)."""
        from gce.sdk import discovery

        return discovery.endpoints(lambda op: self._call(op, queue=False), self.broker_user, self._endpoint_status)

    def get_endpoint_status(self, endpoint_id: str | uuid.UUID) -> dict[str, Any]:
        """The endpoint's last status report; ``status`` is online, offline or unknown.

        ``details`` is what the endpoint tells its users: endpoint_id, display_name, state,
        accepting_tasks, gce_version, engine_type, tasks_in_flight, python_version,
        cloudpickle_version, reads (what it reads besides one task per message) and timestamp. Only users
        who may submit to the endpoint may read it; its owner sees more with ``gce status``.
        """
        return self._endpoint_status(endpoint_id)[0]

    def _endpoint_status(self, endpoint_id: str | uuid.UUID) -> tuple[dict[str, Any], bool]:
        """(get_endpoint_status's answer, whether the broker refused this user the endpoint's status)."""
        import pika

        from gce.sdk.discovery import peek

        endpoint_id = str(uuid.UUID(str(endpoint_id)))
        try:
            method, body = self._call(peek(names.endpoint_status_queue(endpoint_id)), queue=False)
        except pika.exceptions.ChannelClosedByBroker as e:
            why = {404: "the endpoint has no status queue on this broker (was it ever started?)",
                   403: f"broker user {self.broker_user!r} may not read the endpoint's status"}
            return {"status": "unknown", "endpoint_id": endpoint_id,
                    "reason": f"{why.get(e.reply_code, 'the broker refused')}: {e.reply_text}"}, e.reply_code == 403
        if method is None:
            return {"status": "unknown", "endpoint_id": endpoint_id, "reason": "the endpoint has not reported yet"}, False
        if (method.exchange, method.routing_key) != (names.STATUS_EXCHANGE, endpoint_id):
            # Another endpoint account can reach this queue (a CC header, or its own exchange
            # bound into gce.status) but never as gce.status with this endpoint's id as key.
            return {"status": "unknown", "endpoint_id": endpoint_id, "reason": "the status queue holds a report that "
                    f"did not come from the endpoint (exchange {method.exchange!r}, key {method.routing_key!r})"}, False
        try:
            details = json.loads(body)
            stamp = float(details.get("timestamp", 0))
        except (ValueError, TypeError, AttributeError) as e:
            return {"status": "unknown", "endpoint_id": endpoint_id, "reason": f"unreadable status report ({e})"}, False
        age = max(0.0, time.time() - stamp)
        return {"status": "online" if age < STATUS_STALE_SECONDS else "offline", "endpoint_id": endpoint_id,
                "last_seen": stamp, "age_seconds": round(age, 1), "details": details}, False
