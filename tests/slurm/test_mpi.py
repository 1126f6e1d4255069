"""The MPI engine on a real (private, one-node) Slurm cluster, with the srun launcher, driven as a
Globus Compute user drives it: an Executor with a resource_specification submits an MPIFunction
to a real endpoint whose block is a Slurm job; srun starts the task's ranks inside that job (Slurm's
PMIx plugin wires up Debian's Open MPI), and every rank's line of an MPI hello world comes back."""

from __future__ import annotations

import pytest

from gce.sdk import MPIFunction, ShellFunction
from tests import mpi_hello
from tests.slurm.test_stop_cancels_jobs import VENV_BIN

pytestmark = [pytest.mark.broker, pytest.mark.slow]

NAME = "slurm-mpi"  # the endpoint fixture's (tests/slurm/conftest.py)


def test_an_mpi_function_s_ranks_are_started_by_srun_in_the_block(slurm, endpoint) -> None:
    program = mpi_hello.hello()
    endpoint.set(engine={
        "type": "GlobusMPIEngine", "mpi_launcher": "srun", "strategy_period": 0.5, "address": "127.0.0.1",
        "provider": {"type": "SlurmProvider", "partition": "debug", "walltime": "00:05:00", "init_blocks": 1,
                     "min_blocks": 0, "max_blocks": 1, "worker_init": f"export PATH={VENV_BIN}:$PATH"},
    })
    endpoint.start(timeout=90)
    spec = {"num_nodes": 1, "num_ranks": 2, "launcher_options": "--mpi=pmix"}
    with endpoint.executor(resource_specification=spec) as ex:
        hello = ex.submit(MPIFunction(program))
        line = ex.submit(ShellFunction("echo $PARSL_MPI_PREFIX; echo $SLURM_JOB_ID"))
        result = hello.result(timeout=90)
        prefix, job = line.result(timeout=30).stdout.splitlines()
    assert result.returncode == 0, result
    assert set(result.stdout.splitlines()) == mpi_hello.lines(2), result
    assert prefix.startswith("srun --ntasks 2 --ntasks-per-node 2 --nodelist localhost --nodes 1 --mpi=pmix"), prefix
    assert slurm.job_state(job) == "RUNNING"  # the block's job, which srun stepped into
