"""gce/config/engine_options.py: engine, provider and launcher keys checked against parsl's own
signatures, so a misspelt one is a config error with a "did you mean" rather than a TypeError
in a user endpoint that a restart already stopped the running one for."""

from __future__ import annotations

import pytest

from gce.config import engine_options, model
from gce.config.writer import ENGINES, PROVIDERS
from gce.errors import ConfigError

SOURCE = "/etc/gce/x/config.yaml"
LOCAL = {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1, "nodes_per_block": 1,
         "worker_init": ""}


def why(engine: dict) -> str:
    with pytest.raises(ConfigError) as err:
        engine_options.check(engine, SOURCE)
    assert err.value.what == f"invalid configuration in {SOURCE}"
    assert err.value.hint.startswith(f"fix {SOURCE}")
    return err.value.why


@pytest.mark.parametrize(("engine", "expected"), [
    ({"type": "HighThroughputEngine", "max_worker_per_node": 2},
     "engine.max_worker_per_node: HighThroughputEngine has no option 'max_worker_per_node' "
     "(did you mean 'max_workers_per_node'?)"),
    ({"type": "HighThroughputEngine", "provider": {**LOCAL, "int_blocks": 1}},
     "engine.provider.int_blocks: LocalProvider has no option 'int_blocks' (did you mean 'init_blocks'?)"),
    ({"type": "HighThroughputEngine", "provider": {"type": "SlurmProvider", "partiton": "debug"}},
     "engine.provider.partiton: SlurmProvider has no option 'partiton' (did you mean 'partition'?)"),
    ({"type": "HighThroughputEngine", "provider": {"type": "LocalProvider", "partition": "debug"}},
     "engine.provider.partition: LocalProvider has no option 'partition' (it takes: cmd_timeout, init_blocks, "
     "launcher, max_blocks, min_blocks, nodes_per_block, parallelism, type, worker_init)"),
    ({"type": "HighThroughputEngine",
      "provider": {"type": "SlurmProvider", "launcher": {"type": "SrunLauncher", "overide": "-n 1"}}},
     "engine.provider.launcher.overide: SrunLauncher has no option 'overide' (did you mean 'overrides'?)"),
    ({"type": "ProcessPoolEngine", "max_worker": 2},
     "engine.max_worker: ProcessPoolEngine has no option 'max_worker' (did you mean 'max_workers'?)"),
])
def test_a_misspelt_key_is_named_with_the_closest_one(engine, expected):
    assert why(engine) == expected


def test_a_key_like_none_lists_what_is_taken():
    text = why({"type": "HighThroughputEngine", "provider": {"type": "LocalProvider", "zzzz": 1}})
    assert text.startswith("engine.provider.zzzz: LocalProvider has no option 'zzzz' (it takes: cmd_timeout, ")


def test_keys_gce_sets_itself_are_refused():
    """label is passed by gce: a second value would be a TypeError at start."""
    assert why({"type": "HighThroughputEngine", "label": "mine"}).startswith(
        "engine.label: HighThroughputEngine has no option 'label'")


@pytest.mark.parametrize("engine", [
    {"type": "HighThroughputEngine", "max_workers_per_node": 2, "strategy_period": 0.5, "max_idletime": 10,
     "heartbeat_period": 2, "cores_per_worker": 1, "worker_debug": True, "address": "127.0.0.1",
     "provider": {**LOCAL, "launcher": {"type": "SingleNodeLauncher"}}},
    {"type": "HighThroughputEngine", "provider": {"type": "SlurmProvider", "partition": "p", "account": "a",
                                                  "qos": "q", "walltime": "01:00:00", "init_blocks": 0,
                                                  "scheduler_options": "", "launcher": {"type": "SrunLauncher"}}},
    {"type": "HighThroughputEngine"},
    {"type": "ProcessPoolEngine", "max_workers": 2},
    {"type": "ThreadPoolEngine", "max_workers": 2, "max_idletime": 3},
    None,
])
def test_options_parsl_takes_pass(engine):
    engine_options.check(engine, SOURCE)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_what_gce_configure_writes_passes(gce_home, engine, provider):
    """Every engine and provider `gce configure` offers loads with its options checked."""
    from gce.config import writer
    from gce.config.paths import endpoint_paths

    if provider != "local" and engine not in writer.BLOCK_ENGINES:
        pytest.skip("a provider is for the engines of blocks only (htex, mpi)")
    paths = endpoint_paths("w")
    ep = writer.NewEndpoint(name="w", broker_url="amqp://ep:pw@h/gce", engine=engine, provider=provider,
                            partition="p" if provider == "slurm" else "")
    writer.write(paths, ep)
    assert model.load(paths, engine_options=True).engine["type"] == ENGINES[engine]


def test_load_checks_options_only_when_asked(gce_home):
    """The manager loads its config without importing parsl; start and restart ask for the check."""
    from gce.config.paths import endpoint_paths

    paths = endpoint_paths("t")
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text("broker: {url: 'amqp://ep:pw@h/gce'}\n"
                                 "engine: {type: HighThroughputEngine, provider: {type: LocalProvider, "
                                 "max_block: 2}}\n")
    paths.endpoint_json.write_text('{"endpoint_id": "00000000-0000-4000-8000-000000000000"}')
    assert model.load(paths).engine["provider"]["max_block"] == 2
    with pytest.raises(ConfigError, match=r"did you mean 'max_blocks'\?"):
        model.load(paths, engine_options=True)
