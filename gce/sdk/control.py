"""Asking an endpoint where tasks are, and cancelling them (gce.transport.control), from the SDK.

A question travels like a task (gce.tasks, the endpoint's id as routing key, the asker's user_id),
so only a task's submitter can ask about it. The answer comes to a queue of the asker's own made
for it (exclusive: it goes with the connection), never to a result queue, so results and answers
never mix. When no answer comes in time the endpoint has not taken the question off the broker,
nor the task ahead of it: the task is queued. A question expires on the broker after a minute (an
offline endpoint finds no stale questions at its start); a cancel does not: it waits behind its task.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future
from typing import Any

import pika

from gce.sdk.errors import SdkError, no_task_queue, submit_refused
from gce.sdk.tasks import Outgoing
from gce.transport import control, names
from gce.transport.control import ANSWER_CONTENT_TYPE, CANCEL, DONE, QUEUED, STATE, UNKNOWN

ANSWER_SECONDS = 5.0  # how long get_task and Client.cancel wait for the endpoint's answer
QUESTION_EXPIRES_MS = 60_000


class ControlRefused(SdkError):
    """The endpoint refused a question or cancel, or could not answer it; str() says why."""

    code = "CONTROL_REFUSED"


def properties(kind: str, task_ids: list[str], user: str, reply_to: str) -> tuple[str, pika.BasicProperties]:
    """(request id, AMQP properties) of a control message of KIND about TASK_IDS."""
    request_id = str(uuid.uuid4())
    props = pika.BasicProperties(
        message_id=request_id, user_id=user, reply_to=reply_to, content_type=control.CONTENT_TYPE,
        headers=control.request_headers(kind, task_ids), delivery_mode=2 if kind == CANCEL else 1,
        expiration=None if kind == CANCEL else str(QUESTION_EXPIRES_MS))
    return request_id, props


def cancels(endpoint_id: str, task_ids: list[str], user: str, reply_to: str) -> list[Outgoing]:
    """Cancels of TASK_IDS for an Executor's link to publish (its answers are dropped: each task's own
    result says CANCELLED)."""
    out = []
    for i in range(0, len(task_ids), control.MAX_TASK_IDS):
        request_id, props = properties(CANCEL, task_ids[i:i + control.MAX_TASK_IDS], user, reply_to)
        out.append(Outgoing(request_id, endpoint_id, b"", props, Future()))
    return out


def ask(ch: Any, user: str, endpoint_id: str, kind: str, task_ids: list[str], timeout: float) -> dict[str, Any] | None:
    """On the blocking channel CH: send a control message of KIND about TASK_IDS to ENDPOINT_ID and
    wait up to TIMEOUT seconds for its answer: {task id: what the endpoint says}, or None when it
    did not answer. ControlRefused when it refused the message."""
    reply_to = names.result_queue(user, "control" + uuid.uuid4().hex)
    ch.queue_declare(reply_to, exclusive=True, auto_delete=True)
    ch.queue_bind(reply_to, names.RESULTS_EXCHANGE, routing_key=reply_to)
    request_id, props = properties(kind, task_ids, user, reply_to)
    ch.confirm_delivery()
    try:
        ch.basic_publish(names.TASKS_EXCHANGE, endpoint_id, b"", props, mandatory=True)
    except pika.exceptions.UnroutableError:
        raise no_task_queue(endpoint_id, task_ids[0]) from None
    except pika.exceptions.ChannelClosedByBroker as e:
        raise submit_refused(endpoint_id, user, e.reply_text, task_ids[0]) from None
    deadline = time.monotonic() + timeout
    try:
        for method, props_in, body in ch.consume(reply_to, inactivity_timeout=0.1):
            if method is not None:
                ch.basic_ack(method.delivery_tag)
                if props_in.correlation_id == request_id and props_in.content_type == control.ANSWER_CONTENT_TYPE:
                    break
            if time.monotonic() >= deadline:
                return None
    finally:
        ch.cancel()
    try:
        answer = control.parse_answer(body)
    except ValueError as e:
        raise ControlRefused(f"error: endpoint {endpoint_id} answered the {kind} request with something unreadable: "
                             f"{e}") from None
    if answer.get("error"):
        raise ControlRefused(f"error: endpoint {endpoint_id} did not answer the {kind} request: "
                             f"{str(answer['error'])[:500]}")
    tasks: dict[str, Any] = answer["tasks"]
    return tasks


def state_of(answer: dict[str, Any] | None, task_id: str, timeout: float) -> dict[str, Any]:
    """What the SDK says of TASK_ID from an endpoint's ANSWER to a state question (None: no answer)."""
    if answer is None:
        return {"state": QUEUED, "reason": f"the endpoint did not take the question off the broker within "
                f"{timeout:g} s: the task waits on the broker (the endpoint is offline or busy)"}
    told = answer.get(task_id)
    if not isinstance(told, dict) or told.get("state") not in control.STATES:
        return {"state": control.UNKNOWN, "reason": "the endpoint said nothing of it"}
    out: dict[str, Any] = {"state": told["state"]}
    if isinstance(told.get("since"), (int, float)):
        out["since"] = float(told["since"])
    for key in ("cancelled", "reason", "where"):
        if key in told:
            out[key] = told[key]
    return out


__all__ = ["ANSWER_CONTENT_TYPE", "ANSWER_SECONDS", "CANCEL", "DONE", "QUEUED", "STATE", "UNKNOWN", "ControlRefused",
           "ask", "cancels", "properties", "state_of"]
