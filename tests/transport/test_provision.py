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
from gce.transport import rabbitmqctl as rmq

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


def test_amqp_url_of_a_cluster_lists_every_node_each_with_its_port():
    assert p.amqp_url("u", "pw", "n1,n2:5673,::1,[::2]:5674", 5671, "gce") == (
        "amqp://u:pw@n1:5671,n2:5673,[::1]:5671,[::2]:5674/gce")


def _matches(regex: str, name: str) -> bool:
    return re.search(regex, name) is not None  # RabbitMQ matches with PCRE, unanchored: our ^…$ anchor


def test_user_queues_do_not_cover_a_user_whose_name_extends_hers():
    short, _ = p.user_permissions("alice@uni", [])
    assert _matches(short["configure"], "gce.results.alice@uni.q1")
    assert not _matches(short["configure"], "gce.results.alice@uni.edu.q1")
    assert not _matches(short["read"], "gce.results.alice@uni.edu.q1")
    assert not _matches(short["read"], f"gce.ep.{uuid.uuid4()}.tasks")


def test_function_queues_are_her_own_and_named_by_a_sha256():
    fid = "ab" * 32
    perms, topics = p.user_permissions("a@b", [])
    functions = next(t for t in topics if t["exchange"] == names.FUNCTIONS_EXCHANGE)
    for regex in (perms["configure"], perms["write"], perms["read"], functions["write"], functions["read"]):
        assert _matches(regex, names.function_queue("a@b", fid))
        assert not _matches(regex, names.function_queue("a@b.cafe", fid))  # a user whose name extends hers
        assert not _matches(regex, names.function_queue("a@b", fid[:-1] + "#"))  # no wildcards, no odd ids
        assert not _matches(regex, names.function_queue("a@b", "*"))
    assert _matches(perms["write"], names.FUNCTIONS_EXCHANGE) and _matches(perms["read"], names.FUNCTIONS_EXCHANGE)
    assert not _matches(perms["configure"], names.FUNCTIONS_EXCHANGE)


def test_users_read_the_status_of_their_own_endpoints_only():
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    perms, _ = p.user_permissions("alice", [mine])
    assert _matches(perms["read"], names.endpoint_status_queue(mine))
    assert not _matches(perms["read"], names.endpoint_status_queue(other))
    assert not _matches(perms["read"], names.endpoint_status_queue(mine + "0"))
    assert not _matches(perms["read"], names.endpoint_task_queue(mine))
    nothing, _ = p.user_permissions("alice", [])
    assert not _matches(nothing["read"], names.endpoint_status_queue(mine))
    assert _matches(nothing["read"], names.result_queue("alice", "client"))


@pytest.mark.parametrize("name", ["*", "x.*", "#", "a.#.b", "a*", "", "a" * 129, "a b", "a/b", "a\x00"])
def test_user_names_that_would_be_binding_wildcards_are_refused(name):
    # A user named "*" could bind her queue with "gce.results.*.client", her own name in her
    # own topic permission, and receive every user's results.
    with pytest.raises(ValueError):
        p.check_broker_user(name)
    with pytest.raises(ValueError):
        p.user_permissions(name, [])


