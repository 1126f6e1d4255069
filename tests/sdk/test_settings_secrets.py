"""The SDK's own config errors (sdk.yaml, a broker URL it cannot use) never quote the password."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gce.sdk import BrokerNotConfigured
from gce.sdk.settings import connection_parameters, resolve_broker_url

PASSWORD = "Pl4nted-s3cret"


@pytest.mark.parametrize("text", [
    f'broker_url: "amqp://alice:{PASSWORD}@h/gce\n',
    f"broker_url: amqp://alice:{PASSWORD}@h/gce: x\n",
    f"broker_url: *{PASSWORD}\n",
])
def test_a_broken_sdk_yaml_is_named_without_its_password(gce_home, text):
    path = Path(gce_home, "sdk.yaml")
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(BrokerNotConfigured) as info:
        resolve_broker_url()
    assert str(info.value).startswith(f"{path} is not valid YAML at line ")
    assert "Pl4nted" not in str(info.value) and "s3cret" not in str(info.value)


@pytest.mark.parametrize("url, why", [
    ("amqp://alice:Pl4nted/s3cret@h/gce", "its user name or password holds a '/', '?' or '#'"),
    (f"amqp://h:{PASSWORD}/gce", "its port is not a number from 0 to 65535"),
    (f"amqp://alice:{PASSWORD}@[::1/gce", "it is not a URL gce can read"),
    ("amqp://alice@h/gce", "it names a user but no password"),  # pika: a bare TypeError
])
def test_a_broker_url_pika_would_quote_is_refused_first(url, why):
    with pytest.raises(BrokerNotConfigured) as info:
        connection_parameters(url, 30, "test")
    assert why in str(info.value)
    assert "Pl4nted" not in str(info.value) and "s3cret" not in str(info.value)
