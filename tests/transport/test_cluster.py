"""A three-node RabbitMQ cluster on this machine (tests/broker_cluster.py), booted once for the module.

`gce broker provision` and `gce diagnostic` work against it with a node down, and it loses nothing:
an endpoint with quorum queues and an SDK whose URLs list every node keep answering every task
exactly once while the node holding the task queue's leader crashes, and later while another
leader's node is stopped. A three-node quorum survives one node down at a time, so the first node
is back (and has caught up) before the second goes. Each failure meets 5,000 tasks in flight.
That test comes last: it leaves a node down."""

from __future__ import annotations

import json
import os
import secrets
import sys
import uuid
from pathlib import Path

import pika
import pytest
import yaml
from typer.testing import CliRunner

from gce.cli import app
from gce.config.paths import endpoint_paths
from gce.sdk import Executor
from gce.transport import names
from tests.broker_cluster import BrokerCluster
from tests.endpoint import Endpoint, processes_under, wait_until

pytestmark = pytest.mark.slow

TASKS = 5000  # in flight at each failure


def record(i: int, path: str) -> int:
    """Write down that task I ran (O_APPEND lines from any worker do not interleave)."""
    import time

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    time.sleep(0.002)  # spread the wave over a few seconds, across the failure
    return i


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = BrokerCluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


def _configured(name: str, url: str, **broker) -> Path:
    paths = endpoint_paths(name)
    paths.config_dir.mkdir(parents=True, mode=0o700)
    paths.config_file.write_text(yaml.safe_dump({"broker": {"url": url, **broker},
                                                 "engine": {"type": "ThreadPoolEngine", "max_workers": 1}}))
    paths.config_file.chmod(0o600)
    endpoint_id = str(uuid.uuid4())
    paths.endpoint_json.write_text(json.dumps({"endpoint_id": endpoint_id}))
    return paths.config_file


def test_provision_reaches_the_next_node_and_writes_a_url_listing_them_all(cluster, gce_home, monkeypatch):
    first = cluster.nodes[0]
    for key, value in first.env.items():
        if key.startswith(("RABBITMQ_", "ERL_")) or key in ("PATH", "HOME"):
            monkeypatch.setenv(key, value)
    config = _configured("demo", "amqp://placeholder@127.0.0.1/gce")
    cluster.stop(first)  # its VM answers rabbitmqctl, its app does not: provision goes on with the next
    try:
        result = CliRunner().invoke(app, [
            "broker", "provision", "--endpoint", "demo", "--host", cluster.hosts, "--vhost", f"prov-{secrets.token_hex(3)}",
            "--rabbitmqctl", first.rabbitmqctl, *(arg for n in cluster.nodes for arg in ("--node", n.node))])
    finally:
        cluster.start_node(first)
    assert result.exit_code == 0, (result.output, result.exception)
    url = yaml.safe_load(config.read_text())["broker"]["url"]
    assert url.split("@", 1)[1].split("/")[0] == cluster.hosts
    for node in cluster.nodes:  # the accounts are cluster-wide: each node lets the endpoint in
        conn = pika.BlockingConnection(pika.URLParameters(url.replace(cluster.hosts, f"127.0.0.1:{node.port}")))
        conn.close()