def test_result_queue_rules_match_what_the_endpoint_accepts_as_reply_to():
    """Whatever a user may declare and bind is a reply_to the endpoint takes from her, and no more."""
    from gce.transport.message import reply_to_belongs

    for user in ("alice", "alice.x", "a+b", "alice@uni.edu", "(a)[b]{1}^$|+\\"):
        perms, topics = p.user_permissions(user, [])
        bind_key = next(t for t in topics if t["exchange"] == names.RESULTS_EXCHANGE)["read"]
        for suffix in ("client", uuid.uuid4().hex, "x" * 128, "x" * 129, "a.b", "", "q-1_2"):
            queue = f"gce.results.{user}.{suffix}"
            ok = reply_to_belongs(user, queue)
            assert _matches(perms["configure"], queue) == ok, (user, suffix)
            assert _matches(perms["read"], queue) == ok, (user, suffix)
            assert _matches(bind_key, queue) == ok, (user, suffix)
        assert reply_to_belongs(user, names.result_queue(user, uuid.uuid4().hex))
        assert reply_to_belongs(user, names.client_result_queue(user))
    # Neither of two users whose names extend each other's reaches the other's queues.
    for a, b in (("alice", "alice.x"), ("alice.x", "alice"), ("a+b", "aab"), ("a", "a+b")):
        perms, _ = p.user_permissions(a, [])
        for queue in (names.client_result_queue(b), names.result_queue(b, "x")):
            assert not _matches(perms["configure"], queue) and not _matches(perms["read"], queue), (a, b, queue)


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
        (names.TASKS_EXCHANGE, True), (names.RESULTS_EXCHANGE, True), (names.STATUS_EXCHANGE, True),
        (names.FUNCTIONS_EXCHANGE, True), (names.DIRECTORY_EXCHANGE, True)}
    # Each user's list of endpoints (gce.transport.directory): one message at most, bound by her name.
    assert [(q["name"], q["arguments"]) for q in defs["queues"]] == [(names.directory_queue("alice@uni.edu"),
                                                                     {"x-max-length": 1})]
    assert [(b["source"], b["routing_key"]) for b in defs["bindings"]] == [(names.DIRECTORY_EXCHANGE, "alice@uni.edu")]
    writer = p.directory_writer("gce", p.Account("gce-directory-0123456789abcdef", "pw-writer"), ["alice@uni.edu"])
    assert "pw-writer" not in json.dumps(writer)
    assert writer["permissions"][0]["configure"] == writer["permissions"][0]["read"] == "^$"
    assert writer["topic_permissions"][0]["write"] == r"^(alice@uni\.edu)$"
    assert {x["vhost"] for x in defs["permissions"] + defs["topic_permissions"] + defs["exchanges"]} == {"gce"}



def test_a_known_password_is_checked_against_the_brokers_hash():
    record = {"name": "alice", "password_hash": p.hash_password("s3cret"), "hashing_algorithm": p.HASHING_ALGORITHM}
    assert p.password_matches(record, "s3cret")
    assert not p.password_matches(record, "s3cret2")
    assert not p.password_matches({**record, "hashing_algorithm": "rabbit_password_hashing_sha512"}, "s3cret")
    assert not p.password_matches({**record, "password_hash": ""}, "")
    assert not p.password_matches({**record, "password_hash": "not base64!"}, "s3cret")


def test_an_account_without_a_password_gets_grants_only():
    eid = str(uuid.uuid4())
    defs = p.definitions("gce", users=[(p.Account("alice", None), [eid])])
    assert defs["users"] == []
    assert [x["user"] for x in defs["permissions"]] == ["alice"]
    assert p.task_endpoints(defs, "gce") == {"alice": [eid]}

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
    # Nor another endpoint's status, nor anyone's results.
    own_status = names.endpoint_status_queue(s.eid)
    refused(403, lambda: s.channel(s.ep_url).queue_bind(own_status, names.STATUS_EXCHANGE, routing_key="#"))
    refused(403, lambda: s.channel(s.ep_url).queue_bind(own, names.RESULTS_EXCHANGE, routing_key="#"))
    refused(403, lambda: s.channel(s.ep_url).basic_get(names.endpoint_status_queue(s.other)))
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
        rmq.import_definitions(defs, rabbitmqctl=broker.rabbitmqctl, env=env)
    assert "import_definitions" in info.value.what
    assert "nobody-here" in info.value.why
    with pytest.raises(Unavailable):
        rmq.import_definitions(defs, rabbitmqctl="/nonexistent/rabbitmqctl", env=env)


