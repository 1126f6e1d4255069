"""gce render-user-config: the config a user's values make, or why they make none."""

from __future__ import annotations

import json
import os
import pwd

import pytest
import yaml

from gce.config.paths import endpoint_paths

ME = pwd.getpwuid(os.getuid())


@pytest.fixture
def templated(configured):
    paths = configured("multi", "--multi-user", "--broker-url", "amqp://ep:s3cret@b/gce")
    return paths.config_dir


def default_engine(home: str, init: str = "", workers: int = 2) -> dict:
    return {"type": "HighThroughputEngine", "max_workers_per_node": workers, "strategy_period": 0.5,
            "provider": {"type": "LocalProvider", "nodes_per_block": 1, "init_blocks": 1, "min_blocks": 0,
                         "max_blocks": 1, "worker_init": f"cd {home}\n{init}"}}


def test_without_values_the_schema_defaults_apply(gce, templated):
    result = gce("render-user-config", "multi")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    header, body = result.stdout.split("\n", 1)
    assert header == (f"# user endpoint config of multi for {ME.pw_name} (uid {ME.pw_uid}), "
                      f"from {templated}/user_config_template.yaml.j2")
    assert body == (
        "engine:\n  type: HighThroughputEngine\n  max_workers_per_node: 2\n  strategy_period: 0.5\n"
        "  provider:\n    type: LocalProvider\n    nodes_per_block: 1\n    init_blocks: 1\n    min_blocks: 0\n"
        f"    max_blocks: 1\n    worker_init: |\n      cd {ME.pw_dir}\n"
    )
    assert "s3cret" not in result.output


def test_values_from_a_file_and_nasty_text_stays_one_value(gce, templated, tmp_path):
    init = "module load python\nengine: {type: ThreadPoolEngine}\n{{ 7*7 }} 'x' \"y\""
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"workers_per_node": 4, "worker_init": init}))
    result = gce("render-user-config", "multi", "--user-config", str(values))
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout) == {"engine": default_engine(ME.pw_dir, init, 4)}


def test_as_another_user_and_as_json(gce, templated):
    nobody = pwd.getpwnam("nobody")
    result = gce("render-user-config", "multi", "--as", "nobody", "--json", "--user-config", "-",
                 input='{"max_blocks": 2}')
    assert result.exit_code == 0, result.stderr
    engine = default_engine(nobody.pw_dir)
    engine["provider"]["max_blocks"] = 2
    assert json.loads(result.stdout) == {
        "endpoint": "multi", "user": "nobody", "template": f"{templated}/user_config_template.yaml.j2",
        "config": {"engine": engine}}
    by_uid = gce("render-user-config", "multi", "--as", str(nobody.pw_uid), "--json")
    assert json.loads(by_uid.stdout)["user"] == "nobody"


def test_values_that_break_the_schema(gce, templated, tmp_path):
    values = tmp_path / "values.json"
    values.write_text('{"walltime": "1 hour", "colour": "red"}')
    result = gce("render-user-config", "multi", "--user-config", str(values))
    assert result.exit_code == 78
    assert result.stdout == ""
    assert result.stderr == (
        f"error: invalid user endpoint config {values}: (top level): Additional properties are not allowed "
        "('colour' was unexpected) (allowed keys: account, max_blocks, nodes_per_block, partition, walltime, "
        "worker_init, workers_per_node) (schema: additionalProperties) (and 1 more problem)\n"
        f"hint: the values must fit the schema {templated}/user_config_schema.json\n"
    )


@pytest.mark.parametrize("text, why", [
    ("{", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "it must be a JSON object, not list"),
    ('{"mapped_identity": {}}', "mapped_identity: this name is reserved for the template's own variables"),
    ('{"a": ' * 950 + "1" + "}" * 950, "it nests more than 32 levels deep (the limit is 32)"),
    ("[" * 30_000 + "]" * 30_000, "it nests more than 32 levels deep (the limit is 32)"),
])
def test_values_that_are_no_user_config(gce, templated, text, why):
    result = gce("render-user-config", "multi", "--user-config", "-", input=text)
    assert result.exit_code == 78
    assert result.stderr.startswith(f"error: invalid user endpoint config from standard input: {why}\n")


def test_a_broken_template_names_its_line(gce, templated):
    template = templated / "user_config_template.yaml.j2"
    template.write_text(template.read_text().replace("{{ max_blocks }}", "{{ max_blocks }}{{ queue }}"))
    line = next(i for i, text in enumerate(template.read_text().splitlines(), 1) if "{{ queue }}" in text)
    result = gce("render-user-config", "multi")
    assert result.exit_code == 78
    assert result.stderr == (
        f"error: cannot render the user config template {template}: line {line} of {template}: 'queue' is "
        "undefined (give it a value, or use `is defined` or `| default(...)` in the template)\n"
        "hint: fix it, then check it offline with: gce render-user-config ENDPOINT --user-config FILE.json\n"
    )


def test_a_template_that_makes_no_valid_engine(gce, templated):
    template = templated / "user_config_template.yaml.j2"
    template.write_text(template.read_text().replace("type: HighThroughputEngine", "type: SlurmEngine"))
    result = gce("render-user-config", "multi")
    assert result.exit_code == 78
    assert result.stderr.startswith(
        f"error: the user config template {template} made an invalid config: engine.type: 'SlurmEngine' is not "
        "one of ['HighThroughputEngine', 'ProcessPoolEngine', 'ThreadPoolEngine', 'MPIEngine', "
        "'GlobusMPIEngine'] (schema: enum)")


def test_usage_errors(gce, templated, tmp_path):
    result = gce("render-user-config", "multi", "--as", "no-such-user-here")
    assert (result.exit_code, result.stderr) == (64, (
        "error: unknown user 'no-such-user-here' for --as: no such account on this machine\n"
        "hint: give a local account name or uid\n"))
    result = gce("render-user-config", "multi", "--user-config", str(tmp_path / "none.json"))
    assert (result.exit_code, result.stderr) == (
        64, f"error: cannot read the user config {tmp_path}/none.json: No such file or directory\n")


def test_an_endpoint_that_is_not_templated(gce, configured):
    configured("plain")
    result = gce("render-user-config", "plain")
    assert result.exit_code == 78
    assert result.stderr == (
        "error: endpoint 'plain' is not templated: its config.yaml does not say multi_user: true\n"
        "hint: set multi_user: true in plain's config.yaml, or create a templated endpoint with: "
        "gce configure NEW-NAME --multi-user\n")


def test_an_endpoint_that_does_not_exist(gce, home):
    result = gce("render-user-config", "ghost")
    assert result.exit_code == 78
    assert result.stderr == (f"error: endpoint 'ghost' is not configured: {endpoint_paths('ghost').config_file} "
                             "does not exist\nhint: gce configure ghost\n")
