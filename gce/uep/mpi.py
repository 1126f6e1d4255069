"""The MPI engine: parsl's MPIExecutor (HTEX in MPI mode) in place of a HighThroughputEngine's HTEX.

Each block runs one worker pool, on its first node (a SimpleLauncher), with
``max_workers_per_block`` workers; each task claims ``num_nodes`` of the block's nodes and its
worker gets the launcher line of its ranks as ``$PARSL_MPI_PREFIX`` (``mpi_launcher``: mpiexec,
srun or aprun), which an MPIFunction puts before its command (gce.sdk.mpi). Globus Compute calls
this engine GlobusMPIEngine: both names are taken.

What a task may ask is checked before it reaches parsl, by the rule the SDK applies
(gce.transport.resources), and completed: parsl's MPI mode needs every task to name its nodes
(a task without num_nodes would never give its nodes back: parsl issue 3427), so a task that
names none runs on one node as one rank. Other engines refuse MPI counts, with a sentence that
says which engine takes them.

parsl finds a block's nodes from its scheduler (SLURM_NODELIST, PBS_NODEFILE); a block on this
host (LocalProvider) has none, so its worker pool is given a node file naming this host once per
worker: each of its ``max_workers_per_block`` MPI tasks at once takes this host as its one node.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from gce.transport import resources
from gce.uep.engines import HighThroughputEngine
from gce.uep.pools import GCE_RESOURCE_KEYS, Engine

TYPES = ("MPIEngine", "GlobusMPIEngine")
LAUNCHERS = ("mpiexec", "srun", "aprun")
NODE_FILE = "mpi_nodes"  # in the run directory: a local block's one node


class MPIEngine(HighThroughputEngine):
    type = "MPIEngine"

    def __init__(self, options: dict, run_dir: str, max_result_bytes: int, max_output_bytes: int = 64 << 10) -> None:
        super().__init__(options, run_dir, max_result_bytes, max_output_bytes)
        provider = self.options.get("provider") or {}
        self.nodes_per_block = int(provider.get("nodes_per_block", 1) or 1)

    def start(self) -> None:
        provider = dict(self.options.get("provider") or {"type": "LocalProvider"})
        launcher = provider.setdefault("launcher", {"type": "SimpleLauncher"})
        if launcher.get("type") != "SimpleLauncher":
            raise ValueError(f"an MPIEngine's provider runs one worker pool per block, on its first node, which "
                             f"starts each task's ranks itself: engine.provider.launcher must be a SimpleLauncher, "
                             f"not a {launcher.get('type')}; remove the launcher, or set its type to SimpleLauncher")
        launcher_name = self.options.get("mpi_launcher", "mpiexec")
        if launcher_name not in LAUNCHERS:
            raise ValueError(f"engine.mpi_launcher must be one of {', '.join(LAUNCHERS)}, not {launcher_name!r}")
        if provider.get("type", "LocalProvider") == "LocalProvider":
            nodes = os.path.join(self.run_dir, NODE_FILE)
            with open(nodes, "w") as f:
                f.write("localhost\n" * int(self.options.get("max_workers_per_block", 1)))
            # Read by parsl's worker pool only where no scheduler names the nodes (SLURM_NODELIST wins).
            provider["worker_init"] = f"export PBS_NODEFILE={shlex.quote(nodes)}\n{provider.get('worker_init', '')}"
        self.options = {**self.options, "provider": provider}
        super().start()

    def executor(self, provider: Any, opts: dict[str, Any]) -> Any:
        from parsl.executors import MPIExecutor

        # MPIExecutor's signature types this as a str, though HTEX, which starts it, takes the list
        # gce gives (gce.uep.worker_pool): set after the type check.
        interchange = opts.pop("interchange_launch_cmd", None)
        executor = MPIExecutor(label="htex", provider=provider, **opts)
        if interchange is not None:
            executor.interchange_launch_cmd = interchange
        return executor

    def complete(self, spec: dict[str, Any]) -> dict[str, Any]:
        """SPEC completed for parsl (every count set); ValueError or TypeError saying what is wrong."""
        taken = (*resources.MPI_KEYS, resources.LAUNCHER_OPTIONS, *GCE_RESOURCE_KEYS)
        _refuse_others(spec, taken, f"an {self.type}")
        shape = resources.mpi_shape(spec) or resources.MpiShape(1, 1, 1)
        if shape.num_nodes > self.nodes_per_block:
            raise ValueError(f"resource_specification: the task asks for {shape.num_nodes} nodes, but a block of "
                             f"this endpoint has {self.nodes_per_block} (engine.provider.nodes_per_block): it "
                             "could never run; ask for fewer nodes")
        return {**{k: v for k, v in spec.items() if k in GCE_RESOURCE_KEYS}, **shape.as_spec()}

    def _submit(self, payload: bytes, resource_spec: dict, task_id: str = "") -> Any:
        return super()._submit(payload, self.complete(resource_spec), task_id)


def _refuse_others(spec: dict[str, Any], taken: tuple[str, ...], engine: str) -> None:
    others = sorted(str(k)[:40] for k in spec if k not in taken)
    if not others:
        return
    mpi = [k for k in others if k in (*resources.MPI_KEYS, resources.LAUNCHER_OPTIONS)]
    why = (f"; MPI ranks ({', '.join(resources.MPI_KEYS)}) need an endpoint whose engine is an MPIEngine"
           if mpi else "")
    raise ValueError(f"resource_specification: {engine} does not take {', '.join(others)} (it takes "
                     f"{', '.join(taken)}){why}")


def check_spec(engine: Engine, spec: dict[str, Any]) -> None:
    """Refuse what ENGINE cannot give a task: ValueError or TypeError naming the key."""
    if isinstance(engine, MPIEngine):
        engine.complete(spec)
    else:
        _refuse_others(spec, (*GCE_RESOURCE_KEYS, "priority"), f"this endpoint's {engine.type}")
