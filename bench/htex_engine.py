"""The no-op round trip of an endpoint whose engine is parsl's HTEX, beside bench.py.

bench.py's own endpoint is what `gce configure` writes by default: a pool of worker processes on
this host. An HTEX engine (``gce configure --engine htex``, as many workers as bench.py's, its one
block on this host) is what a site runs when its workers are batch jobs: each task crosses parsl's
interchange and a worker pool's manager too. Its round trip against the same raw HTEX peer, round
trip by round trip in turn, shows what gce adds on top of parsl's own legs.

htex-rtt: selected by rtt too. Target: ≤ 2.0x raw HTEX.
"""

from __future__ import annotations

NAMES = ("htex-rtt",)
SELECTED_BY = {"rtt", *NAMES}
ENDPOINT = "bench-htex"


def run(only: set[str], rounds: int, s, raw, workers: int, ratio_row, rtt_pairs) -> None:
    """Add the row when ONLY selects it, on bench.py's setup S, against its raw HTEX peer RAW, with
    bench.py's RTT_PAIRS (its no-op is in __main__, so parsl's pickle carries it by value)."""
    if not only & SELECTED_BY:
        return
    from gce.commands.broker import set_yaml_key
    from gce.config.model import read_endpoint_id
    from gce.config.paths import endpoint_paths
    from gce.sdk import Executor

    s.gce("configure", ENDPOINT, "--engine", "htex", "--max-workers", str(workers))
    paths = endpoint_paths(ENDPOINT)
    endpoint_id = read_endpoint_id(paths)
    ep_url, users = s.broker.provision(endpoint_id, users=["bencher-htex"])
    set_yaml_key(paths.config_file, ("broker", "url"), ep_url)
    s.gce("start", ENDPOINT, "--detach")
    try:
        with Executor(endpoint_id=endpoint_id, broker_url=users["bencher-htex"]) as ex:
            ours, htex = rtt_pairs(ex, raw, rounds)
    finally:
        s.gce("stop", ENDPOINT, check=False)
    ratio_row("no-op round trip, HTEX engine endpoint (vs raw HTEX)", "s", ours, htex, 2.0, False)
