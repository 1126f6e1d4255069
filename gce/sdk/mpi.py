"""Run an MPI program on an endpoint whose engine is an MPIEngine:

    ex.resource_specification = {"num_nodes": 2, "ranks_per_node": 4}
    ex.submit(MPIFunction("./hello {name}"), name="world").result().stdout

An MPIFunction is a ShellFunction whose command is prefixed by the launcher line of the task's
ranks, ``$PARSL_MPI_PREFIX`` (``mpiexec -n 8 ...``, ``srun --ntasks 8 ...``), which parsl's MPI
mode sets on the worker for each task from its ``resource_specification`` (gce.uep.mpi). It runs
there: like a ShellFunction it is pickled by reference.

parsl writes ``mpiexec`` lines in MPICH's words (``-ppn``, ``-hosts``), which Open MPI's
``mpiexec`` refuses; where the worker's ``mpiexec`` is Open MPI's, the line is rewritten in its
words for the command (``--map-by ppr:N:node --host h:N``).
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from typing import Any, Mapping

from gce.sdk.shell import ShellFunction, ShellResult

PREFIX = "PARSL_MPI_PREFIX"


class MPIFunction(ShellFunction):
    """A shell command run as an MPI job of the task's ranks; calling it returns a ShellResult."""

    def __init__(self, cmd: str, walltime: float | None = None, snippet_lines: int = 1000,
                 name: str | None = None) -> None:
        super().__init__(cmd, walltime, snippet_lines, name or "MPIFunction")

    def __call__(self, **kwargs: Any) -> ShellResult:
        line = os.environ.get(PREFIX)
        if not line:
            raise RuntimeError("MPIFunction needs an endpoint whose engine is an MPIEngine (engine type MPIEngine "
                               f"in its config.yaml): this worker has no MPI launcher line (${PREFIX} is not set)")
        mine = launcher_line(os.environ, openmpi_mpiexec())
        try:
            os.environ[PREFIX] = mine  # what the command's shell expands; parsl sets it again for the next task
            return ShellFunction(f"${PREFIX} {self.cmd}", self.walltime, self.snippet_lines)(**kwargs)
        finally:
            os.environ[PREFIX] = line

    def __repr__(self) -> str:
        return f"MPIFunction({self.cmd!r}, walltime={self.walltime!r})"


@functools.lru_cache(maxsize=1)
def openmpi_mpiexec() -> bool:
    """Whether the ``mpiexec`` on this worker's PATH is Open MPI's (asked once per worker)."""
    try:
        out = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in out or "OpenRTE" in out


def launcher_line(env: Mapping[str, str], openmpi: bool) -> str:
    """ENV's MPI launcher line, in Open MPI's words when it is an mpiexec line and OPENMPI is true.
    parsl's MPI mode puts the task's counts and nodes in ENV (PARSL_NUM_RANKS, PARSL_RANKS_PER_NODE,
    PARSL_MPI_NODELIST, PARSL_LAUNCHER_OPTIONS) beside the line it composed from them."""
    line = env.get(PREFIX, "")
    if not openmpi or line.split(" ", 1)[0] != "mpiexec" or line != env.get("PARSL_MPIEXEC_PREFIX", line):
        return line
    ranks, per_node = env.get("PARSL_NUM_RANKS", ""), env.get("PARSL_RANKS_PER_NODE", "")
    nodes = [n for n in env.get("PARSL_MPI_NODELIST", "").split(",") if n]
    if not (ranks.isdigit() and per_node.isdigit() and nodes):
        return line
    hosts = ",".join(f"{node}:{per_node}" for node in nodes)
    words = ["mpiexec", "-n", ranks, "--map-by", f"ppr:{per_node}:node", "--host", hosts]
    return " ".join([*map(shlex.quote, words), env.get("PARSL_LAUNCHER_OPTIONS", "")]).rstrip()
