"""The --probe check: a real no-op task through the broker to the endpoint and back.

It submits as whoever runs gce diagnostic, with the broker URL gce.sdk would use
($GCE_BROKER_URL, then sdk.yaml): the endpoint's own account may not submit tasks. Only the
result's headers are read: the diagnostic may run as root, and root never unpickles what an
endpoint sent back (DESIGN.md, invariant 1).
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from gce.commands.diagnostic.checks import Context
from gce.commands.diagnostic.result import Result, fail, ok, skip, timed_ms

CHECK = "task round trip"
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 10.0  # a no-op on a ready endpoint answers in well under a second


def noop() -> None:
    """The probe's task: imported by reference on the endpoint, so it costs nothing to run."""


def _headers_only_executor(url: str, endpoint_id: str) -> Any:
    from gce.sdk import Executor
    from gce.transport.message import ResultHeaders

    class HeadersOnly(Executor):
        """An Executor whose futures resolve to the result's headers: the body is never read."""

        def _on_result(self, props: Any, body: bytes) -> None:
            rh = ResultHeaders.from_amqp(props.correlation_id, props.headers)
            with self._lock:
                fut = self._pending.pop(rh.task_id, None)
            if fut is not None and fut.set_running_or_notify_cancel():
                fut.set_result(rh)

    return HeadersOnly(endpoint_id=endpoint_id, broker_url=url, connect_timeout=CONNECT_TIMEOUT)


def probe(ctx: Context, timeout: float = ANSWER_TIMEOUT) -> Result:
    from gce.sdk.errors import SdkError
    from gce.sdk.settings import broker_user, resolve_broker_url

    if ctx.config is None:
        return skip(CHECK, "the config did not load")
    name = ctx.paths.name
    try:
        url = resolve_broker_url()
        user = broker_user(url)
    except SdkError as e:
        return skip(CHECK, f"no broker user to submit as: {e}",
                    "set GCE_BROKER_URL to the URL of a broker user allowed on this endpoint, or "
                    f"gce broker provision --endpoint {name} --user USER --sdk-config")
    if ctx.live is not None and ctx.live.state != "running":
        # A task sent now would wait on the broker until the endpoint starts: send none.
        return fail(CHECK, f"endpoint {name} is not running, so no task can make the round trip",
                    f"gce start {name} --detach")
    try:
        ex = _headers_only_executor(url, ctx.config.endpoint_id)
    except Exception as e:  # pika's and the SDK's errors alike: the verdict says which
        return fail(CHECK, f"broker user {user} cannot connect: {type(e).__name__}: {e}",
                    "gce diagnostic checks the endpoint's own login above; check the URL in "
                    "$GCE_BROKER_URL or sdk.yaml", user=user)
    try:
        start = time.monotonic()  # the round trip, not the login
        fut = ex.submit(noop)
        try:
            rh = fut.result(timeout=timeout)
        except FutureTimeout:
            return fail(CHECK, f"no answer from endpoint {name} within {timeout:g} s",
                        f"the endpoint takes no tasks: see gce status {name} and its log", user=user)
        except Exception as e:
            return fail(CHECK, f"the task from {user} was refused: {type(e).__name__}: {e}",
                        f"is {user} allowed on this endpoint? gce broker provision --endpoint {name} --user {user}",
                        user=user)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    ms = timed_ms(start)
    if rh.status != "success":
        return fail(CHECK, f"the no-op task failed after {ms} ms: {rh.error_code}: {rh.error_message}",
                    f"see gce status {name} and its log", user=user, round_trip_ms=ms)
    return ok(CHECK, f"a no-op task from {user} came back in {ms} ms", user=user, round_trip_ms=ms)