@pytest.mark.broker
def test_current_task_endpoints_reads_back_the_grants(broker):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    # Accounts are broker-wide: a name of its own, so that no other test meets it as an existing user.
    user = f"reader-{uuid.uuid4().hex[:8]}"
    url, users = broker.provision(a, users=[user])
    vhost = pika.URLParameters(url).virtual_host
    defs = p.definitions(vhost, users=[(p.Account(user, "pw"), [a, b])])
    rmq.import_definitions(defs, rabbitmqctl=broker.rabbitmqctl, env=broker.env)
    found = rmq.current_task_endpoints(vhost, rabbitmqctl=broker.rabbitmqctl, env=broker.env)
    assert sorted(found[user]) == sorted([a, b])
    assert rmq.current_task_endpoints("no-such-vhost", rabbitmqctl=broker.rabbitmqctl, env=broker.env) == {}


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


@pytest.mark.broker
def test_users_read_only_the_status_of_endpoints_they_may_use(broker):
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    tag = uuid.uuid4().hex[:6]
    ep_url, users = broker.provision(mine, users=[f"carol.{tag}"])
    admin = pika.BlockingConnection(pika.URLParameters(broker.admin_url_for(pika.URLParameters(ep_url).virtual_host)))
    carol = pika.BlockingConnection(pika.URLParameters(users[f"carol.{tag}"]))
    try:
        ach = admin.channel()
        for eid in (mine, theirs):
            sq = names.endpoint_status_queue(eid)
            ach.queue_declare(sq, durable=True, arguments={"x-max-length": 1})
            ach.queue_bind(sq, names.STATUS_EXCHANGE, routing_key=eid)
            ach.basic_publish(names.STATUS_EXCHANGE, eid, b'{"secret": "pids and accounts"}')
        assert _get(carol.channel(), names.endpoint_status_queue(mine))[1] == b'{"secret": "pids and accounts"}'
        for action in (lambda ch: ch.basic_get(names.endpoint_status_queue(theirs)),
                       lambda ch: ch.queue_purge(names.endpoint_status_queue(theirs)),
                       lambda ch: ch.basic_consume(names.endpoint_status_queue(theirs), lambda *a: None)):
            refused(403, lambda: action(carol.channel()))
        assert ach.queue_declare(names.endpoint_status_queue(theirs), passive=True).method.message_count == 1
    finally:
        carol.close()
        admin.close()


@pytest.mark.broker
def test_users_whose_names_extend_or_escape_each_other_stay_apart(broker):
    """Dots and regex metacharacters in user names: no one reaches another's queues."""
    tag = uuid.uuid4().hex[:6]
    who = {"short": f"u{tag}", "dotted": f"u{tag}.x", "plus": f"u{tag}a+b", "aab": f"u{tag}aab"}
    eid = str(uuid.uuid4())
    _, urls = broker.provision(eid, users=list(who.values()))
    conns = {k: pika.BlockingConnection(pika.URLParameters(urls[u])) for k, u in who.items()}
    try:
        queues = {}
        for k, user in who.items():
            ch = conns[k].channel()
            queues[k] = names.client_result_queue(user)
            ch.queue_declare(queues[k], durable=True)
            ch.queue_bind(queues[k], names.RESULTS_EXCHANGE, routing_key=queues[k])
        for a, b in (("short", "dotted"), ("dotted", "short"), ("plus", "aab"), ("aab", "plus"), ("short", "plus")):
            theirs = queues[b]
            mine = queues[a]
            for action in (lambda ch: ch.queue_declare(theirs, durable=True), lambda ch: ch.queue_declare(theirs + "2"),
                           lambda ch: ch.basic_get(theirs), lambda ch: ch.queue_purge(theirs),
                           lambda ch: ch.queue_delete(theirs),
                           lambda ch: ch.queue_bind(mine, names.RESULTS_EXCHANGE, routing_key=theirs),
                           lambda ch: ch.queue_unbind(theirs, names.RESULTS_EXCHANGE, routing_key=theirs)):
                refused(403, lambda: action(conns[a].channel()))
        # "u<tag>" may name a queue "gce.results.u<tag>.x": hers, not the dotted user's (his end in ".x.<id>").
        conns["short"].channel().queue_declare(names.result_queue(who["short"], "x"), durable=False, auto_delete=True)
    finally:
        for c in conns.values():
            c.close()


