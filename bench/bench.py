#!/usr/bin/env python3
"""gce benchmarks: each figure is compared with a peer run alternately in the same invocation.

    .venv/bin/python bench/bench.py [--rounds N] [--only help,rtt,throughput,cold,idle,payload,mu-cold,...]

Peers: globus-compute-endpoint (installed on first use into bench/.peers/, ignored by git)
and raw parsl HighThroughputExecutor with the same LocalProvider workers. The script starts
its own private RabbitMQ broker and endpoint under a temporary directory and removes them.
Prints a table of medians, the ratio gce/peer, the target and whether it is met.
The multi-user rows (mu-cold, mu-rtt, mu-idle, mu-concurrent: bench/multiuser.py) need root.
The rows of watching endpoints (monitor-once, watching, monitor-live) are in bench/watching.py.
Output capture on vs off (capture-throughput, capture-rtt) is bench/capture.py; the failing-block
breaker against raw parsl (breaker, about 2.5 minutes, not run unless named) is bench/breaker.py.
Celery and the bare pika echo on the same broker (celery-rtt, celery-throughput, pika-echo) are bench/amqp_peers.py;
the endpoint "bench" is what `gce configure` writes by default (a process pool, 2 workers); an
endpoint whose engine is HTEX, as on a batch provider (htex-rtt), is bench/htex_engine.py.
The .deb's size and its install to an active unit (deb-size, deb-install; root) are bench/packages.py.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import multiuser  # noqa: E402 - bench/ is the script's directory
import watching  # noqa: E402
import breaker  # noqa: E402
import capture  # noqa: E402
import million  # noqa: E402
import packages  # noqa: E402
import amqp_peers  # noqa: E402
import htex_engine  # noqa: E402
import cluster  # noqa: E402
import batch  # noqa: E402
import mpi  # noqa: E402
import worker_containers  # noqa: E402
VENV_BIN = Path(sys.executable).parent
PEERS = ROOT / "bench" / ".peers"
WORKERS = 2
MB10 = 10_000_000


def noop():
    return None


def identity(x):
    return x


def median(xs):
    return statistics.median(xs)


def peer_gc_endpoint() -> Path:
    exe = PEERS / "gc" / "bin" / "globus-compute-endpoint"
    if not exe.exists():
        print("installing the peer globus-compute-endpoint into bench/.peers/gc ...", flush=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(PEERS / "gc")], check=True)
        subprocess.run([str(PEERS / "gc" / "bin" / "pip"), "install", "-q", "globus-compute-endpoint"], check=True)
    return exe


class RawHtex:
    """The peer: parsl's HTEX driven directly, same provider and worker count as the endpoint."""

    def __init__(self, run_dir: str) -> None:
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider

        self.htex = HighThroughputExecutor(
            label="peer", max_workers_per_node=WORKERS, address="127.0.0.1", heartbeat_period=2,
            heartbeat_threshold=10, provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
        )
        self.htex.run_dir = run_dir
        self.htex.provider.script_dir = run_dir
        self.htex.start()
        self.htex.scale_out_facade(1)
        self.htex.submit(noop, {}).result(timeout=120)

    def close(self) -> None:
        self.htex.shutdown()


class Setup:
    """A private broker, a provisioned endpoint 'bench' (gce configure's default engine, a process
    pool, 2 workers) and its user."""

    def __init__(self, tmp: Path) -> None:
        from tests.broker import PrivateBroker

        self.tmp = tmp
        self.broker = PrivateBroker(tmp / "broker")
        self.broker.start()
        self.env = dict(os.environ, GCE_HOME=str(tmp / "home"), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
        os.environ.update(GCE_HOME=self.env["GCE_HOME"], PATH=self.env["PATH"])
        self.gce("configure", "bench", "--max-workers", str(WORKERS))
        from gce.config.model import read_endpoint_id
        from gce.config.paths import endpoint_paths

        self.paths = endpoint_paths("bench")
        self.endpoint_id = read_endpoint_id(self.paths)
        ep_url, users = self.broker.provision(self.endpoint_id, users=["bencher"])
        self.user_url = users["bencher"]
        from gce.commands.broker import set_yaml_key

        set_yaml_key(self.paths.config_file, ("broker", "url"), ep_url)

    def gce(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "gce"), *args], env=self.env, capture_output=True, text=True,
                              check=check)

    def start(self) -> None:
        self.gce("start", "bench", "--detach")

    def stop(self) -> None:
        self.gce("stop", "bench", check=False)

    def executor(self):
        from gce.sdk import Executor

        return Executor(endpoint_id=self.endpoint_id, broker_url=self.user_url)

    def close(self) -> None:
        self.stop()
        self.broker.shutdown()


