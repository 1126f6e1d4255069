"""The diagnostic of a broker URL that lists a RabbitMQ cluster's nodes
(amqps://USER:PASS@h1:5671,h2:5671,h3:5671/VHOST): the network checks run against the first node
that answers, as the endpoint's link connects; "broker node" names the node reached and the ones
that did not answer, and "broker cluster" warns when the endpoint's task queue is a classic queue,
which lives on one node and is gone with it.

A cluster is known by the URL: a site lists its nodes there so that the endpoint fails over. This
works without the management plugin; the broker's AMQP greeting names the cluster, not its nodes.
"""

from __future__ import annotations

from typing import Any

from gce.commands.diagnostic import network, probes
from gce.commands.diagnostic.result import PASS, Result, fail, ok, skip, warn
from gce.transport import names, urls

CHECKS = ("broker node", "broker cluster")


def checks(url: str, endpoint_id: str, running: bool, queue_type: str = "classic") -> list[Result]:
    """network.checks of URL, through the first of its nodes that answers (all of them: one host)."""
    listed = urls.hosts(url)
    if len(listed) == 1:
        return network.checks(url, endpoint_id, running)
    silent: list[str] = []
    results: list[Result] = []
    for one in listed:
        results = network.checks(one, endpoint_id, running,
                                 more=lambda conn: [queue_kind(conn, endpoint_id, len(listed), queue_type)])
        if any(r.check == "broker login" and r.status == PASS for r in results):
            return results + [node(urls.host_port(one), listed, silent)]
        failed = next((r for r in results if r.status == "FAIL"), None)
        silent.append(f"{urls.host_port(one)} ({failed.reason if failed else 'no answer'})")
    return results + [fail("broker node", f"none of the {len(listed)} broker nodes the URL lists answered: "
                           + "; ".join(silent), "start the broker nodes, or fix broker.url's list of hosts"),
                      skip("broker cluster", "no broker node answered")]


def node(reached: str, listed: list[str], silent: list[str]) -> Result:
    if silent:
        return warn("broker node", f"reached node {reached} of the {len(listed)} the URL lists; "
                    f"{len(silent)} did not answer: " + "; ".join(silent),
                    "start the nodes that did not answer (rabbitmqctl -n NODE status on their hosts), or "
                    "remove them from broker.url", node=reached, nodes=len(listed))
    return ok("broker node", f"reached node {reached}, the first of the {len(listed)} the URL lists",
              node=reached, nodes=len(listed))


def queue_kind(conn: Any, endpoint_id: str, nodes: int, configured: str) -> Result:
    """Whether the endpoint's task queue survives a node's loss: warn when it is a classic queue."""
    actual = declared_type(conn, names.endpoint_task_queue(endpoint_id))
    kind = actual or configured
    where = "is" if actual else "will be (it is not declared yet; broker.queue_type says so)"
    if kind == "classic":
        return warn("broker cluster", f"the endpoint's task queue {where} a classic queue on a cluster of "
                    f"{nodes} nodes: it lives on one node, and while that node is down the endpoint gets no tasks",
                    f"set 'queue_type: quorum' under broker: in the endpoint's config.yaml, delete the classic "
                    f"queue (rabbitmqctl delete_queue {names.endpoint_task_queue(endpoint_id)} -p VHOST) and "
                    "restart the endpoint", queue_type=kind, nodes=nodes)
    return ok("broker cluster", f"the endpoint's task queue {where} a {kind} queue, replicated across the "
              f"cluster's nodes ({nodes} listed)", queue_type=kind, nodes=nodes)


def declared_type(conn: Any, queue: str) -> str | None:
    """'classic' or 'quorum' for QUEUE as the broker holds it; None when it does not exist or the
    account may not ask. Asked by declaring it again as a classic queue, which the broker refuses
    (406, inequivalent x-queue-type) for any other type; a passive declare first, so that nothing
    is created."""
    from pika import exceptions as px

    try:
        with probes.deadline(conn, network.TIMEOUT):
            ch = conn.channel()
            ch.queue_declare(queue, passive=True)
            ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
            ch.close()
            return "classic"
    except px.ChannelClosedByBroker as e:
        return "quorum" if e.reply_code == 406 and "quorum" in str(e.reply_text) else None
    except (px.AMQPError, OSError, probes.Expired):
        return None
