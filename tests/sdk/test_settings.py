"""Broker URL resolution and the function store (no broker needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gce.sdk import BrokerNotConfigured, UnknownFunction, serialize
from gce.sdk.settings import FunctionStore, broker_user, json_object, redact, resolve_broker_url


def test_the_argument_wins_then_the_environment_then_sdk_yaml(gce_home, monkeypatch):
    Path(gce_home, "sdk.yaml").write_text("broker_url: amqp://file@h/gce\n")
    os.chmod(Path(gce_home, "sdk.yaml"), 0o600)
    assert resolve_broker_url() == "amqp://file@h/gce"
    monkeypatch.setenv("GCE_BROKER_URL", "amqp://env@h/gce")
    assert resolve_broker_url() == "amqp://env@h/gce"
    assert resolve_broker_url("amqp://arg@h/gce") == "amqp://arg@h/gce"


def test_a_missing_url_names_all_three_places(gce_home):
    with pytest.raises(BrokerNotConfigured) as info:
        resolve_broker_url()
    text = str(info.value)
    assert "broker_url=" in text and "$GCE_BROKER_URL" in text and str(Path(gce_home, "sdk.yaml")) in text


def test_a_broken_sdk_yaml_is_named(gce_home):
    Path(gce_home, "sdk.yaml").write_text("broker_url: [unclosed\n")
    with pytest.raises(BrokerNotConfigured, match="sdk.yaml is not valid YAML"):
        resolve_broker_url()


def test_a_readable_password_file_warns(gce_home, caplog):
    path = Path(gce_home, "sdk.yaml")
    path.write_text("broker_url: amqp://u:p@h/gce\n")
    os.chmod(path, 0o644)
    resolve_broker_url()
    assert "chmod 600" in caplog.text


def test_user_and_redaction():
    url = "amqp://alice%40uni.edu:s3cret@broker:5672/gce"
    assert broker_user(url) == "alice@uni.edu"
    assert "s3cret" not in redact(url) and "broker:5672/gce" in redact(url)
    with pytest.raises(BrokerNotConfigured, match="amqp://"):
        broker_user("http://x")


def test_the_store_persists_and_verifies_content(tmp_path):
    kind, blob = serialize.source_function("def f():\n    return 1\n", "f")
    fid = FunctionStore(tmp_path).add(kind, blob)
    assert FunctionStore(tmp_path).get(fid) == (kind, blob)
    (tmp_path / fid).write_bytes(serialize.pack([kind, blob + b"# edited"]))
    with pytest.raises(UnknownFunction):
        FunctionStore(tmp_path).get(fid)
    for bad in ("../../etc/passwd", "0" * 64):
        with pytest.raises(UnknownFunction, match="register_function"):
            FunctionStore(tmp_path).get(bad)


# -- a user endpoint config is checked as the endpoint will, before anything is sent

def _deep(depth: int) -> dict:
    top: dict = {}
    d = top
    for _ in range(depth - 1):
        d["a"] = {}
        d = d["a"]
    return top


def test_a_config_at_the_endpoints_depth_limit_is_taken():
    assert json_object(_deep(32), "user_endpoint_config") == _deep(32)


@pytest.mark.parametrize("depth", [33, 950, 30_000])
def test_a_config_deeper_than_endpoints_accept_is_refused_with_a_sentence(depth):
    with pytest.raises(ValueError, match="user_endpoint_config is refused: it nests more than 32 levels deep"):
        json_object(_deep(depth), "user_endpoint_config")


def test_what_json_cannot_carry_is_a_type_error():
    with pytest.raises(TypeError, match="must be JSON-serializable"):
        json_object({"a": object()}, "resource_specification")
