"""Client.get_endpoint_status against a real endpoint: what it tells, who may read it, and
that reading leaves it for the next reader."""

from __future__ import annotations

import uuid

import pika
import pytest

from gce.sdk import Client
from gce.transport import names
from gce.transport import provision as p
from gce.transport import rabbitmqctl as rmq

pytestmark = pytest.mark.broker

PUBLIC_KEYS = {"endpoint_id", "display_name", "state", "accepting_tasks", "gce_version", "engine_type",
               "tasks_in_flight", "timestamp", "reason", "python_version", "cloudpickle_version", "reads"}


def test_published_status_tells_submitters_only_the_public_fields(sdk_broker, gce_home):
    with Client(sdk_broker.user_url) as alice:
        status = alice.get_endpoint_status(sdk_broker.endpoint_id)
    assert status["status"] == "online", status
    details = status["details"]
    assert set(details) == PUBLIC_KEYS, sorted(details)
    assert details["endpoint_id"] == sdk_broker.endpoint_id and details["accepting_tasks"] is True
    assert details["engine_type"] == "ThreadPoolEngine" and details["state"] == "running"


def test_reading_the_status_leaves_it_for_every_next_reader(sdk_broker, gce_home):
    with Client(sdk_broker.user_url) as alice, Client(sdk_broker.other_user_url) as bob:
        seen = [c.get_endpoint_status(sdk_broker.endpoint_id) for c in (alice, bob, alice, bob, bob)]
    assert [s["status"] for s in seen] == ["online"] * 5, seen
    # Not consumed: a report one reader read was there for the next one too. (How many reports
    # the five reads saw depends on how many 2 s periods they spanned on a loaded machine; a
    # consuming read would leave every next reader a new report or none.)
    stamps = [s["last_seen"] for s in seen]
    assert any(a == b for a, b in zip(stamps, stamps[1:])), stamps


def test_users_are_refused_the_status_of_endpoints_they_may_not_use(sdk_broker, gce_home, broker):
    forbidden = names.endpoint_status_queue(sdk_broker.forbidden_endpoint_id)
    conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.admin_url))
    try:
        ch = conn.channel()
        ch.queue_declare(forbidden, durable=True, arguments={"x-max-length": 1})
        ch.queue_bind(forbidden, names.STATUS_EXCHANGE, routing_key=sdk_broker.forbidden_endpoint_id)
        ch.basic_publish(names.STATUS_EXCHANGE, sdk_broker.forbidden_endpoint_id, b'{"timestamp": 1e12}')
        with Client(sdk_broker.user_url) as alice:
            status = alice.get_endpoint_status(sdk_broker.forbidden_endpoint_id)
        assert status["status"] == "unknown" and "may not read" in status["reason"], status
    finally:
        conn.channel().queue_delete(forbidden)
        conn.close()


@pytest.fixture()
def rogue_endpoint(sdk_broker, broker):
    """A second endpoint account on the SDK's vhost (serving the forbidden endpoint id), and the
    status queue of the unstarted endpoint, as if it had once run; both gone afterwards."""
    rogue = p.Account(f"ep-rogue-{uuid.uuid4().hex[:8]}", p.generate_password())
    rmq.import_definitions(p.definitions(sdk_broker.vhost, endpoints=[(rogue, sdk_broker.forbidden_endpoint_id)]),
                         rabbitmqctl=broker.rabbitmqctl, env=broker.env)
    ghost = sdk_broker.unstarted_endpoint_id
    admin = pika.BlockingConnection(pika.URLParameters(sdk_broker.admin_url))
    ach = admin.channel()
    ach.queue_declare(names.endpoint_status_queue(ghost), durable=True, arguments={"x-max-length": 1})
    ach.queue_bind(names.endpoint_status_queue(ghost), names.STATUS_EXCHANGE, routing_key=ghost)
    conn = pika.BlockingConnection(pika.URLParameters(
        p.amqp_url(rogue.name, rogue.password, "127.0.0.1", broker.port, sdk_broker.vhost)))
    try:
        yield conn.channel(), rogue.name, ach
    finally:
        conn.close()
        ach.queue_delete(names.endpoint_status_queue(ghost))
        admin.close()
        broker.ctl("delete_user", rogue.name, check=False)


def _forged(endpoint_id: str) -> bytes:
    import json
    import time

    return json.dumps({"endpoint_id": endpoint_id, "state": "running", "accepting_tasks": True,
                       "timestamp": time.time()}).encode()


@pytest.mark.parametrize("how", ["cc", "relay"])
def test_a_status_another_endpoint_put_in_the_queue_is_not_believed(sdk_broker, gce_home, rogue_endpoint, how):
    ch, account, admin = rogue_endpoint
    ghost, own = sdk_broker.unstarted_endpoint_id, sdk_broker.forbidden_endpoint_id
    if how == "cc":  # topic permissions on gce.status see the routing key, not the CC header
        ch.basic_publish(names.STATUS_EXCHANGE, own, _forged(ghost),
                         pika.BasicProperties(user_id=account, headers={"CC": [ghost]}))
    else:  # its own exchange, bound into gce.status, takes any routing key
        relay = f"gce.ep.{own}.relay"
        ch.exchange_declare(relay, "fanout", auto_delete=True)
        ch.exchange_bind(names.STATUS_EXCHANGE, relay)
        ch.basic_publish(relay, ghost, _forged(ghost), pika.BasicProperties(user_id=account))
    for _ in range(50):  # routed once the queue counts it
        if admin.queue_declare(names.endpoint_status_queue(ghost), passive=True).method.message_count:
            break
        admin.connection.sleep(0.05)
    with Client(sdk_broker.user_url) as alice:
        status = alice.get_endpoint_status(ghost)
    assert status["status"] == "unknown", status
    assert "did not come from the endpoint" in status["reason"] and "details" not in status
