"""gce/config/writer.py: the rendered config is commented, valid, and quotes what users type."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from gce.config import model, writer
from gce.config.paths import endpoint_paths
from gce.errors import ConfigError, GceError, UsageError
from gce.transport import urls

CONFIG = Path("/x/demo/config.yaml")


def _ep(**kw) -> writer.NewEndpoint:
    base = dict(name="demo", broker_url="amqps://ep:s3cret@broker.example.org:5671/gce", max_workers=3,
                endpoint_id="6f1c1f0e-0000-4000-8000-000000000001", created_at="2025-01-02T03:04:05+00:00")
    return writer.NewEndpoint(**{**base, **kw})


@pytest.mark.parametrize("engine, expected", [
    ("htex", {
        "type": "HighThroughputEngine", "max_workers_per_node": 3, "strategy_period": 0.5,
        "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1,
                     "nodes_per_block": 1, "worker_init": ""},
    }),
    ("process", {"type": "ProcessPoolEngine", "max_workers": 3}),
    ("thread", {"type": "ThreadPoolEngine", "max_workers": 3}),
])
def test_each_engine_renders_to_a_valid_config(engine, expected):
    ep = _ep(engine=engine)
    data = writer.check_rendered(writer.render(ep, CONFIG), ep, str(CONFIG))
    assert data == {
        "display_name": "demo",
        "broker": {"url": "amqps://ep:s3cret@broker.example.org:5671/gce"},
        "engine": expected,
    }


@pytest.mark.parametrize("engine", sorted(writer.ENGINES))
def test_every_key_shown_commented_out_is_valid_when_uncommented(engine):
    """Lines '#key: value' document optional settings with their defaults: uncommented, they must validate."""
    text = writer.render(_ep(engine=engine), CONFIG)
    uncommented = re.sub(r"^(\s*)#([a-z_]+:)", r"\1\2", text, flags=re.M)
    assert uncommented != text
    data = yaml.safe_load(uncommented)
    model.validate(data, "uncommented")
    assert set(data) == {"display_name", "broker", "engine", "limits", "allowed_functions", "status_period",
                         "multi_user", "debug"}
    assert set(data["broker"]) == {"url", "queue_type", "prefetch", "heartbeat", "management_url"}
    assert set(data["limits"]) == {"max_payload_bytes", "max_result_bytes", "task_attempts", "max_output_bytes"}
    if engine == "htex":
        assert {"block_failure_limit", "block_grace_period", "scheduler_timeout"} <= set(data["engine"])
    # the defaults shown are the defaults the loader uses
    defaults = model.EndpointConfig(name="n", endpoint_id="i", broker_url="u", engine={})
    loaded = model.from_data("n", "i", data)
    for key in ("queue_type", "prefetch", "heartbeat", "max_payload_bytes", "max_result_bytes", "task_attempts",
                "max_output_bytes", "multi_user", "allowed_functions", "status_period", "debug"):
        assert getattr(loaded, key) == getattr(defaults, key), key


def test_every_setting_has_a_comment_above_it():
    text = writer.render(_ep(), CONFIG)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*#?[a-z_]+:", line):
            above = lines[i - 1].strip()
            assert above.startswith("# ") or above.endswith(":"), f"line {i + 1} {line!r} has no comment"


@pytest.mark.parametrize("nasty", [
    'x"\nbroker: {url: "amqp://evil"}',
    "a: b\n- c",
    "{{ 7*7 }} {% raw %}",
    "back\\slash and 'quotes' and \"double\"",
    "tab\tbell\x07del\x7fnel\x85 é ✓ \U0001f600",
    "line\u2028para\u2029bom\ufeff\r\n",
    "[red]markup[/red] #not a comment",
])
def test_user_text_cannot_break_out_of_its_string(nasty):
    # a usable URL (gce refuses one it could not connect with) with the rest of the nasty text in it
    password = re.sub(r"[][/?#@%\s\x00-\x1f\x7f]", lambda m: quote(m.group(), safe=""), nasty)
    ep = _ep(display_name=nasty, broker_url=f"amqp://u:{password}@h/v")
    text = writer.render(ep, CONFIG)
    data = writer.check_rendered(text, ep, str(CONFIG))
    assert data["display_name"] == nasty
    assert set(data) == {"display_name", "broker", "engine"}


def test_placeholder_url_says_what_to_fill_in():
    text = writer.render(_ep(broker_url=writer.DEFAULT_BROKER_URL, default_url=True), CONFIG)
    assert "# FILL IN the broker's host and this endpoint's broker account" in text
    assert "keep it readable by its owner only (mode 0600)" in text


def test_url_without_password_tells_how_to_keep_one_private():
    text = writer.render(_ep(broker_url="amqp://broker.example.org/gce"), CONFIG)
    assert "FILL IN" not in text
    assert f'chmod 600 "{CONFIG}"' in text


@pytest.mark.parametrize("url, redacted, secret", [
    ("amqps://ep:s3cret@host:5671/gce", "amqps://ep:***@host:5671/gce", True),
    ("amqp://ep:p@ss:w/rd@host/gce", "amqp://ep:***@host/gce", True),  # unencoded '@' and '/': hide it all
    ("amqp://ep:p%40ss@host/gce?heartbeat=5", "amqp://ep:***@host/gce?heartbeat=5", True),
    ("amqp://ep@host/gce", "amqp://ep@host/gce", False),
    ("amqp://ep:@host/gce", "amqp://ep:***@host/gce", False),
    ("amqp://host:5672/gce", "amqp://host:5672/gce", False),
    ("not a url", "not a url", False),
])
def test_redact_and_password_detection(url, redacted, secret):
    assert urls.redact(url) == redacted
    assert urls.has_password(url) is secret


@pytest.mark.parametrize("url", ["http://u:pw@h/v", "amqp:/h", "amqp://u:pw@h/v with space", ""])
def test_invalid_broker_url_is_refused_without_showing_the_password(url):
    with pytest.raises(UsageError) as err:
        writer.check_broker_url(url)
    assert "pw" not in str(err.value)
    assert err.value.why == "it must start with amqp:// or amqps:// and contain no spaces"


def test_values_are_checked():
    with pytest.raises(UsageError, match="unknown engine 'slurm'"):
        writer.check_values(_ep(engine="slurm"))
    with pytest.raises(UsageError, match="at most 256 fit"):
        writer.check_values(_ep(display_name="x" * 257))
    with pytest.raises(UsageError, match="less than 1"):
        writer.check_values(_ep(max_workers=0))


def test_default_broker_url_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(writer.BROKER_URL_ENV, raising=False)
    assert writer.default_broker_url() == ("amqp://127.0.0.1:5672/gce", True)
    monkeypatch.setenv(writer.BROKER_URL_ENV, " amqps://ep:pw@b/gce \n")
    assert writer.default_broker_url() == ("amqps://ep:pw@b/gce", False)


def test_write_creates_private_files_that_load(gce_home):
    paths = endpoint_paths("demo")
    ep = _ep()
    written = writer.write(paths, ep)
    assert written == writer.Written(paths.config_file, paths.endpoint_json, 0o600)
    assert stat.S_IMODE(paths.config_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.endpoint_json.stat().st_mode) == 0o644
    assert json.loads(paths.endpoint_json.read_text()) == {
        "endpoint_id": ep.endpoint_id, "name": "demo", "created_at": "2025-01-02T03:04:05+00:00"}
    config = model.load(paths)
    assert (config.endpoint_id, config.broker_url, config.display_name) == (ep.endpoint_id, ep.broker_url, "demo")
    assert sorted(p.name for p in paths.config_dir.iterdir()) == ["config.yaml", "endpoint.json"]  # no temp files


def test_write_without_a_secret_is_world_readable(gce_home):
    paths = endpoint_paths("pub")
    assert writer.write(paths, _ep(name="pub", broker_url="amqp://b/gce")).config_mode == 0o644
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o644


def test_write_refuses_an_existing_endpoint_and_keeps_it(gce_home):
    paths = endpoint_paths("demo")
    writer.write(paths, _ep())
    before = paths.config_file.read_text()
    with pytest.raises(GceError) as err:
        writer.write(paths, _ep(endpoint_id="other"))
    assert err.value.exit_code == 73
    assert str(err.value) == f"endpoint 'demo' already exists: {paths.config_file} is there"
    assert paths.config_file.read_text() == before


def test_write_refuses_when_only_endpoint_json_is_left(gce_home):
    paths = endpoint_paths("demo")
    paths.state_dir.mkdir(parents=True)
    paths.endpoint_json.write_text("{}")
    with pytest.raises(GceError, match="already exists"):
        writer.write(paths, _ep())
    assert not paths.config_file.exists()


def test_a_config_that_does_not_validate_is_not_written(gce_home, monkeypatch):
    paths = endpoint_paths("demo")
    monkeypatch.setattr(writer, "render", lambda ep, f: "broker: {url: amqp://h}\nengine: {type: Nope}\n")
    with pytest.raises(ConfigError):
        writer.write(paths, _ep())
    assert not paths.config_dir.exists()
