"""MPIFunction: a ShellFunction run under the task's MPI launcher line, and the MPI counts of a
resource_specification checked before anything reaches the broker (tests/sdk/conftest.py)."""

from __future__ import annotations

import cloudpickle
import pytest

from gce.sdk import Executor, MPIFunction, ShellFunction
from gce.sdk.mpi import launcher_line
from tests import mpi_hello

# What parsl's MPI mode sets on a worker for {"num_nodes": 1, "ranks_per_node": 3, "num_ranks": 3}.
PARSL_ENV = {"PARSL_NUM_NODES": "1", "PARSL_RANKS_PER_NODE": "3", "PARSL_NUM_RANKS": "3",
             "PARSL_MPI_NODELIST": "localhost",
             "PARSL_MPIEXEC_PREFIX": "mpiexec -n 3 -ppn 3 -hosts localhost ",
             "PARSL_MPI_PREFIX": "mpiexec -n 3 -ppn 3 -hosts localhost ",
             "PARSL_SRUN_PREFIX": "srun --ntasks 3 --ntasks-per-node 3 --nodelist localhost --nodes 1 "}


def test_an_mpiexec_line_is_said_in_open_mpi_s_words_only_for_open_mpi():
    assert launcher_line(PARSL_ENV, openmpi=True) == "mpiexec -n 3 --map-by ppr:3:node --host localhost:3"
    two = {**PARSL_ENV, "PARSL_MPI_NODELIST": "n1,n2", "PARSL_LAUNCHER_OPTIONS": "--bind-to none"}
    assert launcher_line(two, openmpi=True) == "mpiexec -n 3 --map-by ppr:3:node --host n1:3,n2:3 --bind-to none"
    assert launcher_line(PARSL_ENV, openmpi=False) == PARSL_ENV["PARSL_MPI_PREFIX"]
    srun = {**PARSL_ENV, "PARSL_MPI_PREFIX": PARSL_ENV["PARSL_SRUN_PREFIX"]}
    assert launcher_line(srun, openmpi=True) == PARSL_ENV["PARSL_SRUN_PREFIX"]


def test_an_mpi_function_runs_every_rank_under_the_launcher_line(monkeypatch):
    program = mpi_hello.hello()
    for name, value in {**PARSL_ENV, **mpi_hello.ENV}.items():
        monkeypatch.setenv(name, value)
    fn = cloudpickle.loads(cloudpickle.dumps(MPIFunction("{program}")))
    result = fn(program=program)
    assert result.returncode == 0, result
    assert set(result.stdout.splitlines()) == mpi_hello.lines(3)
    assert result.cmd == f"$PARSL_MPI_PREFIX {program}"
    assert isinstance(fn, ShellFunction) and fn.__name__ == "MPIFunction"
    import os

    assert os.environ["PARSL_MPI_PREFIX"] == PARSL_ENV["PARSL_MPI_PREFIX"]  # put back for parsl


def test_an_mpi_function_without_an_mpi_engine_says_what_it_needs(monkeypatch):
    monkeypatch.delenv("PARSL_MPI_PREFIX", raising=False)
    with pytest.raises(RuntimeError, match="MPIFunction needs an endpoint whose engine is an MPIEngine"):
        MPIFunction("hostname")()


@pytest.mark.broker
@pytest.mark.parametrize("spec, error, words", [
    ({"num_nodes": 0}, ValueError, "resource_specification['num_nodes'] must be at least 1, not 0"),
    ({"num_ranks": "4"}, TypeError, "resource_specification['num_ranks'] must be a whole number"),
    ({"num_nodes": 2, "ranks_per_node": 1, "num_ranks": 3}, ValueError, "num_ranks 3 is more than"),
])
def test_a_bad_mpi_spec_is_refused_before_anything_reaches_the_broker(sdk_broker, spy, gce_home, spec, error,
                                                                      words):
    with pytest.raises(error) as info:
        Executor(endpoint_id=sdk_broker.spy_endpoint_id, broker_url=sdk_broker.user_url,
                 resource_specification=spec)
    assert words in str(info.value)
    with Executor(endpoint_id=sdk_broker.spy_endpoint_id, broker_url=sdk_broker.user_url,
                  resource_specification={"num_nodes": 1}) as ex:
        ex.resource_specification["num_nodes"] = -1  # changed in place: caught at submit
        with pytest.raises(ValueError, match=r"\['num_nodes'\] must be at least 1"):
            ex.submit(MPIFunction("true"))
    assert spy.waiting() == 0