def bench_help(rounds: int, _s: Setup | None) -> tuple[list, list]:
    gc = peer_gc_endpoint()
    ours, peer = [], []
    for _ in range(rounds):
        for cmd, out in (([str(VENV_BIN / "gce"), "--help"], ours), ([str(gc), "--help"], peer)):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            out.append(time.perf_counter() - t)
    return ours, peer


def rtt_pairs(ex, raw: RawHtex, rounds: int) -> tuple[list, list]:
    """ROUNDS * 20 no-op round trips through the Executor EX and through RAW, one by one in turn."""
    ours, peer = [], []
    ex.submit(noop).result(timeout=120)  # an HTEX engine's block is up
    for _ in range(rounds * 20):
        t = time.perf_counter()
        ex.submit(noop).result(timeout=60)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        raw.htex.submit(noop, {}).result(timeout=60)
        peer.append(time.perf_counter() - t)
    return ours, peer


def bench_rtt(rounds: int, s: Setup, raw: RawHtex) -> tuple[list, list]:
    with s.executor() as ex:
        return rtt_pairs(ex, raw, rounds)


def bench_throughput(rounds: int, s: Setup, raw: RawHtex, n: int = 10_000) -> tuple[list, list]:
    import concurrent.futures as cf

    ours, peer = [], []
    for _ in range(rounds):
        with s.executor() as ex:
            t = time.perf_counter()
            futs = [ex.submit(noop) for _ in range(n)]
            cf.wait(futs, timeout=600)
            assert all(f.done() and f.exception() is None for f in futs)
            ours.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        futs = [raw.htex.submit(noop, {}) for _ in range(n)]
        cf.wait(futs, timeout=600)
        peer.append(n / (time.perf_counter() - t))
    return ours, peer


PEER_COLD = """
import parsl
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider
parsl.load(Config(executors=[HighThroughputExecutor(provider=LocalProvider())], run_dir={run_dir!r}))
@parsl.python_app
def noop():
    return None
noop().result()
parsl.dfk().cleanup()
"""


def bench_cold(rounds: int, s: Setup) -> tuple[list, list]:
    ours, peer = [], []
    for i in range(rounds):
        s.stop()
        with s.executor() as ex:
            t = time.perf_counter()
            s.start()
            ex.submit(noop).result(timeout=120)
            ours.append(time.perf_counter() - t)
        run_dir = str(s.tmp / f"peer-cold-{i}")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", PEER_COLD.format(run_dir=run_dir)], check=True, capture_output=True,
                       env=s.env, cwd=str(s.tmp))
        peer.append(time.perf_counter() - t)
    return ours, peer


def bench_payload(rounds: int, s: Setup, raw: RawHtex) -> tuple[list, list]:
    data = os.urandom(MB10)
    ours, peer = [], []
    with s.executor() as ex:
        for _ in range(rounds * 3):
            t = time.perf_counter()
            assert ex.submit(identity, data).result(timeout=120) == data
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert raw.htex.submit(identity, {}, data).result(timeout=120) == data
            peer.append(time.perf_counter() - t)
    return ours, peer


def idle_manager(s: Setup, seconds: float = 10.0) -> tuple[float, float]:
    import psutil

    from gce.daemon import pidfile

    pid = pidfile.read_state(s.paths)["pid"]
    p = psutil.Process(pid)
    time.sleep(3)
    c0, t0 = sum(p.cpu_times()[:2]), time.monotonic()
    time.sleep(seconds)
    cpu = (sum(p.cpu_times()[:2]) - c0) / (time.monotonic() - t0) * 100
    return p.memory_info().rss / 2**20, cpu


Row = tuple[str, str, str, str, str, bool]  # name, gce's figure, the peer's, ratio, target, met


