"""One way to connect to the broker for both links: the parameters pika gets and the delay before
a reconnect, the same for the SDK (gce.sdk.amqp, gce.sdk.client) and the endpoint (gce.transport.amqp)."""

from __future__ import annotations

import pytest

from gce.sdk import BrokerNotConfigured
from gce.sdk.settings import connection_parameters
from gce.transport import connect
from gce.transport.amqp import EndpointLink
from gce.transport.link_errors import LinkError

URL = "amqp://alice:pw@broker.example:5673/gce"


def test_the_parameters_carry_the_heartbeat_the_timeout_and_the_name():
    [params] = connect.parameters(URL, heartbeat=17, name="gce test")
    assert (params.host, params.port, params.virtual_host, params.credentials.username) == (
        "broker.example", 5673, "gce", "alice")
    assert params.heartbeat == 17
    assert params.socket_timeout == connect.SOCKET_TIMEOUT
    assert params.connection_attempts == 1  # the links retry themselves, after reconnect_delay
    assert params.client_properties == {"connection_name": "gce test"}


def test_the_sdk_and_the_endpoint_ask_pika_for_the_same():
    [sdk] = connection_parameters(URL, 30, "gce sdk q")
    link = EndpointLink(url=URL, endpoint_id="e" * 32, heartbeat=30, on_delivery=print, on_connected=print,
                        on_disconnected=print)
    [endpoint] = link.parameters()
    assert sdk.socket_timeout == endpoint.socket_timeout == connect.SOCKET_TIMEOUT
    assert sdk.connection_attempts == endpoint.connection_attempts == 1
    assert (sdk.heartbeat, endpoint.heartbeat) == (30, 30)
    assert endpoint.client_properties == {"connection_name": f"gce endpoint {'e' * 32}"}


@pytest.mark.parametrize("url, why", [
    ("amqp://alice@h/gce", "it names a user but no password"),
    ("http://alice:s3cret@h/gce", "it must start with amqp:// or amqps://"),
])
def test_a_url_pika_cannot_use_is_refused_in_words_without_its_password(url, why):
    with pytest.raises(connect.UnusableUrl) as info:
        connect.parameters(url, heartbeat=30, name="x")
    assert f"cannot be used: {why}" in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(BrokerNotConfigured, match=why):  # what the SDK raises of it
        connection_parameters(url, 30, "x")
    link = EndpointLink(url=url, endpoint_id="e", on_delivery=print, on_connected=print, on_disconnected=print)
    with pytest.raises(LinkError) as failed:  # and the endpoint: a failure retrying cannot mend
        link.parameters()
    assert failed.value.fatal and str(failed.value) == str(info.value)


def test_the_reconnect_delay_doubles_from_half_a_second_to_half_a_minute_with_jitter():
    first = [connect.reconnect_delay(0) for _ in range(200)]
    assert min(first) >= 0.25 and max(first) <= 0.75 and len(set(first)) > 1
    assert all(1.0 <= connect.reconnect_delay(2) <= 3.0 for _ in range(50))
    assert all(15.0 <= connect.reconnect_delay(n) <= 45.0 for n in (6, 10, 10_000))


def test_a_cluster_url_gives_parameters_for_each_node_in_its_order():
    listed = connect.parameters("amqps://alice:pw@n1:5671,n2,n3:5000/gce", heartbeat=17, name="gce test")
    assert [connect.node(p) for p in listed] == ["n1:5671", "n2:5671", "n3:5000"]
    assert {(p.virtual_host, p.credentials.username, p.credentials.password, p.heartbeat) for p in listed} == {
        ("gce", "alice", "pw", 17)}


def test_the_next_node_is_tried_at_once_and_a_round_of_failures_waits():
    hosts = connect.Hosts()
    assert hosts.pick(["a", "b", "c"]) == "a"
    assert hosts.failed() is False and hosts.pick(["a", "b", "c"]) == "b"  # b at once
    assert hosts.failed() is False and hosts.pick(["a", "b", "c"]) == "c"
    assert hosts.failed() is True and hosts.pick(["a", "b", "c"]) == "a"  # all three failed: wait, then a
    hosts.failed()
    hosts.reached()  # b answered: the count of failures in a row starts again
    assert hosts.pick(["a", "b", "c"]) == "b"
    assert [hosts.failed(), hosts.failed(), hosts.failed()] == [False, False, True]
    one = connect.Hosts()
    assert one.pick(["only"]) == "only" and one.failed() is True  # one host: every failure waits, as before
