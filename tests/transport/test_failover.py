"""A broker URL that lists several hosts (a RabbitMQ cluster's nodes): the endpoint's link and the
SDK's links connect to the next listed node when one does not answer, and say which node they
reached. Here the first listed node is a port nobody listens on; the second is the session's
broker. Losing a node while connected is shown by tests/transport/test_cluster.py."""

from __future__ import annotations

import asyncio
import socket
import uuid

from gce.sdk import Client, Executor
from gce.transport.amqp import EndpointLink


def _dead_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connect is refused at once
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_dead_node_first(url: str, port: int) -> str:
    scheme_user, rest = url.split("@", 1)
    return f"{scheme_user}@127.0.0.1:{port},{rest}"


def test_the_endpoint_link_skips_a_node_that_does_not_answer(broker):
    endpoint_id = str(uuid.uuid4())
    ep_url, _ = broker.provision(endpoint_id)
    url = _with_dead_node_first(ep_url, _dead_port())
    connected: list[str] = []

    async def go() -> None:
        link = EndpointLink(url=url, endpoint_id=endpoint_id, queue_type="classic", on_delivery=print,
                            on_connected=lambda: connected.append(link.node), on_disconnected=print)
        task = asyncio.ensure_future(link.run(first_failure_fatal=True))  # a whole round of failures would raise
        for _ in range(100):
            if connected or task.done():
                break
            await asyncio.sleep(0.1)
        await link.close()
        await task

    asyncio.run(go())
    assert connected == [f"127.0.0.1:{broker.port}"]


def test_the_sdk_skips_a_node_that_does_not_answer(broker, gce_home):
    endpoint_id = str(uuid.uuid4())
    _, users = broker.provision(endpoint_id, users=["alice"])
    url = _with_dead_node_first(users["alice"], _dead_port())
    with Executor(endpoint_id=endpoint_id, broker_url=url, connect_timeout=15) as ex:
        assert ex.broker_node == f"127.0.0.1:{broker.port}"
    with Client(url) as client:
        assert client.get_endpoint_status(endpoint_id)["status"] == "unknown"  # answered by the live node
        assert client.node == f"127.0.0.1:{broker.port}"
