"""A real MPI program for the MPI tests: hello world printing its rank and the world's size,
built with Debian's Open MPI (``mpicc``) once and cached by the hash of its source."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    printf("hello from rank %d of %d\n", rank, size);
    MPI_Finalize();
    return 0;
}
"""

# Open MPI refuses root unless told, and a two-core machine has fewer cores than the ranks asked.
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def lines(size: int) -> set[str]:
    """What every rank of a world of SIZE prints (ranks interleave: compare sets)."""
    return {f"hello from rank {r} of {size}" for r in range(size)}


def hello() -> str:
    """The path of the built program; fails the test with a hint when Open MPI is missing."""
    missing = [p for p in ("mpiexec", "mpicc") if shutil.which(p) is None]
    if missing:
        pytest.fail(f"error: cannot build the MPI hello world: {', '.join(missing)} not found\n"
                    "hint: apt-get install -y openmpi-bin libopenmpi-dev (make test installs them)", pytrace=False)
    cache = Path(os.environ.get("GCE_TEST_CACHE", "/var/cache/gce-tests"))
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"mpi-hello-{hashlib.sha256(SOURCE.encode()).hexdigest()[:16]}"
    with open(cache / "mpi-hello.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it right now
        if not target.exists():
            source = cache / f"{target.name}.c"
            source.write_text(SOURCE)
            building = target.with_suffix(".tmp")
            subprocess.run(["mpicc", "-o", str(building), str(source)], check=True, capture_output=True)
            building.chmod(0o755)
            building.rename(target)
    return str(target)
