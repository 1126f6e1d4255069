"""The round trip of an MPI hello world (two ranks, Debian's Open MPI, mpiexec), beside bench.py,
through gce (an SDK Executor, the broker, the endpoint "bench-mpi" with an MPIEngine on a block of
this host) against parsl's MPIExecutor driven directly, same block, same launcher, same command
(an MPIFunction), round trip by round trip in turn. The MPI launch dominates both.

mpi-rtt. Target: ≤ 1.3x raw MPIExecutor. Alone: .venv/bin/python bench/bench.py --only mpi-rtt
(needs openmpi-bin and libopenmpi-dev).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

NAMES = ("mpi-rtt",)
ENDPOINT = "bench-mpi"
RANKS = 2
SPEC = {"num_nodes": 1, "ranks_per_node": RANKS, "num_ranks": RANKS}
# Open MPI refuses root unless told; two ranks may be more than the cores.
OMPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "OMPI_MCA_rmaps_base_oversubscribe": "1"}


class RawMpi:
    """The peer: parsl's MPIExecutor on a LocalProvider block, told this host is its one node."""

    def __init__(self, run_dir: Path) -> None:
        from parsl.executors import MPIExecutor
        from parsl.launchers import SimpleLauncher
        from parsl.providers import LocalProvider

        run_dir.mkdir(parents=True, exist_ok=True)
        nodes = run_dir / "nodes"
        nodes.write_text("localhost\n")
        provider = LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1, launcher=SimpleLauncher(),
                                 worker_init=f"export PBS_NODEFILE={nodes}")
        self.htex = MPIExecutor(label="peer-mpi", provider=provider, address="127.0.0.1", heartbeat_period=2,
                                heartbeat_threshold=10, mpi_launcher="mpiexec", max_workers_per_block=1)
        self.htex.run_dir = str(run_dir)
        self.htex.provider.script_dir = str(run_dir)
        self.htex.start()
        self.htex.scale_out_facade(1)

    def close(self) -> None:
        self.htex.shutdown()


def _mpi_engine() -> dict:
    return {"type": "MPIEngine", "mpi_launcher": "mpiexec", "max_workers_per_block": 1, "strategy_period": 0.5,
            "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1}}


def run(only: set[str], rounds: int, s, add_row, rows) -> None:
    if not only & set(NAMES):
        return
    import yaml

    from gce.commands.broker import set_yaml_key
    from gce.config.model import read_endpoint_id
    from gce.config.paths import endpoint_paths
    from gce.sdk import Executor, MPIFunction
    from tests import mpi_hello

    program = mpi_hello.hello()
    if os.geteuid() == 0:
        os.environ.update(OMPI_ENV)  # the peer's worker pool inherits it
        s.env.update(OMPI_ENV)  # a personal endpoint passes its user's environment to its user endpoint
    s.gce("configure", ENDPOINT, "--engine", "htex")
    paths = endpoint_paths(ENDPOINT)
    config = yaml.safe_load(paths.config_file.read_text())
    config["engine"] = _mpi_engine()
    paths.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    endpoint_id = read_endpoint_id(paths)
    ep_url, users = s.broker.provision(endpoint_id, users=["bencher-mpi"])
    set_yaml_key(paths.config_file, ("broker", "url"), ep_url)
    started = s.gce("start", ENDPOINT, "--detach", check=False)
    if started.returncode:
        raise SystemExit(f"gce start {ENDPOINT} failed: {started.stderr.strip()}")
    hello = MPIFunction(program)
    expected = mpi_hello.lines(RANKS)
    raw = RawMpi(s.tmp / "peer-mpi")
    ours: list[float] = []
    peer: list[float] = []
    try:
        with Executor(endpoint_id=endpoint_id, broker_url=users["bencher-mpi"],
                      resource_specification={"num_ranks": RANKS}) as ex:
            for warm in (ex.submit(hello).result(timeout=120), raw.htex.submit(hello, dict(SPEC)).result(timeout=120)):
                assert set(warm.stdout.splitlines()) == expected, warm
            for _ in range(rounds * 2):
                t = time.perf_counter()
                result = ex.submit(hello).result(timeout=60)
                ours.append(time.perf_counter() - t)
                assert set(result.stdout.splitlines()) == expected, result
                t = time.perf_counter()
                result = raw.htex.submit(hello, dict(SPEC)).result(timeout=60)
                peer.append(time.perf_counter() - t)
                assert set(result.stdout.splitlines()) == expected, result
    finally:
        raw.close()
        s.gce("stop", ENDPOINT, check=False)
    add_row(f"MPI hello world round trip, {RANKS} ranks, mpiexec (vs raw parsl MPIExecutor)", "s", ours, peer, 1.3,
            False)
