"""``Executor``: a ``concurrent.futures.Executor`` whose tasks run on a gce endpoint.

    from gce.sdk import Executor

    with Executor(endpoint_id=ep_id) as ex:
        print(ex.submit(pow, 2, 10).result())

Each Executor belongs to a task group (``task_group_id``, made when not given) whose durable
result queue (``gce.results.<broker user>.group-<id>``) only one live Executor holds, so two never
see each other's results; results wait there while this process is busy, disconnected, or dead:
``Executor(task_group_id=...).reload_tasks()`` in a later process takes them (gce/sdk/groups.py).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, wait
from typing import Any, Callable

from gce.sdk import control, serialize
from gce.sdk.condition import SharedLockCondition
from gce.sdk.amqp import Link
from gce.sdk.errors import TaskOutput, outcome_and_output, resolve, waited_too_long
from gce.sdk.groups import GroupLog, group_id, group_queue
from gce.sdk.registry import Registry
from gce.sdk.versions import Checker
from gce.sdk.settings import FunctionStore, RegistersFunctions, broker_user, json_object, resolve_broker_url
from gce.sdk.tasks import retries_allowed
from gce.sdk.tasks import (DEFAULT_MAX_PAYLOAD_BYTES, Outgoing, check_resource_specification, function_name,
                           task_message, time_limit)
from gce.transport import bundles, names
from gce.transport.message import ErrorCode, ResultHeaders, failure

log = logging.getLogger(__name__)

# Task ids remembered after completion, to drop duplicate results (at-least-once delivery).
COMPLETED_MEMORY = 100_000
NO_OUTPUT = TaskOutput()  # frozen: every task shares it until its result says what it printed
# How long interpreter exit waits for submitted tasks to reach the broker.
EXIT_FLUSH_SECONDS = 30.0


class TaskFuture(Future):
    """A Future that knows its task id (``task_id``), like Globus Compute's ComputeFuture.

    A ``result`` or ``exception`` that times out says why, as far as the endpoint's last
    status on the broker tells: it is read then, never for a result that arrives.
    ``task_output()`` is what the function printed.
    """

    def __init__(self, task_id: str, endpoint_status: Callable[[str | None], dict] | None = None,
                 endpoint_id: str | None = None, control: Callable[[TaskFuture, str, float], Any] | None = None
                 ) -> None:
        super().__init__()
        # An outstanding task costs well under 1 KiB (tests/sdk/test_memory.py): the condition
        # shares one lock with the others, and nothing else is kept per task but its id.
        self._condition = SharedLockCondition()
        self.task_id = task_id
        self._endpoint_status = endpoint_status  # one bound method for all of an Executor's tasks
        self._endpoint_id = endpoint_id
        self._output = NO_OUTPUT  # set before the result, from the same message
        self._bundle = ""  # the message id of the bundle it was sent in, if it was (gce.transport.bundles)
        self._control = control  # the Executor's, for cancel() and state() (gce.sdk.control)

    def cancel(self) -> bool:
        """Cancel the task, here and at its endpoint: the future is cancelled at once (False once it is
        done), a task that had not started never runs, and a running one is stopped (as its endpoint's
        engine allows; its answer, CANCELLED, is dropped)."""
        cancelled = super().cancel()
        if cancelled and self._control is not None:
            self._control(self, control.CANCEL, 0.0)
        return cancelled

    def state(self, timeout: float = control.ANSWER_SECONDS) -> dict:
        """Where the task is, as Client.get_task says it (``state``: queued, waiting, running with
        ``since``, done, unknown), asking its endpoint (waiting TIMEOUT seconds) until the future is done."""
        if self.done():
            status = "cancelled" if self.cancelled() else "failed" if self.exception() is not None else "success"
            return {"task_id": self.task_id, "pending": False, "state": control.DONE, "status": status}
        if self._control is None:
            return {"task_id": self.task_id, "pending": True, "state": control.UNKNOWN, "status": control.UNKNOWN}
        return self._control(self, control.STATE, timeout)  # type: ignore[no-any-return]

    def task_output(self, timeout: float | None = None) -> TaskOutput:
        """What the function printed: ``.stdout`` and ``.stderr``, the end of each (see TaskOutput).

        Waits for the task like ``result()`` and ``exception()`` do: TimeoutError after TIMEOUT
        seconds, CancelledError for a cancelled task; it never raises the task's own exception.
        """
        self.exception(timeout)
        return self._output

    def _timed_out(self, timeout: float | None) -> TimeoutError:
        status = self._endpoint_status(self._endpoint_id) if self._endpoint_status is not None else {}
        return waited_too_long(self.task_id, timeout, status)

    def result(self, timeout: float | None = None) -> Any:
        try:
            return super().result(timeout)
        except TimeoutError:
            if self.done():  # the task's own TimeoutError, not our wait
                raise
            raise self._timed_out(timeout) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            return super().exception(timeout)
        except TimeoutError:
            if self.done():
                raise
            raise self._timed_out(timeout) from None


class Executor(RegistersFunctions, concurrent.futures.Executor):
    """Run Python functions on a gce endpoint; results come back as futures.

    ``task_timeout`` (seconds) limits how long each task may run on the endpoint: one that runs
    longer is stopped and fails with ``TaskFailed`` code ``TIMEOUT``. A ``walltime`` in
    ``resource_specification`` does the same for the tasks submitted while it is set, and wins.
    ``task_group_id`` names the task group whose results this Executor takes (see reload_tasks).
    ``batch_size`` is Globus Compute's, taken so its scripts run unchanged: its Executor sends that
    many tasks per web request, where this one's link publishes every task waiting for it in one
    burst, however many (bench/batch.py measures the bursts).
    ``max_retries_on_system_failure``: how many more times a task whose worker died (killed by a
    signal, out of memory) is run before it fails with code ``WORKER_LOST``; None: the endpoint's
    engine decides (its own ``max_retries_on_system_failure``, 0 unless set). Exceptions raised by
    the function are never retried.
    """

    def __init__(
        self,
        endpoint_id: str | uuid.UUID | None = None,
        broker_url: str | None = None,
        user_endpoint_config: dict | None = None,
        resource_specification: dict | None = None,
        amqp_heartbeat: int = 30,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        connect_timeout: float = 30.0,
        task_timeout: float | None = None,
        task_group_id: str | uuid.UUID | None = None,
        task_group_expires_days: float | None = None,
        batch_size: int = 128,
        max_retries_on_system_failure: int | None = None,
    ) -> None:
        self.endpoint_id = endpoint_id  # type: ignore[assignment]
        self.task_timeout = task_timeout
        self.max_retries_on_system_failure = max_retries_on_system_failure
        self.user_endpoint_config = user_endpoint_config  # type: ignore[assignment]
        self.resource_specification = resource_specification  # type: ignore[assignment]
        self.max_payload_bytes = max_payload_bytes
        url = resolve_broker_url(broker_url)
        self._url = url
        self.broker_user = broker_user(url)
        self.task_group_id = group_id(task_group_id)
        self.batch_size = batch_size  # Globus Compute's; nothing to tune here (see above)
        self._group = GroupLog(self.task_group_id, task_group_expires_days, required=task_group_id is not None)
        self.result_queue = group_queue(self.broker_user, self.task_group_id)
        self._functions = FunctionStore(remote=Registry(self._registry_call, self.broker_user, url))
        self._versions = Checker(self._status_before_first_task)  # before the first task to each endpoint
        self._lock = threading.Lock()
        self._pending: dict[str, TaskFuture] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()
        self._shutdown = False
        self._status_of, self._forget = self._endpoint_status, self._forget_if_cancelled  # bound once, not per task
        self._control_of = self._task_control
        # The group's tasks an earlier Executor left: their futures exist before the first result comes.
        self._reloaded = [self._adopt(task_id, ep) for task_id, ep in self._group.outstanding.items()]
        self._link = Link(url, self.result_queue, queue_expires_ms=self._group.expires_ms,
                          heartbeat=amqp_heartbeat, prefetch=1000, on_result=self._on_result,
                          on_publish_failed=self._on_publish_failed, on_fatal=self._on_fatal,
                          before_publish=self._list_published, on_bundled=self._bundled)
        try:
            self._link.start(connect_timeout)
        except BaseException:
            self._group.close(remove=not self._reloaded)
            raise
        atexit.register(self._flush_at_exit)

    # -- settings ----------------------------------------------------------------------
    @property
    def broker_node(self) -> str:
        """HOST:PORT of the broker node (of those the URL lists) connected now; "" while reconnecting."""
        return self._link.node

    @property
    def endpoint_id(self) -> str | None:
        return self._endpoint_id

    @endpoint_id.setter
    def endpoint_id(self, value: str | uuid.UUID | None) -> None:
        try:
            self._endpoint_id = None if value is None else str(uuid.UUID(str(value)))
        except ValueError:
            raise ValueError(f"endpoint_id must be a UUID, got {value!r}") from None

    # Both travel with each task as JSON headers: check them when set, not at the 1,000th submit.
    @property
    def user_endpoint_config(self) -> dict:
        return self._uec

    @user_endpoint_config.setter
    def user_endpoint_config(self, value: dict | None) -> None:
        self._uec = json_object(value, "user_endpoint_config")

    @property
    def resource_specification(self) -> dict:
        return self._rspec

    @resource_specification.setter
    def resource_specification(self, value: dict | None) -> None:
        self._rspec = check_resource_specification(json_object(value, "resource_specification"))

    @property
    def task_timeout(self) -> float | None:
        return self._task_timeout

    @task_timeout.setter
    def task_timeout(self, value: float | None) -> None:
        self._task_timeout = None if value is None else time_limit(value, "task_timeout")

    @property
    def max_retries_on_system_failure(self) -> int | None:
        return self._retries

    @max_retries_on_system_failure.setter
    def max_retries_on_system_failure(self, value: int | None) -> None:
        self._retries = retries_allowed(value)

    def _task_spec(self) -> dict:
        """The resource specification a task travels with: task_timeout as its walltime, unless
        resource_specification names one."""
        if self._task_timeout is None or "walltime" in self._rspec:
            return self._rspec
        return {**self._rspec, "walltime": self._task_timeout}

    # -- submitting --------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` on the endpoint; the future holds its value or exception."""
        kind, blob = serialize.serialize_function(fn)
        return self._submit(kind, blob, serialize.function_id_of(kind, blob), args, kwargs, function_name(fn))

    def submit_to_registered_function(self, function_id: str, args: tuple = (),
                                      kwargs: dict | None = None) -> TaskFuture:
        """Run a function registered with ``register_function`` (here, or by a Client on this account)."""
        kind, blob = self._functions.get(function_id)  # UnknownFunction if neither here nor on disk
        return self._submit(kind, blob, function_id, tuple(args), dict(kwargs or {}))

    def _submit(self, kind: bytes, blob: bytes, function_id: str, args: tuple, kwargs: dict,
                name: str = "") -> TaskFuture:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self._link.fatal is not None:
            raise self._link.fatal
        if self._endpoint_id is None:
            raise ValueError("no endpoint_id: set Executor(endpoint_id=...) or ex.endpoint_id before submitting")
        endpoint_id = self._endpoint_id
        self._versions.check(endpoint_id, kind)  # VersionMismatch, or a VersionWarning once
        task_id, body, props = task_message(
            kind, blob, function_id, args, kwargs, user=self.broker_user, reply_to=self.result_queue,
            user_endpoint_config=self._uec, resource_specification=self._task_spec(),
            max_payload_bytes=self.max_payload_bytes, function_name=name,
            max_retries_on_system_failure=self._retries, result_bundles=True)
        fut = TaskFuture(task_id, self._status_of, endpoint_id, self._control_of)
        with self._lock:
            self._pending[task_id] = fut
        fut.add_done_callback(self._forget)
        self._link.publish_task(Outgoing(task_id, endpoint_id, body, props, fut))
        return fut

    def _registry_call(self, op: Callable[[Any], Any]) -> Any:
        """OP(channel) for the function registry (gce.sdk.registry), on a connection of its own:
        the link's is asynchronous, and registering or looking up a function is rare."""
        from gce.sdk.client import Client

        with Client(self._url) as client:
            return client._call(op, queue=False)

    def _endpoint_status(self, endpoint_id: str | None = None) -> dict:
        """The public status of the endpoint a task went to (gce.sdk.Client.get_endpoint_status;
        by default this Executor's), on a connection of its own; read only when a wait for a result
        timed out."""
        from gce.sdk.client import Client

        endpoint_id = endpoint_id or self._endpoint_id
        if endpoint_id is None:
            return {"status": "unknown", "endpoint_id": None, "reason": "no endpoint_id is set"}
        try:
            with Client(self._url) as client:
                return client.get_endpoint_status(endpoint_id)
        except Exception as e:  # the timeout stays the error; this only explains it
            return {"status": "unknown", "endpoint_id": endpoint_id, "reason": f"could not read it: {e}"}

    def _status_before_first_task(self, endpoint_id: str) -> dict:
        """The endpoint's status, read once before the first task to it (gce.sdk.versions): when it
        says the manager reads bundles of tasks, a burst goes as bundles from its start."""
        status = self._endpoint_status(endpoint_id)
        details = status.get("details")
        reads = details.get("reads") if isinstance(details, dict) else None
        if isinstance(reads, list) and bundles.TASK_BUNDLES_HEADER in reads:
            self._link.bundle_tasks_to(endpoint_id)
        return status

    def _task_control(self, fut: TaskFuture, kind: str, timeout: float) -> dict | None:
        """A cancel of FUT's task, sent by this Executor's link (its answer is dropped: the task's own
        result says CANCELLED), or where it is (asked on a connection of its own)."""
        endpoint_id = fut._endpoint_id or self._endpoint_id
        if endpoint_id is None:
            return None
        if kind == control.CANCEL:
            self._send_cancels(endpoint_id, [fut.task_id])
            return None
        from gce.sdk.client import Client

        with Client(self._url) as client:
            return client.task_state(fut.task_id, endpoint_id, timeout)

    def _send_cancels(self, endpoint_id: str, task_ids: list[str]) -> None:
        try:
            for item in control.cancels(endpoint_id, task_ids, self.broker_user, self.result_queue):
                self._link.publish_task(item)
        except Exception as e:  # the futures are cancelled here all the same
            log.warning("gce: could not send the cancel of %d task(s) to endpoint %s: %s", len(task_ids),
                        endpoint_id, e)

    # -- task groups (gce/sdk/groups.py) ----------------------------------------------
    def reload_tasks(self, task_group_id: str | uuid.UUID | None = None) -> list[TaskFuture]:
        """Futures of the tasks of this Executor's task group that an earlier Executor (of this or a
        killed process) left: unfinished ones, and finished ones whose results it never took.

        Create the Executor with ``task_group_id=`` the earlier one's to reattach to it. They are this
        Executor's from its start: it takes their results, waits for them at shutdown, and their
        ``cancel()`` and ``state()`` reach their endpoint as its own tasks' do."""
        if task_group_id is not None and group_id(task_group_id) != self.task_group_id:
            raise ValueError(f"this Executor holds task group {self.task_group_id}, not {task_group_id}: create "
                             f"Executor(task_group_id={str(task_group_id)!r}) to reload that group's tasks")
        return list(self._reloaded)

    def _adopt(self, task_id: str, endpoint_id: str) -> TaskFuture:
        fut = TaskFuture(task_id, self._status_of, endpoint_id or None, self._control_of)
        self._pending[task_id] = fut
        fut.add_done_callback(self._forget)
        return fut

    def _list_published(self, batch: Any) -> None:  # on the link's thread, before BATCH is published
        with self._lock:
            tasks = [(i.task_id, i.routing_key) for i in batch if i.task_id in self._pending]
        self._group.published(tasks)

    def _outstanding(self) -> dict[str, str]:
        with self._lock:
            return {task_id: fut._endpoint_id or "" for task_id, fut in self._pending.items()}

    # -- results (called on the link's thread) -----------------------------------------
    def _forget_if_cancelled(self, fut: Future) -> None:
        if fut.cancelled():
            # Moves it to CANCELLED_AND_NOTIFIED: wait() and as_completed() count only that as done.
            fut.set_running_or_notify_cancel()
            with self._lock:
                self._pending.pop(fut.task_id, None)  # type: ignore[attr-defined]
                self._remember(fut.task_id)  # type: ignore[attr-defined]
            self._group.taken(fut.task_id, self._outstanding)  # type: ignore[attr-defined]

    def _remember(self, task_id: str) -> None:
        self._completed[task_id] = None
        if len(self._completed) > COMPLETED_MEMORY:
            self._completed.popitem(last=False)

    def _on_result(self, props: Any, body: bytes) -> None:
        if props.content_type == control.ANSWER_CONTENT_TYPE:  # to a cancel this Executor sent
            return
        if props.content_type == names.RESULT_BUNDLE_CONTENT_TYPE:  # several results (its tasks asked for that)
            results, why = bundles.decode(bundles.RESULTS, body)
            if why:
                log.warning("a bundle of results from the endpoint could not be read whole (%s): %d of its "
                            "results were", why, len(results))
            for headers, payload in results:
                try:  # one result that cannot be handled must not keep the others of the bundle from their futures
                    self._on_one_result(ResultHeaders.from_amqp(None, headers), payload, headers)
                except Exception:
                    log.exception("could not handle the result of task %s", headers.get("task-id"))
            return
        self._on_one_result(ResultHeaders.from_amqp(props.correlation_id, props.headers), body, props.headers)

    def _on_one_result(self, rh: ResultHeaders, body: bytes, headers: dict | None) -> None:
        with self._lock:
            fut = self._pending.pop(rh.task_id, None)
            unread = self._unread_bundle(rh) if fut is None else []
            if fut is None and not unread:  # a duplicate (at-least-once delivery), or an earlier Executor's task
                why = "an already completed" if rh.task_id in self._completed else "an unknown"
                return log.debug("dropping a result for %s task %s", why, rh.task_id)
            if fut is not None:
                self._remember(rh.task_id)
        if fut is None:
            return self._fail_unread(rh, unread)
        if (headers or {}).get(bundles.TASK_BUNDLES_HEADER) == "1" and fut._endpoint_id:
            # The manager of the endpoint this task went to takes bundles of tasks: later bursts to it go so.
            self._link.bundle_tasks_to(fut._endpoint_id)
        ok, value, fut._output = outcome_and_output(rh, body)
        resolve(fut, ok, value)
        self._group.taken(rh.task_id, self._outstanding)  # before the link acks it

    def _bundled(self, bundle_id: str, items: Any) -> None:  # on the link's thread, as a bundle is published
        for item in items:
            if isinstance(item.future, TaskFuture):
                item.future._bundle = bundle_id

    def _unread_bundle(self, rh: ResultHeaders) -> list[TaskFuture]:
        """Holding the lock, for a result of no task of this Executor's: the tasks of the bundle it
        refuses as a whole, if it does (taken out of the pending ones); else none. An older manager,
        which reads one task per message, answers a bundle so when it took the place of one that
        said it reads them."""
        if rh.error_code != ErrorCode.BAD_MESSAGE or rh.task_id in self._completed:
            return []  # the scan below is for this rare answer only
        unread = [fut for fut in self._pending.values() if fut._bundle == rh.task_id]
        for fut in unread:
            del self._pending[fut.task_id]
            self._remember(fut.task_id)
        return unread

    def _fail_unread(self, rh: ResultHeaders, unread: list[TaskFuture]) -> None:
        """UNREAD's tasks fail saying why, rather than wait for ever; later ones go one per message."""
        log.warning("endpoint %s could not read a bundle of %d tasks (%s): they fail; later tasks to it go one "
                    "per message", unread[0]._endpoint_id, len(unread), rh.error_message)
        why = (f"the endpoint could not read the bundle of tasks this task was sent in ({rh.error_message}): it "
               "runs a gce that takes one task per message. The task did not run; submit it again (it now goes alone)")
        for endpoint_id in {fut._endpoint_id for fut in unread if fut._endpoint_id}:
            self._link.bundle_tasks_to(endpoint_id, False)
        for fut in unread:
            ok, value, fut._output = outcome_and_output(failure(fut.task_id, rh.endpoint_id, ErrorCode.BAD_MESSAGE,
                                                                why), b"")
            resolve(fut, ok, value)
            self._group.taken(fut.task_id, self._outstanding)

    def _on_publish_failed(self, item: Outgoing, exc: Exception) -> None:
        with self._lock:
            fut = self._pending.pop(item.task_id, None)
            self._remember(item.task_id)
        if fut is not None:
            resolve(fut, False, exc)
            self._group.taken(item.task_id, self._outstanding)

    def _on_fatal(self, exc: Exception) -> None:
        with self._lock:
            futures, self._pending = list(self._pending.values()), {}
        for fut in futures:
            resolve(fut, False, exc)

    # -- shutting down -----------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; WAIT for the outstanding ones unless wait=False.

        With cancel_futures=True the outstanding futures are cancelled, here and at the endpoint
        (as ``TaskFuture.cancel`` does, in one request per endpoint and 1,000 tasks). The result queue is
        deleted once nothing is outstanding, else it waits there for a later
        Executor of its task group (reload_tasks), which expires days after its last use.
        """
        with self._lock:
            already, self._shutdown = self._shutdown, True
            pending = list(self._pending.values())
        if cancel_futures:  # and at the endpoint, in requests of many tasks each
            cancelled = [fut for fut in pending if Future.cancel(fut)]
            by_endpoint: dict[str, list[str]] = {}
            for fut in cancelled:
                if fut._endpoint_id is not None:
                    by_endpoint.setdefault(fut._endpoint_id, []).append(fut.task_id)
            for endpoint_id, task_ids in by_endpoint.items():
                self._send_cancels(endpoint_id, task_ids)
        if already and not wait:
            return
        if wait:
            self._wait_and_close(pending)
        else:
            threading.Thread(target=self._wait_and_close, args=(pending,), daemon=True,
                             name="gce-sdk shutdown").start()

    def _wait_and_close(self, pending: list[TaskFuture]) -> None:
        wait(pending)
        with self._lock:
            outstanding = bool(self._pending)
        self._link.close(delete_queue=not outstanding)
        self._group.close(remove=not outstanding)  # else a later Executor of the group reloads them
        atexit.unregister(self._flush_at_exit)

    def _flush_at_exit(self) -> None:
        # The link's thread is a daemon: without this, tasks submitted just before the end of
        # a script that never called shutdown() could die unsent with the interpreter.
        if not self._link.wait_published(EXIT_FLUSH_SECONDS):
            log.warning("gce: some tasks were not confirmed by the broker before exit")
        self._group.sync()
        with self._lock:
            finished = not self._pending
        # Nothing outstanding, nothing to reload: shutdown(wait=False) whose closing thread would die
        # with us, or a script that never called shutdown(), whose group would wait days for nothing.
        if finished:
            self._link.close(delete_queue=True, timeout=5)
            self._group.close(remove=True)

    def __repr__(self) -> str:
        return f"<gce Executor endpoint={self._endpoint_id} queue={self.result_queue}>"
