"""The no-op round trip of an endpoint whose engine is a local process pool, beside bench.py.

bench.py's own endpoint runs HTEX: each task crosses parsl's interchange and a worker pool's
manager before a worker, two processes more than a pool of workers on this host needs. This
row's endpoint (``gce configure --engine process``, as many workers as bench.py's) shows what a
local engine that skips them gives, against the same raw HTEX and Celery peers, round trip by
round trip in turn: the figure to weigh before `gce configure` writes it by default.

process-rtt: selected by rtt too. Targets: ≤ 1.2x raw HTEX, ≤ 1.0x Celery.
"""

from __future__ import annotations

import time

NAMES = ("process-rtt",)
SELECTED_BY = {"rtt", *NAMES}
ENDPOINT = "bench-process"


def run(only: set[str], rounds: int, s, raw, workers: int, ratio_row, noop) -> None:
    """Add the rows when ONLY selects them, on bench.py's setup S, against its raw HTEX peer RAW;
    NOOP is bench.py's (in __main__, so parsl's pickle carries it by value: no worker imports bench/)."""
    if not only & SELECTED_BY:
        return
    import amqp_peers  # noqa: E402 - bench/ is the script's directory
    from gce.commands.broker import set_yaml_key
    from gce.config.model import read_endpoint_id
    from gce.config.paths import endpoint_paths
    from gce.sdk import Executor

    s.gce("configure", ENDPOINT, "--engine", "process", "--max-workers", str(workers))
    paths = endpoint_paths(ENDPOINT)
    endpoint_id = read_endpoint_id(paths)
    ep_url, users = s.broker.provision(endpoint_id, users=["bencher-process"])
    set_yaml_key(paths.config_file, ("broker", "url"), ep_url)
    s.gce("start", ENDPOINT, "--detach")
    celery = amqp_peers.CeleryPeer(s.broker.admin_url, workers)
    ours: list[float] = []
    htex: list[float] = []
    peer: list[float] = []
    try:
        with Executor(endpoint_id=endpoint_id, broker_url=users["bencher-process"]) as ex:
            ex.submit(noop).result(timeout=120)
            for _ in range(rounds * 20):
                t = time.perf_counter()
                ex.submit(noop).result(timeout=60)
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                raw.htex.submit(noop, {}).result(timeout=60)
                htex.append(time.perf_counter() - t)
                peer.append(celery.ask("rtt"))
    finally:
        celery.close()
        s.gce("stop", ENDPOINT, check=False)
    ratio_row("no-op round trip, process engine endpoint (vs raw HTEX)", "s", ours, htex, 1.2, False)
    ratio_row("no-op round trip, process engine endpoint (vs Celery)", "s", ours, peer, 1.0, False)