def ratio_row(rows: list[Row], name: str, unit: str, ours: list, peer: list, target: float, higher_is_better: bool,
              digits: int = 2) -> None:
    """Add to ROWS the medians of OURS and PEER (seconds, or tasks/s), their ratio and whether it meets TARGET."""
    mo, mp = median(ours), median(peer)
    r = mo / mp
    ok = r >= target if higher_is_better else r <= target
    fmt = (lambda v: f"{v:,.0f} {unit}") if unit == "tasks/s" else (lambda v: f"{v * 1000:,.1f} ms")
    rows.append((name, fmt(mo), fmt(mp), f"{r:.{digits}f}x", ("≥ " if higher_is_better else "≤ ") + f"{target}x", ok))


def print_rows(rows: list[Row], ours: str = "gce", peer: str = "peer") -> int:
    """Print ROWS as a table; 0 when every target is met, else 1."""
    width = max(len(r[0]) for r in rows)
    print(f"\n{'benchmark':<{width}}  {ours:>20}  {peer:>14}  {'ratio':>7}  {'target':>9}  met")
    for name, o, p, r, t, ok in rows:
        print(f"{name:<{width}}  {o:>20}  {p:>14}  {r:>7}  {t:>9}  {'yes' if ok else 'NO'}")
    return 0 if all(r[5] for r in rows) else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="help,rtt,throughput,cold,idle,payload,"
                    + ",".join(watching.NAMES + multiuser.NAMES + capture.NAMES + packages.NAMES
                                      + amqp_peers.NAMES + htex_engine.NAMES + batch.NAMES + mpi.NAMES))
    args = ap.parse_args()
    only = set(args.only.split(","))
    rows: list[Row] = []
    add_row = functools.partial(ratio_row, rows)

    if "help" in only:
        add_row("--help wall time (vs globus-compute-endpoint)", "s", *bench_help(args.rounds * 2, None), 0.2, False)
    with tempfile.TemporaryDirectory(prefix="gce-bench-") as tmp:
        s = Setup(Path(tmp))
        raw = None
        try:
            s.start()
            if only & {"rtt", "throughput", "payload", *htex_engine.NAMES}:
                raw = RawHtex(str(Path(tmp) / "peer"))
            if "rtt" in only:
                add_row("no-op round trip (vs raw HTEX)", "s", *bench_rtt(args.rounds, s, raw), 1.2, False)
            if "throughput" in only:
                add_row("10,000 no-op tasks throughput (vs raw HTEX)", "tasks/s",
                          *bench_throughput(max(1, args.rounds // 2), s, raw), 1.5, True)
            if "payload" in only:
                add_row("10 MB argument + 10 MB result round trip (vs raw HTEX)", "s",
                          *bench_payload(args.rounds, s, raw), 3.0, False)
            htex_engine.run(only, args.rounds, s, raw, WORKERS, add_row, rtt_pairs)
            if "idle" in only:
                rss, cpu = idle_manager(s)
                rows.append(("idle manager RSS", f"{rss:.1f} MiB", "-", "-", "≤ 40 MiB", rss <= 40))
                rows.append(("idle manager CPU", f"{cpu:.2f} % of a core", "-", "-", "≤ 0.5 %", cpu <= 0.5))
            if raw is not None:
                raw.close()
                raw = None
            if "cold" in only:
                add_row("start --detach to first result (vs raw HTEX, parsl defaults)", "s",
                          *bench_cold(max(1, args.rounds // 2), s), 0.4, False)
            watching.run(only, args.rounds, s, add_row, rows)
            amqp_peers.run(only, args.rounds, s, WORKERS, add_row, rows)
            multiuser.run(only, args.rounds, s, peer_gc_endpoint, add_row, rows)
            capture.run(only, args.rounds, s, add_row, rows)
            breaker.run(only, args.rounds, s, add_row, rows)  # about 2.5 min: only with --only breaker
            million.run(only, s, rows)  # 1,000,000 tasks, about 10 min: only with --only million
            cluster.run(only, args.rounds, s, add_row, rows)  # boots 3 nodes: only with --only cluster-rtt,...
            packages.run(only, args.rounds, s, rows)
            batch.run(only, args.rounds, s, add_row, rows)
            mpi.run(only, args.rounds, s, add_row, rows)
            worker_containers.run(only, args.rounds, s, add_row, rows)  # podman: only with --only container-cold
        finally:
            if raw is not None:
                raw.close()
            s.close()
    return print_rows(rows) if rows else 0


if __name__ == "__main__":
    sys.exit(main())
