"""Benchmarks of a broker cluster, beside bench.py: the same endpoint setup on quorum queues over a
three-node RabbitMQ cluster (tests/broker_cluster.py; the endpoint's and the submitter's URLs list
every node) against classic queues on bench.py's single node, measured side by side in one run,
the order of the two alternating from round to round.

cluster-rtt: one no-op task at a time, submit to result.
cluster-throughput: 10,000 no-op tasks, submitted at once, in tasks/s.

Booting the cluster takes about a minute: the rows run only when named
(bench.py --only cluster-rtt,cluster-throughput); alone: .venv/bin/python bench/cluster.py [--rounds N]
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("cluster-rtt", "cluster-throughput")
WORKERS = 2
SIDES = ("quorum", "classic")  # the endpoint on the cluster, the endpoint on bench.py's one node


def noop():
    return None


class Endpoints:
    """Two process-pool endpoints alike but for their broker: 'quorum' on the cluster with
    queue_type quorum, 'classic' on bench.py's broker with classic queues."""

    def __init__(self, s, cluster) -> None:
        import yaml

        from gce.config.model import read_endpoint_id
        from gce.config.paths import endpoint_paths

        self.s = s
        self.ids: dict[str, str] = {}
        self.user_urls: dict[str, str] = {}
        for side, broker in zip(SIDES, (cluster, s.broker)):
            name = f"cluster-{side}"
            s.gce("configure", name, "--engine", "process", "--max-workers", str(WORKERS))
            paths = endpoint_paths(name)
            self.ids[side] = read_endpoint_id(paths)
            ep_url, users = broker.provision(self.ids[side], users=[f"bencher-{side}"])
            self.user_urls[side] = users[f"bencher-{side}"]
            config = yaml.safe_load(paths.config_file.read_text())
            config["broker"] = dict(config.get("broker") or {}, url=ep_url, queue_type=side)
            paths.config_file.write_text(yaml.safe_dump(config))
            paths.config_file.chmod(0o600)  # it holds the endpoint's broker password
            s.gce("start", name, "--detach")

    def executor(self, side: str):
        from gce.sdk import Executor

        return Executor(endpoint_id=self.ids[side], broker_url=self.user_urls[side])

    def close(self) -> None:
        for side in SIDES:
            self.s.gce("stop", f"cluster-{side}", check=False)


def _orders(rounds: int) -> list[tuple[str, str]]:
    return [SIDES if i % 2 == 0 else SIDES[::-1] for i in range(rounds)]


def bench_rtt(rounds: int, eps: Endpoints) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    executors = {side: eps.executor(side) for side in SIDES}
    try:
        for ex in executors.values():
            ex.submit(noop).result(timeout=120)
        for order in _orders(rounds * 20):
            for side in order:
                t = time.perf_counter()
                executors[side].submit(noop).result(timeout=60)
                times[side].append(time.perf_counter() - t)
    finally:
        for ex in executors.values():
            ex.shutdown()
    return times


def bench_throughput(rounds: int, eps: Endpoints, n: int = 10_000) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for order in _orders(rounds):
        for side in order:
            with eps.executor(side) as ex:
                t = time.perf_counter()
                futs = [ex.submit(noop) for _ in range(n)]
                cf.wait(futs, timeout=600)
                assert all(f.done() and f.exception() is None for f in futs), f"{side}: some no-op tasks failed"
                rates[side].append(n / (time.perf_counter() - t))
    return rates


def run(only: set[str], rounds: int, s, add_row, rows) -> None:
    """Add the rows named in ONLY, measured on a cluster booted for them beside bench.py's broker S."""
    if not only & set(NAMES):
        return
    from tests.broker_cluster import BrokerCluster

    with tempfile.TemporaryDirectory(prefix="gce-bench-cluster-") as tmp:
        cluster = BrokerCluster(Path(tmp))
        eps = None
        try:
            cluster.start()
            eps = Endpoints(s, cluster)
            if "cluster-rtt" in only:
                t = bench_rtt(rounds, eps)
                add_row("no-op round trip, quorum on a 3-node cluster (vs classic on one node)", "s",
                        t["quorum"], t["classic"], 1.5, False)
            if "cluster-throughput" in only:
                r = bench_throughput(max(1, rounds // 2), eps)
                add_row("10,000 no-op tasks, quorum on a 3-node cluster (vs classic on one node)", "tasks/s",
                        r["quorum"], r["classic"], 0.5, True)
        finally:
            if eps is not None:
                eps.close()
            cluster.shutdown()


def main() -> int:
    """These rows alone, beside a private broker as bench.py sets it up."""
    import argparse
    import functools

    import bench  # noqa: E402 - bench/ is the script's directory

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=",".join(NAMES))
    args = ap.parse_args()
    rows: list[bench.Row] = []
    add_row = functools.partial(bench.ratio_row, rows)

    with tempfile.TemporaryDirectory(prefix="gce-bench-") as tmp:
        s = bench.Setup(Path(tmp))
        try:
            run(set(args.only.split(",")), args.rounds, s, add_row, rows)
        finally:
            s.close()
    return bench.print_rows(rows, "quorum, 3 nodes", "classic, 1 node")


if __name__ == "__main__":
    sys.exit(main())