@pytest.mark.broker
def test_user_cannot_delete_unbind_or_feed_endpoint_and_status_objects(setup):
    s = setup
    tq, sq = _endpoint_queues(s)
    alice = lambda: s.channel(s.alice_url)  # noqa: E731
    refused(403, lambda: alice().queue_delete(tq))
    refused(403, lambda: alice().queue_unbind(tq, names.TASKS_EXCHANGE, routing_key=s.eid))
    refused(403, lambda: alice().queue_delete(sq))
    refused(403, lambda: alice().basic_publish(names.STATUS_EXCHANGE, s.eid, b"{}"))
    refused(403, lambda: alice().exchange_delete(names.TASKS_EXCHANGE))
    refused(403, lambda: alice().exchange_delete(names.RESULTS_EXCHANGE))
    mine = _result_queue(s, s.alice, s.alice_url)
    refused(403, lambda: alice().queue_bind(mine, names.STATUS_EXCHANGE, routing_key=s.eid))
    refused(403, lambda: alice().queue_bind(mine, names.TASKS_EXCHANGE, routing_key=s.eid))
    refused(403, lambda: alice().exchange_bind(names.TASKS_EXCHANGE, names.RESULTS_EXCHANGE, routing_key="#"))


@pytest.mark.broker
def test_tasks_smuggled_past_topic_permissions_show_where_they_came_from(setup):
    """What permissions cannot stop (see the module's docstring), and what the endpoint sees.

    Alice may submit to s.eid only. Through an exchange named like her queues, bound into
    gce.tasks, or with a CC header, her task still reaches s.other's inbox: but it arrives
    through another exchange, or with a routing key that is not s.other's id."""
    s = setup
    inbox = names.endpoint_task_queue(s.other)
    admin = s.channel(s.admin_url)
    admin.queue_declare(inbox, durable=True)
    admin.queue_bind(inbox, names.TASKS_EXCHANGE, routing_key=s.other)
    own_exchange = names.result_queue(s.alice, "relay")
    alice = s.channel(s.alice_url)
    alice.exchange_declare(own_exchange, "fanout", auto_delete=True)
    alice.exchange_bind(names.TASKS_EXCHANGE, own_exchange)
    task = pika.BasicProperties(user_id=s.alice, delivery_mode=2)
    alice.basic_publish(own_exchange, s.other, b"relayed", task)
    alice.basic_publish(names.TASKS_EXCHANGE, s.eid, b"copied", pika.BasicProperties(
        user_id=s.alice, headers={"CC": [s.other]}))
    alice.basic_publish(names.TASKS_EXCHANGE, s.eid, b"blind", pika.BasicProperties(
        user_id=s.alice, headers={"BCC": [s.other]}))
    seen = set()
    for _ in range(3):
        method, props, body = _get_method(admin, inbox)
        seen.add((body, method.exchange, method.routing_key))
    assert seen == {(b"relayed", own_exchange, s.other), (b"copied", names.TASKS_EXCHANGE, s.eid),
                    (b"blind", names.TASKS_EXCHANGE, s.eid)}
    assert all((ex, key) != (names.TASKS_EXCHANGE, s.other) for _, ex, key in seen)