def test_diagnostic_names_the_node_it_reached_and_warns_of_a_classic_queue(cluster, gce_home):
    endpoint_id = str(uuid.uuid4())
    ep_url, _ = cluster.provision(endpoint_id)
    config = _configured("ep", ep_url)
    config.parent.joinpath("endpoint.json").write_text(json.dumps({"endpoint_id": endpoint_id}))
    first, second = cluster.nodes[0], cluster.nodes[1]

    def rows() -> dict:
        result = CliRunner().invoke(app, ["diagnostic", "--endpoint", "ep", "--json"])
        return {r["check"]: r for r in json.loads(result.stdout) if r["endpoint"] == "ep"}

    cluster.stop(first)
    try:
        got = rows()
    finally:
        cluster.start_node(first)
    assert got["broker login"]["status"] == "PASS"
    assert got["broker node"]["status"] == "WARN"
    assert got["broker node"]["reason"].startswith(f"reached node 127.0.0.1:{second.port} of the 3 the URL lists; "
                                                   f"1 did not answer: 127.0.0.1:{first.port} (")
    assert got["broker cluster"]["status"] == "WARN"
    assert "will be (it is not declared yet" in got["broker cluster"]["reason"]
    assert "classic queue on a cluster of 3 nodes" in got["broker cluster"]["reason"]
    assert "queue_type: quorum" in got["broker cluster"]["hint"]

    conn = pika.BlockingConnection(pika.URLParameters(ep_url.replace(cluster.hosts, f"127.0.0.1:{first.port}")))
    conn.channel().queue_declare(names.endpoint_task_queue(endpoint_id), durable=True,
                                 arguments={"x-queue-type": "quorum"})
    conn.close()
    got = rows()
    assert got["broker node"]["status"] == "PASS"
    assert got["broker node"]["reason"] == f"reached node 127.0.0.1:{first.port}, the first of the 3 the URL lists"
    assert (got["broker cluster"]["status"], got["broker cluster"]["details"]["queue_type"]) == ("PASS", "quorum")


def _wave(ex: Executor, first: int, path: Path, fail) -> list[int]:
    """Submit TASKS tasks; once a tenth of them are answered, call FAIL(); return every answer."""
    futures = [ex.submit(record, i, str(path)) for i in range(first, first + TASKS)]
    wait_until(lambda: sum(f.done() for f in futures) >= TASKS // 10, timeout=60)
    fail()
    try:
        wait_until(lambda: all(f.done() for f in futures), timeout=60)
    except Exception:
        raise AssertionError(f"{sum(not f.done() for f in futures)} of {TASKS} tasks unanswered") from None
    return [f.result() for f in futures]


def test_a_cluster_answers_every_task_exactly_once_while_leaders_go_down(cluster, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GCE_HOME", str(home))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    ep = Endpoint(cluster, home, engine="process")
    assert ep.endpoint_url.count(",") == 2  # every node listed
    ep.set(broker={"url": ep.endpoint_url, "queue_type": "quorum"})
    vhost, queue = ep.endpoint_url.rsplit("/", 1)[1], names.endpoint_task_queue(ep.endpoint_id)
    ran = tmp_path / "ran"
    try:
        ep.start()
        ex = Executor(endpoint_id=ep.endpoint_id, broker_url=ep.user_url)
        try:
            assert ex.submit(record, -1, str(ran)).result(timeout=30) == -1
            first = cluster.leader(vhost, queue)
            first_port = f"127.0.0.1:{first.port}"
            assert ex.broker_node == first_port  # the leader is where its queue was declared (client-local)

            answers = _wave(ex, 0, ran, lambda: cluster.kill(first))
            assert ex.broker_node not in ("", first_port)  # the SDK went on with a survivor by itself
            cluster.start_node(first)  # back before the next one goes: a quorum of 3 loses one at a time
            second = cluster.leader(vhost, queue)
            answers += _wave(ex, TASKS, ran, lambda: cluster.stop(second))
            second_port = f"127.0.0.1:{second.port}"
            assert ex.broker_node != second_port
        finally:
            ex.shutdown(wait=False, cancel_futures=True)

        assert answers == list(range(2 * TASKS))
        runs = [int(line) for line in ran.read_text().split()]
        assert len(runs) == len(set(runs)) == 2 * TASKS + 1  # each task ran exactly once
        log = ep.log()
        reached = [line.split("broker node ", 1)[1].split()[0] for line in log.splitlines()
                   if "connected to the broker node" in line]
        assert reached[0] == first_port and len(reached) >= 2 and reached[1] != first_port, log[-3000:]
    finally:
        ep.stop()
        wait_until(lambda: not processes_under(home), timeout=30)
