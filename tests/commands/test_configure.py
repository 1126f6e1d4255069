"""gce configure: files, modes, broker URL sources, refusals, and a password never printed."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest
import yaml

from gce.config import model
from gce.config.paths import endpoint_paths


def _uuid_in(text: str) -> str:
    ep_id = text.split("(id ")[1].split(")")[0]
    uuid.UUID(ep_id, version=4)
    return ep_id


def test_default_configure_writes_a_loadable_htex_endpoint(gce, home):
    result = gce("configure", "demo", "--max-workers", "4")
    assert result.exit_code == 0, result.stderr
    paths = endpoint_paths("demo")
    ep_id = _uuid_in(result.stdout)
    assert result.stdout == (
        f"created endpoint demo (id {ep_id})\n"
        f"  config: {home}/demo/config.yaml (mode 0600)\n"
        f"  id:     {home}/demo/endpoint.json\n"
        "  broker: amqp://127.0.0.1:5672/gce\n"
        "  engine: HighThroughputEngine, 4 workers per node\n"
        f"next: put the broker's address and credentials in broker.url of {home}/demo/config.yaml,\n"
        "      then run: gce start demo\n"
    )
    assert result.stderr == ""
    config = model.load(paths)
    assert config.endpoint_id == ep_id
    assert config.broker_url == "amqp://127.0.0.1:5672/gce"
    assert config.engine == {
        "type": "HighThroughputEngine", "max_workers_per_node": 4, "strategy_period": 0.5,
        "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1,
                     "nodes_per_block": 1, "worker_init": ""},
    }
    record = json.loads(paths.endpoint_json.read_text())
    assert set(record) == {"endpoint_id", "name", "created_at"}
    assert (record["endpoint_id"], record["name"]) == (ep_id, "demo")
    assert record["created_at"].endswith("+00:00")
    assert stat.S_IMODE(paths.config_dir.stat().st_mode) == 0o700
    # the placeholder URL will receive credentials: the file is private from the start
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("engine, expected, per", [
    ("process", {"type": "ProcessPoolEngine", "max_workers": 1}, "1 worker"),
    ("thread", {"type": "ThreadPoolEngine", "max_workers": 1}, "1 worker"),
    ("HTEX", None, "1 worker per node"),
])
def test_engines(gce, home, engine, expected, per):
    result = gce("configure", "e", "--engine", engine, "--max-workers", "1", "--broker-url", "amqp://b/gce")
    assert result.exit_code == 0, result.stderr
    assert f"  engine: {model.load(endpoint_paths('e')).engine['type']}, {per}\n" in result.stdout
    if expected:
        assert model.load(endpoint_paths("e")).engine == expected


def test_max_workers_defaults_to_the_cpu_count(gce, home):
    assert gce("configure", "demo", "--engine", "thread").exit_code == 0
    assert model.load(endpoint_paths("demo")).engine["max_workers"] == (os.cpu_count() or 1)


def test_display_name_with_markup_and_yaml_is_kept_verbatim(gce, home):
    name = '[bold]Lab[/bold] "GPU": {x: 1}'
    result = gce("configure", "demo", "--display-name", name, "--broker-url", "amqp://b/gce")
    assert result.exit_code == 0, result.stderr
    assert model.load(endpoint_paths("demo")).display_name == name


def test_broker_url_with_password_on_argv_warns_and_is_never_printed(gce, home):
    result = gce("configure", "demo", "--broker-url", "amqps://ep:Sup3rS3cret@broker:5671/gce")
    assert result.exit_code == 0
    assert "Sup3rS3cret" not in result.output
    assert "  broker: amqps://ep:***@broker:5671/gce\n" in result.stdout
    assert result.stdout.endswith("next: gce start demo  (add --detach to run it in the background)\n")
    assert result.stderr == (
        "warning: the broker password was given on the command line, where other users of this machine can see "
        "it (ps, shell history); --broker-url-file FILE keeps it out of sight\n"
    )
    paths = endpoint_paths("demo")
    assert model.load(paths).broker_url == "amqps://ep:Sup3rS3cret@broker:5671/gce"
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o600


def test_broker_url_file(gce, home, tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("# the endpoint's account\n\n  amqps://ep:pw-from-file@broker/gce  \n")
    url_file.chmod(0o600)
    result = gce("configure", "demo", "--broker-url-file", str(url_file))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert "pw-from-file" not in result.output
    assert model.load(endpoint_paths("demo")).broker_url == "amqps://ep:pw-from-file@broker/gce"


def test_broker_url_file_readable_by_others_gets_a_warning(gce, home, tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("amqps://ep:pw@broker/gce\n")
    url_file.chmod(0o644)
    result = gce("configure", "demo", "--broker-url-file", str(url_file))
    assert result.exit_code == 0
    assert result.stderr == f"warning: {url_file} holds a password and other users may read it; chmod 600 {url_file}\n"


def test_broker_url_from_the_environment_without_password_is_world_readable(gce, home, monkeypatch):
    monkeypatch.setenv("GCE_ENDPOINT_BROKER_URL", "amqp://broker.example.org/gce")
    result = gce("configure", "demo")
    assert result.exit_code == 0
    assert "  broker: amqp://broker.example.org/gce\n" in result.stdout
    paths = endpoint_paths("demo")
    assert model.load(paths).broker_url == "amqp://broker.example.org/gce"
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o644


@pytest.mark.parametrize("args, stderr", [
    (["--broker-url", "amqp://a/b", "--broker-url-file", "/x"],
     "error: conflicting options: give --broker-url or --broker-url-file, not both\n"),
    (["--broker-url", "https://u:hidden@h/v"],
     "error: invalid broker URL 'https://u:***@h/v': it must start with amqp:// or amqps:// and contain no spaces\n"
     "hint: the URL looks like amqps://USER:PASSWORD@HOST:5671/VHOST\n"),
    (["--broker-url-file", "/nonexistent/url"],
     "error: cannot read the broker URL from /nonexistent/url: No such file or directory\n"
     "hint: the file holds one line: amqps://USER:PASSWORD@HOST:5671/VHOST\n"),
    (["--display-name", "x" * 300],
     "error: invalid display name: it has 300 characters; at most 256 fit\n"),
])
def test_bad_options_are_usage_errors(gce, home, args, stderr):
    result = gce("configure", "demo", *args)
    assert result.exit_code == 64
    assert result.stderr == stderr
    assert result.stdout == ""
    assert not (home / "demo").exists()


def test_empty_url_file(gce, home, tmp_path):
    (tmp_path / "url").write_text("# nothing\n\n")
    result = gce("configure", "demo", "--broker-url-file", str(tmp_path / "url"))
    assert result.exit_code == 64
    assert result.stderr == f"error: no broker URL in {tmp_path}/url: the file holds no line other than blanks and comments\n"


def test_invalid_name_is_refused(gce, home):
    result = gce("configure", "../etc")
    assert result.exit_code == 64
    assert result.stderr.startswith("error: invalid endpoint name '../etc': names are 1-63 characters")
    assert list(home.iterdir()) == []


def test_existing_endpoint_is_refused_and_untouched(gce, home):
    assert gce("configure", "demo").exit_code == 0
    paths = endpoint_paths("demo")
    before = (paths.config_file.read_bytes(), paths.endpoint_json.read_bytes())
    result = gce("configure", "demo", "--engine", "thread")
    assert result.exit_code == 73
    assert result.stderr == (
        f"error: endpoint 'demo' already exists: {paths.config_file} is there\n"
        "hint: gce delete demo first, or choose another name\n"
    )
    assert (paths.config_file.read_bytes(), paths.endpoint_json.read_bytes()) == before


def test_bad_engine_and_workers_are_typer_usage_errors(gce, home):
    assert gce("configure", "demo", "--engine", "slurm").exit_code == 2
    assert gce("configure", "demo", "--max-workers", "0").exit_code == 2


def test_configure_as_a_real_process(gce_bin, home):
    proc = gce_bin("configure", "real", "--engine", "process", "--max-workers", "2",
                   env={"GCE_ENDPOINT_BROKER_URL": "amqp://ep:envpw@127.0.0.1:5672/gce"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "envpw" not in proc.stdout
    assert "  broker: amqp://ep:***@127.0.0.1:5672/gce\n" in proc.stdout
    data = yaml.safe_load(endpoint_paths("real").config_file.read_text())
    assert data["engine"] == {"type": "ProcessPoolEngine", "max_workers": 2}
