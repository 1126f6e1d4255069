"""The engine a user endpoint's config names: one table of every engine type, local pools,
parsl's HTEX and the MPI engine (by both its names)."""

from __future__ import annotations

from typing import Any

from gce.uep.containers import take_options as take_container
from gce.uep.engines import HighThroughputEngine
from gce.uep.mpi import TYPES as MPI_TYPES
from gce.uep.mpi import MPIEngine
from gce.uep.pools import Engine, ProcessPoolEngine, ThreadPoolEngine

ENGINES: dict[str, type[Engine]] = {
    **{cls.type: cls for cls in (ThreadPoolEngine, ProcessPoolEngine, HighThroughputEngine)},
    **{name: MPIEngine for name in MPI_TYPES},
}


def make_engine(spec: dict[str, Any], run_dir: str, max_result_bytes: int, max_output_bytes: int = 64 << 10) -> Engine:
    """The engine SPEC's type names, given SPEC's other keys as its options."""
    spec = dict(spec)
    kind = spec.pop("type")
    if kind in (ThreadPoolEngine.type, ProcessPoolEngine.type):
        take_container(spec, kind)  # refused: a pool's workers are this process's children or threads
    return ENGINES[kind](spec, run_dir, max_result_bytes, max_output_bytes)
