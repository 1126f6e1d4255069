"""The pure parts of `gce import`: a Globus Compute config and template, converted setting by setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from gce.config import import_template, importer
from gce.config.schema import ENGINE_TYPES


def source(config: dict, **texts: bytes) -> importer.Source:
    return importer.Source(Path("/nowhere/ep"), config, dict(texts), {})


def refuse(doc: object) -> None:
    raise ValueError("[0].DATA_TYPE: expected expression_identity_mapping#1.0.0")


def test_an_identity_mapping_needs_root():
    src = source({"identity_mapping_config_path": "map.json"}, identity_mapping_config_path=b"[]")
    out = importer.convert(src, "amqp://u:p@h/gce", may_map=False, check_mapping=lambda doc: None)
    assert "identity_mapping_config_path" not in out.config
    assert ("identity_mapping_config_path", "only an endpoint run by root maps identities to local accounts: "
            "run gce import as root to keep the mapping") in out.dropped


def test_a_mapping_gce_cannot_use_is_left_out_with_its_reason():
    src = source({}, identity_mapping_config_path=b'[{"DATA_TYPE": "other"}]')
    out = importer.convert(src, "amqp://u:p@h/gce", may_map=True, check_mapping=refuse)
    assert ("identity_mapping_config_path", "gce cannot use the mapping file: [0].DATA_TYPE: expected "
            "expression_identity_mapping#1.0.0") in out.dropped
    assert "identity_mapping.json" not in out.files


def test_function_ids_that_are_gces_are_kept():
    ids = ["ab" * 32]
    out = importer.convert(source({"engine": {"type": "ThreadPoolEngine"}, "allowed_functions": ids}),
                           "amqp://u:p@h/gce", may_map=False, check_mapping=refuse)
    assert (out.config["allowed_functions"], out.dropped) == (ids, [])


def test_an_engine_gce_lacks_falls_back_to_htex():
    out = importer.convert(source({"engine": {"type": "DaskEngine", "max_workers_per_node": 2}}),
                           "amqp://u:p@h/gce", may_map=False, check_mapping=refuse)
    assert out.config["engine"] == {"type": "HighThroughputEngine", "max_workers_per_node": 2}
    assert out.dropped == [("engine.type", f"gce has no DaskEngine (it runs {', '.join(ENGINE_TYPES)}); "
                                           "HighThroughputEngine is used instead")]


def test_block_scalar_of_one_expression_becomes_one_value():
    text = "engine:\n  provider:\n    worker_init: |\n      {{ init | indent(6) }}\n    max_blocks: 1\n"
    assert import_template.convert(text, "t").text == \
        "engine:\n  provider:\n    worker_init: {{ init | indent(6) }}\n    max_blocks: 1\n"


def test_a_block_scalar_with_more_lines_is_left_alone():
    text = "engine:\n  worker_init: |\n    {{ a }}\n    echo b\n"
    assert import_template.convert(text, "t").text == text


@pytest.mark.parametrize("hidden", ["{# idle_heartbeats_hard: 1 #}\n", "{% set x %}\nidle_heartbeats_hard: 1\n{% endset %}\n"])
def test_keys_inside_comments_and_set_blocks_are_not_touched(hidden):
    text = hidden + "engine:\n  type: ThreadPoolEngine\n"
    out = import_template.convert(text, "t")
    assert (out.text, out.dropped) == (text, [])


def test_a_top_level_key_is_commented_out_with_its_block():
    text = "idle_heartbeats_hard: 5\nheartbeat_threshold:\n  {{ x }}\nengine:\n  type: GlobusComputeEngine\n"
    out = import_template.convert(text, "t")
    assert "engine:\n  type: HighThroughputEngine\n" in out.text
    assert "{# gce import left out (gce watches the broker link with AMQP heartbeats (broker.heartbeat in " \
           "config.yaml)):\nheartbeat_threshold:\n  {{ x }}\n#}" in out.text
    assert [setting for setting, _ in out.dropped] == ["t: idle_heartbeats_hard", "t: heartbeat_threshold"]


def test_a_block_holding_a_comment_end_is_removed_not_wrapped():
    out = import_template.convert("idle_heartbeats_hard: {{ a }} {# why #}\nengine: {}\n", "t")
    assert out.text.splitlines()[0] == "{# gce import left out idle_heartbeats_hard here: gce does not stop a user " \
                                       "endpoint that has work; give tasks a time limit instead #}"


def test_gc_variables_get_a_prologue_and_what_gce_lacks_is_named():
    out = import_template.convert("engine:\n  worker_init: {{ _GC.mapped_identity.local.gecos ~ _GC.env.X }}\n", "t")
    assert out.text.startswith(import_template.PROLOGUE)
    assert [setting for setting, _ in out.dropped] == ["t: _GC.mapped_identity.local.gecos", "t: _GC.env"]


def test_a_slurm_endpoint_of_the_globus_compute_docs_carries_over_whole():
    engine = {"type": "GlobusComputeEngine", "max_workers_per_node": 4, "worker_debug": False,
              "provider": {"type": "SlurmProvider", "partition": "cpu", "account": "proj", "walltime": "00:30:00",
                           "nodes_per_block": 2, "init_blocks": 0, "min_blocks": 0, "max_blocks": 4,
                           "scheduler_options": "#SBATCH --constraint=haswell", "worker_init": "module load python",
                           "exclusive": True, "launcher": {"type": "SrunLauncher", "overrides": "--hint=nomultithread"}}}
    out = importer.convert(source({"display_name": "Cluster", "engine": engine}), "amqp://u:p@h/gce",
                           may_map=False, check_mapping=refuse)
    assert out.dropped == []
    assert out.config == {"display_name": "Cluster", "broker": {"url": "amqp://u:p@h/gce"},
                          "engine": {**engine, "type": "HighThroughputEngine"}}
