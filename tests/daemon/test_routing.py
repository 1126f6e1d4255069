"""Router.canonical_config: which user endpoint a task's user config belongs to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gce.config.model import from_data
from gce.config.paths import EndpointPaths
from gce.daemon.routing import Refused, Router

SCHEMA = Path(__file__).resolve().parents[2] / "gce" / "templates" / "multi_user" / "user_config_schema.json"


@pytest.fixture
def router(tmp_path):
    (tmp_path / "user_config_schema.json").write_text(SCHEMA.read_text())
    config = from_data("r", "0" * 32, {"broker": {"url": "amqp://b/gce"}, "multi_user": True}, tmp_path)
    paths = EndpointPaths(name="r", config_dir=tmp_path, state_dir=tmp_path, runtime_dir=tmp_path,
                          log_file=tmp_path / "endpoint.log")
    return Router(paths, config)


def test_a_value_left_out_and_its_default_share_one_user_endpoint(router):
    left_out = router.canonical_config({})
    assert left_out == router.canonical_config({"workers_per_node": 2, "partition": "debug"})
    assert json.loads(left_out)["workers_per_node"] == 2 and json.loads(left_out)["walltime"] == "00:30:00"
    assert router.canonical_config({"workers_per_node": 3}) != left_out
    # Key order never matters: the key is canonical JSON.
    assert router.canonical_config({"max_blocks": 2, "workers_per_node": 3}) == \
        router.canonical_config({"workers_per_node": 3, "max_blocks": 2})


def test_a_config_outside_the_schema_is_refused_every_time(router):
    for _ in range(2):  # a refusal is not remembered as a valid key
        with pytest.raises(Refused) as e:
            router.canonical_config({"workers_per_node": 1000})
        assert e.value.code == "USER_CONFIG_INVALID"
        assert str(e.value) == ("invalid user endpoint config for endpoint 'r': workers_per_node: 1000 is greater "
                                "than the maximum of 64 (schema: maximum)")


def test_a_changed_schema_checks_known_configs_again(router, tmp_path):
    assert router.canonical_config({"workers_per_node": 8})
    schema = json.loads(SCHEMA.read_text())
    schema["properties"]["workers_per_node"]["maximum"] = 4
    path = tmp_path / "user_config_schema.json"
    path.write_text(json.dumps(schema))
    os.utime(path, ns=(1, 1))  # a new signature even within the file system's time resolution
    with pytest.raises(Refused) as e:
        router.canonical_config({"workers_per_node": 8})
    assert str(e.value).endswith("workers_per_node: 8 is greater than the maximum of 4 (schema: maximum)")


def test_an_unreadable_schema_is_refused_naming_the_endpoint(router, tmp_path):
    (tmp_path / "user_config_schema.json").unlink()
    with pytest.raises(Refused) as e:
        router.canonical_config({})
    assert str(e.value) == "endpoint 'r' cannot read its user config schema (the endpoint's log says why)"
