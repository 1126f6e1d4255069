"""An MPI engine's config (type MPIEngine, or Globus Compute's GlobusMPIEngine): its options are
parsl's MPIExecutor's, its provider's launcher must leave the ranks to it, and a pool engine
takes none of them."""

from __future__ import annotations

import pytest

from gce.config import engine_options, model
from gce.errors import ConfigError

SOURCE = "/etc/gce/x/config.yaml"


def why(engine: dict) -> str:
    with pytest.raises(ConfigError) as err:
        engine_options.check(engine, SOURCE)
    assert err.value.hint.startswith(f"fix {SOURCE}")
    return err.value.why


@pytest.mark.parametrize("engine", [
    {"type": "MPIEngine"},
    {"type": "MPIEngine", "mpi_launcher": "mpiexec", "max_workers_per_block": 2,
     "provider": {"type": "LocalProvider", "launcher": {"type": "SimpleLauncher"}}},
    {"type": "GlobusMPIEngine", "mpi_launcher": "srun", "strategy_period": 1,
     "provider": {"type": "SlurmProvider", "partition": "debug", "nodes_per_block": 2}},
])
def test_an_mpi_engine_s_options_pass(engine):
    engine_options.check(engine, SOURCE)
    model.validate({"broker": {"url": "amqp://h/gce"}, "engine": engine}, SOURCE)


def test_an_option_of_htex_alone_is_named_with_the_mpi_one():
    assert why({"type": "MPIEngine", "max_workers_per_node": 2}) == (
        "engine.max_workers_per_node: MPIEngine has no option 'max_workers_per_node' "
        "(did you mean 'max_workers_per_block'?)")


def test_a_launcher_that_starts_workers_on_every_node_is_refused():
    assert why({"type": "GlobusMPIEngine", "provider": {"type": "SlurmProvider", "launcher": {"type": "SrunLauncher"}}}
               ) == ("engine.provider.launcher: GlobusMPIEngine starts each task's ranks itself, from one worker "
                     "pool per block: it needs a SimpleLauncher, not a SrunLauncher")


@pytest.mark.parametrize("engine", [{"type": "MPIEngine", "mpi_launcher": "mpirun"},
                                    {"type": "ProcessPoolEngine", "mpi_launcher": "srun"}])
def test_the_schema_refuses_an_unknown_launcher_and_mpi_options_on_a_pool(engine):
    with pytest.raises(ConfigError) as err:
        model.validate({"broker": {"url": "amqp://h/gce"}, "engine": engine}, SOURCE)
    assert "mpi_launcher" in str(err.value)
