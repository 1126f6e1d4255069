"""What a task's ``resource_specification`` may ask of an MPI engine: one rule, applied by the SDK
before a task is sent (a mistake is an error at submit, not a failed task) and by the user endpoint
before the task reaches a worker (another client might send anything).

An MPI task runs on ``num_nodes`` nodes of a block with ``ranks_per_node`` ranks on each, and
``num_ranks`` in all, as parsl's MPI mode and Globus Compute's MPI engine name them. Any of the
three may be left out; ``mpi_shape`` fills the rest in (one node; as many ranks per node as
spread NUM_RANKS over them; every node's ranks) so the worker's launcher line never lacks one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MPI_KEYS = ("num_nodes", "ranks_per_node", "num_ranks")
# Passed through to the launcher line as it is (e.g. "--bind-to core").
LAUNCHER_OPTIONS = "launcher_options"
# Keys every engine takes: gce's own time limit, and parsl's task priority.
COMMON_KEYS = ("walltime", "priority")


@dataclass(frozen=True)
class MpiShape:
    num_nodes: int
    ranks_per_node: int
    num_ranks: int
    launcher_options: str = ""

    def as_spec(self) -> dict[str, Any]:
        """The keys parsl's MPI mode reads, all of them set."""
        spec: dict[str, Any] = {"num_nodes": self.num_nodes, "ranks_per_node": self.ranks_per_node,
                                "num_ranks": self.num_ranks}
        if self.launcher_options:
            spec[LAUNCHER_OPTIONS] = self.launcher_options
        return spec


def names_mpi(spec: dict[str, Any]) -> bool:
    """Whether SPEC asks for MPI ranks at all."""
    return any(key in spec for key in (*MPI_KEYS, LAUNCHER_OPTIONS))


def _count(spec: dict[str, Any], key: str, what: str) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}[{key!r}] must be a whole number (e.g. 2), not {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{what}[{key!r}] must be at least 1, not {value}")
    return value


def mpi_shape(spec: dict[str, Any], what: str = "resource_specification") -> MpiShape | None:
    """SPEC's MPI request with every count filled in; None when SPEC names none of its keys.
    TypeError or ValueError naming the key when a count is not a positive whole number, when the
    counts contradict each other, or when launcher_options is not a string."""
    if not names_mpi(spec):
        return None
    nodes = _count(spec, "num_nodes", what)
    per_node = _count(spec, "ranks_per_node", what)
    ranks = _count(spec, "num_ranks", what)
    options = spec.get(LAUNCHER_OPTIONS, "")
    if not isinstance(options, str):
        raise TypeError(f"{what}[{LAUNCHER_OPTIONS!r}] must be a string of launcher arguments, "
                        f"not {type(options).__name__}")
    nodes = nodes or 1
    if per_node is None:
        per_node = math.ceil(ranks / nodes) if ranks else 1
    if ranks is None:
        ranks = nodes * per_node
    if ranks > nodes * per_node:
        raise ValueError(f"{what}: num_ranks {ranks} is more than num_nodes x ranks_per_node "
                         f"({nodes} x {per_node} = {nodes * per_node}); raise ranks_per_node or num_nodes, "
                         "or leave one of the three out to have it computed")
    if ranks < nodes:
        raise ValueError(f"{what}: num_ranks {ranks} is fewer than num_nodes {nodes}, which would leave a node "
                         "without a rank; ask for fewer nodes")
    return MpiShape(nodes, per_node, ranks, options)
