"""Least-privilege broker accounts: the pure rules, then what a real RabbitMQ allows and refuses."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid

import pika
import pytest

from gce.errors import Unavailable
from gce.transport import names
from gce.transport import provision as p

# --- pure -----------------------------------------------------------------------------------


def test_hash_password_is_rabbitmq_salted_sha256():
    h = base64.b64decode(p.hash_password("s3cret", salt=b"\x01\x02\x03\x04"))
    assert h[:4] == b"\x01\x02\x03\x04"
    assert h[4:] == hashlib.sha256(b"\x01\x02\x03\x04" + b"s3cret").digest()
    assert p.hash_password("s3cret") != p.hash_password("s3cret")  # a fresh salt each time


def test_amqp_url_quotes_user_password_and_vhost():
    url = p.amqp_url("alice@uni.edu", "p@ss:/w", "broker.example.org", 5671, "/")
    assert url == "amqp://alice%40uni.edu:p%40ss%3A%2Fw@broker.example.org:5671/%2F"
    params = pika.URLParameters(url)
    assert (params.credentials.username, params.credentials.password) == ("alice@uni.edu", "p@ss:/w")
    assert (params.host, params.port, params.virtual_host) == ("broker.example.org", 5671, "/")
    assert p.amqp_url("u", "pw", "::1", 5672, "gce") == "amqp://u:pw@[::1]:5672/gce"


def _matches(regex: str, name: str) -> bool:
    return re.search(regex, name) is not None  # RabbitMQ matches with PCRE, unanchored: our ^…$ anchor


def test_user_queues_do_not_cover_a_user_whose_name_extends_hers():
    short, _ = p.user_permissions("alice@uni", [])
    assert _matches(short["configure"], "gce.results.alice@uni.q1")
    assert not _matches(short["configure"], "gce.results.alice@uni.edu.q1")
    assert not _matches(short["read"], "gce.results.alice@uni.edu.q1")
    assert _matches(short["read"], f"gce.ep.{uuid.uuid4()}.status")
    assert not _matches(short["read"], f"gce.ep.{uuid.uuid4()}.tasks")


def test_topic_permission_lists_exactly_the_allowed_endpoints():
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    _, topics = p.user_permissions("bob", [b, a, a])
    tasks = next(t for t in topics if t["exchange"] == names.TASKS_EXCHANGE)
    assert tasks["write"] == f"^({re.escape(min(a, b))}|{re.escape(max(a, b))})$"
    assert sorted(p.parse_topic_alternatives(tasks["write"])) == sorted([a, b])
    assert not _matches(tasks["write"], a + "x") and not _matches(tasks["write"], "#")
    _, none = p.user_permissions("bob", [])
    assert none[0]["write"] == "^$" and p.parse_topic_alternatives("^$") == []


def test_endpoint_ids_are_checked():
    with pytest.raises(ValueError):
        p.endpoint_permissions("ep-x", "a.b")
    with pytest.raises(ValueError):
        p.user_permissions("bob", ["#"])


def test_definitions_hold_hashes_never_passwords():
    eid = str(uuid.uuid4())
    defs = p.definitions("gce", endpoints=[(p.Account("ep-demo", "pw-endpoint"), eid)],
                         users=[(p.Account("alice@uni.edu", "pw-alice"), [eid])])
    text = json.dumps(defs)
    assert "pw-endpoint" not in text and "pw-alice" not in text
    assert {u["name"] for u in defs["users"]} == {"ep-demo", "alice@uni.edu"}
    assert all(u["hashing_algorithm"] == "rabbit_password_hashing_sha256" and u["tags"] == [] for u in defs["users"])
    assert {(x["name"], x["durable"]) for x in defs["exchanges"]} == {
        (names.TASKS_EXCHANGE, True), (names.RESULTS_EXCHANGE, True), (names.STATUS_EXCHANGE, True)}
    assert {x["vhost"] for x in defs["permissions"] + defs["topic_permissions"] + defs["exchanges"]} == {"gce"}


# --- against the session broker ----------------------------------------------------------------

class Setup:
    def __init__(self, broker) -> None:
        self.eid, self.other = str(uuid.uuid4()), str(uuid.uuid4())
        tag = uuid.uuid4().hex[:6]
        self.alice, self.bob = f"alice.{tag}@uni.edu", f"bob.{tag}@uni.edu"
        self.ep_url, users = broker.provision(self.eid, users=[self.alice, self.bob])
        self.alice_url, self.bob_url = users[self.alice], users[self.bob]
        self.ep_account = f"ep-{self.eid}"
        self.admin_url = broker.admin_url_for(pika.URLParameters(self.ep_url).virtual_host)
        self.conns: dict[str, pika.BlockingConnection] = {}

    def channel(self, url: str):
        """A fresh channel (a refused operation closes its channel) with publisher confirms."""
        if url not in self.conns:
            self.conns[url] = pika.BlockingConnection(pika.URLParameters(url))
        ch = self.conns[url].channel()
        ch.confirm_delivery()
        return ch

    def close(self) -> None:
        for c in self.conns.values():
            if c.is_open:
                c.close()
        self.conns.clear()


@pytest.fixture()
def setup(broker):
    s = Setup(broker)
    yield s
    s.close()


def refused(code: int, action) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        action()
    assert info.value.reply_code == code, info.value.reply_text


def _endpoint_queues(s: Setup) -> tuple[str, str]:
    ch = s.channel(s.ep_url)
    tq, sq = names.endpoint_task_queue(s.eid), names.endpoint_status_queue(s.eid)
    ch.queue_declare(tq, durable=True)
    ch.queue_bind(tq, names.TASKS_EXCHANGE, routing_key=s.eid)
    ch.queue_declare(sq, durable=True, arguments={"x-max-length": 1})
    ch.queue_bind(sq, names.STATUS_EXCHANGE, routing_key=s.eid)
    return tq, sq


def _result_queue(s: Setup, user: str, url: str) -> str:
    ch = s.channel(url)
    rq = names.result_queue(user, uuid.uuid4().hex)
    ch.queue_declare(rq, durable=True, arguments={"x-expires": names.EXECUTOR_QUEUE_EXPIRES_MS})
    ch.queue_bind(rq, names.RESULTS_EXCHANGE, routing_key=rq)
    return rq


def _get(ch, queue: str):
    for _ in range(50):
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return props, body
        ch.connection.sleep(0.05)
    raise AssertionError(f"nothing arrived on {queue}")


@pytest.mark.broker
def test_task_and_result_round_trip_carry_verified_identities(setup):
    s = setup
    tq, sq = _endpoint_queues(s)
    rq = _result_queue(s, s.alice, s.alice_url)
    alice = s.channel(s.alice_url)
    alice.basic_publish(names.TASKS_EXCHANGE, s.eid, b"task", pika.BasicProperties(
        user_id=s.alice, reply_to=rq, message_id="t1", delivery_mode=2), mandatory=True)
    ep = s.channel(s.ep_url)
    props, body = _get(ep, tq)
    assert (props.user_id, props.reply_to, body) == (s.alice, rq, b"task")
    ep.basic_publish(names.RESULTS_EXCHANGE, rq, b"result", pika.BasicProperties(user_id=s.ep_account), mandatory=True)
    ep.basic_publish(names.STATUS_EXCHANGE, s.eid, b"{}", pika.BasicProperties(user_id=s.ep_account), mandatory=True)
    props, body = _get(alice, rq)
    assert (props.user_id, body) == (s.ep_account, b"result")
    props, body = _get(alice, sq)  # users read endpoints' status
    assert body == b"{}"


@pytest.mark.broker
def test_endpoint_is_confined_to_its_own_queues(setup):
    s = setup
    _endpoint_queues(s)
    other = names.endpoint_task_queue(s.other)
    refused(403, lambda: s.channel(s.ep_url).queue_declare(other, durable=True))
    s.channel(s.admin_url).queue_declare(other, durable=True)  # the other endpoint's inbox exists
    refused(403, lambda: s.channel(s.ep_url).basic_get(other))
    refused(403, lambda: s.channel(s.ep_url).queue_delete(other))
    # Binding its own queue to every endpoint's tasks, or publishing another endpoint's status:
    own = names.endpoint_task_queue(s.eid)
    refused(403, lambda: s.channel(s.ep_url).queue_bind(own, names.TASKS_EXCHANGE, routing_key="#"))
    refused(403, lambda: s.channel(s.ep_url).queue_bind(own, names.TASKS_EXCHANGE, routing_key=s.other))
    refused(403, lambda: s.channel(s.ep_url).basic_publish(names.STATUS_EXCHANGE, s.other, b"{}"))
    refused(403, lambda: s.channel(s.ep_url).basic_publish(names.TASKS_EXCHANGE, s.eid, b"x"))


@pytest.mark.broker
def test_user_may_only_submit_as_herself_to_her_endpoints(setup):
    s = setup
    tq, _ = _endpoint_queues(s)

    def publish(key: str, user_id: str, exchange: str = names.TASKS_EXCHANGE):
        return lambda: s.channel(s.alice_url).basic_publish(exchange, key, b"task", pika.BasicProperties(user_id=user_id))

    publish(s.eid, s.alice)()
    refused(406, publish(s.eid, s.bob))  # forged user_id
    refused(406, publish(s.eid, s.ep_account))
    refused(403, publish(s.other, s.alice))  # outside her topic permission
    refused(403, publish(tq, s.alice, exchange=""))  # straight into the queue via the default exchange
    refused(403, lambda: s.channel(s.alice_url).basic_get(tq))  # reading the endpoint's tasks
    refused(403, lambda: s.channel(s.alice_url).queue_purge(tq))
    refused(403, lambda: s.channel(s.alice_url).basic_publish(names.RESULTS_EXCHANGE, "x", b"fake"))


@pytest.mark.broker
def test_user_cannot_touch_or_tap_another_users_results(setup):
    s = setup
    bob_q = _result_queue(s, s.bob, s.bob_url)
    alice_q = _result_queue(s, s.alice, s.alice_url)
    refused(403, lambda: s.channel(s.alice_url).basic_get(bob_q))
    refused(403, lambda: s.channel(s.alice_url).queue_delete(bob_q))
    refused(403, lambda: s.channel(s.alice_url).queue_declare(names.result_queue(s.bob, "mine"), durable=True))
    # Her own queue bound with his reply_to, or with a wildcard, would receive copies of his results.
    refused(403, lambda: s.channel(s.alice_url).queue_bind(alice_q, names.RESULTS_EXCHANGE, routing_key=bob_q))
    refused(403, lambda: s.channel(s.alice_url).queue_bind(alice_q, names.RESULTS_EXCHANGE,
                                                           routing_key=f"gce.results.{s.alice}.*"))


@pytest.mark.broker
def test_import_definitions_reports_rabbitmqctl_errors(broker):
    env = {**broker.env, "RABBITMQ_NODENAME": "nobody-here@localhost"}
    defs = p.definitions("unused", endpoints=[(p.Account("ep-x", "pw"), str(uuid.uuid4()))])
    with pytest.raises(Unavailable) as info:
        p.import_definitions(defs, rabbitmqctl=broker.rabbitmqctl, env=env)
    assert "import_definitions" in info.value.what
    assert "nobody-here" in info.value.why
    with pytest.raises(Unavailable):
        p.import_definitions(defs, rabbitmqctl="/nonexistent/rabbitmqctl", env=env)


@pytest.mark.broker
def test_current_task_endpoints_reads_back_the_grants(broker):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    url, users = broker.provision(a, users=["carol"])
    vhost = pika.URLParameters(url).virtual_host
    defs = p.definitions(vhost, users=[(p.Account("carol", "pw"), [a, b])])
    p.import_definitions(defs, rabbitmqctl=broker.rabbitmqctl, env=broker.env)
    found = p.current_task_endpoints(vhost, rabbitmqctl=broker.rabbitmqctl, env=broker.env)
    assert sorted(found["carol"]) == sorted([a, b])
    assert p.current_task_endpoints("no-such-vhost", rabbitmqctl=broker.rabbitmqctl, env=broker.env) == {}


@pytest.mark.broker
@pytest.mark.slow
def test_accounts_and_persistent_messages_survive_a_broker_restart(broker, setup):
    s = setup
    tq, _ = _endpoint_queues(s)
    s.channel(s.alice_url).basic_publish(names.TASKS_EXCHANGE, s.eid, b"kept", pika.BasicProperties(
        user_id=s.alice, delivery_mode=2))
    s.close()
    broker.restart(down=0.5)
    props, body = _get(s.channel(s.ep_url), tq)
    assert (props.user_id, body) == (s.alice, b"kept")
