"""A task reaches an endpoint only the way topic permissions allow: through gce.tasks, with
the endpoint's id as routing key. The other ways into its inbox (see the docstring of
gce.transport.provision) are refused by the endpoint, and answered."""

from __future__ import annotations

import uuid

import pika
import pytest

from gce.sdk import serialize
from gce.sdk.tasks import DEFAULT_MAX_PAYLOAD_BYTES, task_message
from gce.transport import names
from gce.transport import provision as p
from gce.transport import rabbitmqctl as rmq
from gce.transport.message import ErrorCode, ResultHeaders

pytestmark = pytest.mark.broker


def triple(x):
    return 3 * x


@pytest.fixture()
def mallory(sdk_broker, broker):
    """A user on the SDK's vhost who may submit to the unstarted endpoint only, with a result queue."""
    name = f"mallory.{uuid.uuid4().hex[:8]}"
    account = p.Account(name, p.generate_password())
    rmq.import_definitions(p.definitions(sdk_broker.vhost, users=[(account, [sdk_broker.unstarted_endpoint_id])]),
                         rabbitmqctl=broker.rabbitmqctl, env=broker.env)
    conn = pika.BlockingConnection(pika.URLParameters(
        p.amqp_url(name, account.password, "127.0.0.1", broker.port, sdk_broker.vhost)))
    ch = conn.channel()
    queue = names.result_queue(name, uuid.uuid4().hex)
    ch.queue_declare(queue, auto_delete=True)
    ch.queue_bind(queue, names.RESULTS_EXCHANGE, routing_key=queue)
    try:
        yield ch, name, queue
    finally:
        conn.close()
        broker.ctl("delete_user", name, check=False)


def _answer(ch, queue: str, timeout_s: float = 20.0) -> tuple[ResultHeaders, bytes]:
    for _ in range(int(timeout_s / 0.05)):
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return ResultHeaders.from_amqp(props.correlation_id, props.headers), body
        ch.connection.sleep(0.05)
    raise AssertionError(f"no answer on {queue}")


@pytest.mark.parametrize("how", ["relay", "cc", "bcc"])
def test_a_task_smuggled_past_the_topic_permission_is_refused(sdk_broker, mallory, how):
    ch, user, queue = mallory
    target, allowed = sdk_broker.endpoint_id, sdk_broker.unstarted_endpoint_id
    kind, blob = serialize.serialize_function(triple)
    task_id, body, props = task_message(kind, blob, serialize.function_id_of(kind, blob), (5,), {}, user=user,
                                        reply_to=queue, user_endpoint_config={}, resource_specification={},
                                        max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES)
    if how == "relay":  # her own exchange (named like her queues), bound into gce.tasks
        relay = names.result_queue(user, "relay")
        ch.exchange_declare(relay, "fanout", auto_delete=True)
        ch.exchange_bind(names.TASKS_EXCHANGE, relay)
        ch.basic_publish(relay, target, body, props)
    else:  # a routing key she may use, and the endpoint's id where topic permissions do not look
        props.headers = {**props.headers, how.upper(): [target]}
        ch.basic_publish(names.TASKS_EXCHANGE, allowed, body, props)
    rh, _ = _answer(ch, queue)
    assert rh.task_id == task_id
    assert (rh.status, rh.error_code) == ("failed", ErrorCode.BAD_MESSAGE), rh
    assert "gce.tasks" in rh.error_message