@pytest.mark.broker
def test_status_relayed_by_another_endpoint_shows_where_it_came_from(setup, broker):
    """The same for status: an endpoint account can put a report into another endpoint's
    status queue, but never through gce.status with that endpoint's id as routing key."""
    s = setup
    _, sq = _endpoint_queues(s)
    vhost = pika.URLParameters(s.ep_url).virtual_host
    rogue = p.Account(f"ep-rogue-{uuid.uuid4().hex[:6]}", "pw-rogue")
    rmq.import_definitions(p.definitions(vhost, endpoints=[(rogue, s.other)]), rabbitmqctl=broker.rabbitmqctl,
                         env=broker.env)
    ch = s.channel(p.amqp_url(rogue.name, rogue.password, "127.0.0.1", broker.port, vhost))
    relay = f"gce.ep.{s.other}.relay"
    ch.exchange_declare(relay, "fanout", auto_delete=True)
    ch.exchange_bind(names.STATUS_EXCHANGE, relay)
    ch.basic_publish(relay, s.eid, b'{"forged": 1}', pika.BasicProperties(user_id=rogue.name))
    ch.basic_publish(names.STATUS_EXCHANGE, s.other, b'{"forged": 2}', pika.BasicProperties(
        user_id=rogue.name, headers={"CC": [s.eid]}))
    method, _, body = _get_method(s.channel(s.admin_url), sq)
    assert body == b'{"forged": 2}'  # max-length 1 kept the last
    assert (method.exchange, method.routing_key) == (names.STATUS_EXCHANGE, s.other) != (names.STATUS_EXCHANGE, s.eid)


def _get_method(ch, queue: str):
    for _ in range(50):
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        ch.connection.sleep(0.05)
    raise AssertionError(f"nothing arrived on {queue}")


# --- Debian's rabbitmqctl wrapper ------------------------------------------------------------------

_WRAPPER = "/usr/lib/rabbitmq/bin/rabbitmq-script-wrapper"


@pytest.fixture
def wrapper_probe():
    """(Debian's /usr/sbin/rabbitmqctl wrapper script under a name with no CLI behind it, so
    that nothing reaches a node, and a marker path its shell would create as user rabbitmq)."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    if not os.path.isfile(_WRAPPER) or os.geteuid() != 0:
        pytest.skip("needs Debian's rabbitmq-server wrapper scripts, run as root")
    d = Path(tempfile.mkdtemp(prefix="gcetest-wrapper-"))
    try:
        d.chmod(0o777)  # the wrapper runs its command line as user rabbitmq
        (d / "rabbitmqctl-gcetest").symlink_to(_WRAPPER)  # /usr/lib/rabbitmq/bin/rabbitmqctl-gcetest: none
        yield str(d / "rabbitmqctl-gcetest"), d / "ran"
    finally:
        shutil.rmtree(d)


def test_debians_wrapper_runs_its_arguments_as_shell_code(wrapper_probe):
    """What the README warns admins about: as root, the wrapper passes its arguments to `su -c`
    inside double quotes, where $(...) and `...` still run."""
    import subprocess

    ctl, marker = wrapper_probe
    subprocess.run([ctl, "list_users", "-p", f"x$(touch {marker})"], capture_output=True, timeout=30)
    assert marker.exists() and marker.owner() == "rabbitmq"


def test_no_vhost_or_user_name_reaches_rabbitmqctl_as_an_argument(wrapper_probe):
    ctl, marker = wrapper_probe
    with pytest.raises(Unavailable):
        rmq.current_task_endpoints(f"x$(touch {marker})", rabbitmqctl=ctl)
    defs = p.definitions(f"v$(touch {marker})", users=[(p.Account("carol$(id)`id`", "pw"), [str(uuid.uuid4())])])
    with pytest.raises(Unavailable):
        rmq.import_definitions(defs, rabbitmqctl=ctl)
    assert not marker.exists()


@pytest.mark.parametrize("arg", ["x$(id)", "x`id`", "x\\", 'x"', "x y", "x\n", "${HOME}"])
def test_an_argument_a_shell_would_read_is_refused_before_rabbitmqctl_runs(wrapper_probe, arg):
    ctl, marker = wrapper_probe
    with pytest.raises(ValueError, match="rabbitmqctl"):
        rmq._run(ctl, ["list_users", "-p", arg, f"$(touch {marker})"], None)
    assert not marker.exists()
