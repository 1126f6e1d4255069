"""The MPI engine on a real (private, one-node) Slurm cluster, with the srun launcher: a task's
ranks are started by srun inside the block's job (Slurm's PMIx plugin wires up Debian's Open MPI),
and every rank's line of an MPI hello world comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from gce.transport import frames
from tests import mpi_hello
from tests.slurm.test_stop_cancels_jobs import VENV_BIN
from tests.uep.uep_process import UepProcess

pytestmark = [pytest.mark.slow]

HELLO = ("def hello(program):\n    import os\n    from gce.sdk.mpi import MPIFunction\n"
         "    return MPIFunction(program)(), os.environ['PARSL_MPI_PREFIX']\n")


def test_an_mpi_function_s_ranks_are_started_by_srun_in_the_block(slurm, tmp_path: Path) -> None:
    import cloudpickle

    from gce.transport.payload import unpack_result

    program = mpi_hello.hello()
    engine = {
        "type": "GlobusMPIEngine", "mpi_launcher": "srun", "strategy_period": 0.5, "address": "127.0.0.1",
        "provider": {"type": "SlurmProvider", "partition": "debug", "walltime": "00:05:00", "init_blocks": 1,
                     "min_blocks": 0, "max_blocks": 1, "worker_init": f"export PATH={VENV_BIN}:$PATH"},
    }
    uep = UepProcess(engine, tmp_path, env={"SLURM_CONF": str(slurm.conf)})
    try:
        task = uep.submit(HELLO, "hello", program,
                          resource_specification={"num_nodes": 1, "num_ranks": 2, "launcher_options": "--mpi=pmix"})
        _kind, header, body = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task, timeout=90)
        assert header["status"] == "success", header
        result, line = cloudpickle.loads(unpack_result(body).value)
        assert line.startswith("srun --ntasks 2 --ntasks-per-node 2 --nodelist localhost --nodes 1 --mpi=pmix"), line
        assert result.returncode == 0, result
        assert set(result.stdout.splitlines()) == mpi_hello.lines(2), result
    finally:
        uep.close()
