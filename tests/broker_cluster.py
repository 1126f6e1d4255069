"""A private RabbitMQ cluster for tests and benchmarks: N PrivateBroker nodes on this machine
(tests/broker.py), with node names and ports of their own and one Erlang cookie and one epmd
between them, joined with ``rabbitmqctl join_cluster`` (RECIPES.md, "A three-node RabbitMQ
cluster on one machine"). Everything it started is stopped by PID at `shutdown`."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from pathlib import Path

from tests.broker import PrivateBroker, _free_port


class BrokerCluster:
    """SIZE nodes joined into one cluster; `provision` hands out URLs that list every node."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.dir = directory
        home = directory / "home"  # HOME of every node and rabbitmqctl call: the shared cookie
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        epmd = _free_port()
        tag = f"gcetest-{os.getpid()}-{secrets.token_hex(2)}"
        self.nodes = [PrivateBroker(directory / f"n{i}", node=f"{tag}-n{i}@localhost", epmd_port=epmd,
                                    cookie_home=home) for i in range(1, size + 1)]
        for node in self.nodes[1:]:  # joining takes the first node's accounts: one admin password
            node.admin_password = self.nodes[0].admin_password
        self.admin_user = self.nodes[0].admin_user

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Boot every node at once, then join the others to the first."""
        errors: list[BaseException] = []

        def boot(node: PrivateBroker) -> None:
            try:
                node.start()
            except BaseException as e:  # re-raised below, in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=boot, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.start()  # its app again, now a member

    def stop(self, node: PrivateBroker) -> None:
        """Stop NODE's RabbitMQ application: its port refuses connections, its VM stays a member."""
        node.stop()

    def kill(self, node: PrivateBroker) -> None:
        """SIGKILL NODE's Erlang VM, as a crash would."""
        node.kill()
        (node.dir / "beam.pid").unlink(missing_ok=True)

    def start_node(self, node: PrivateBroker) -> None:
        """Bring back a stopped or killed node; it rejoins and catches up by itself."""
        node.start()

    def shutdown(self) -> None:
        """Stop every node, then their epmd; leave no process behind. Nodes are killed, not shut
        down: their data is thrown away, and a clean shutdown of a cluster's members costs ~25 s
        each as they wait on one another."""
        for node in self.nodes:
            node.kill()
        self.nodes[0]._kill_epmd()  # shared by all

    # -- queries ----------------------------------------------------------------------------
    def running(self) -> list[PrivateBroker]:
        return [n for n in self.nodes if n._vm_alive() and n._app_ready()]

    def by_name(self, name: str) -> PrivateBroker:
        return next(n for n in self.nodes if n.node == name)

    def leader(self, vhost: str, queue: str, timeout: float = 30) -> PrivateBroker:
        """The node that holds QUEUE's quorum leader now, asked of a node that is up."""
        deadline = time.monotonic() + timeout
        while True:
            for asked in self.running():
                out = asked.ctl("-q", "list_queues", "-p", vhost, "name", "leader", check=False, timeout=30).stdout
                for line in out.splitlines():
                    name, _, leader = line.partition("\t")
                    if name == queue and leader.strip() in {n.node for n in self.nodes}:
                        return self.by_name(leader.strip())
            if time.monotonic() > deadline:
                raise RuntimeError(f"no leader of queue {queue!r} found within {timeout:.0f} s")
            time.sleep(0.5)

    # -- accounts ---------------------------------------------------------------------------
    @property
    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def cluster_url(self, url: str) -> str:
        """URL (of the first node) with every node listed, as a site writes it for a cluster."""
        return re.sub(rf"@127\.0\.0\.1:{self.nodes[0].port}/", f"@{self.hosts}/", url, count=1)

    def admin_url_for(self, vhost: str) -> str:
        return self.cluster_url(self.nodes[0].admin_url_for(vhost))

    def provision(self, endpoint_id: str, users: list[str] | tuple[str, ...] = (), vhost: str | None = None,
                  also_allowed: list[str] | tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
        """As PrivateBroker.provision (definitions are cluster-wide), with URLs that list every node."""
        ep, urls = self.nodes[0].provision(endpoint_id, users, vhost, also_allowed)
        return self.cluster_url(ep), {u: self.cluster_url(url) for u, url in urls.items()}
