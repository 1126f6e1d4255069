"""Router.canonical_config: which user endpoint a task's user config belongs to."""

from __future__ import annotations

import asyncio
import dataclasses
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


# --- the mapping as the running manager sees it ---------------------------------------------------

MAPPING = {"DATA_TYPE": "expression_identity_mapping#1.0.0",
           "mappings": [{"source": "{username}", "match": "alice@uni\\.edu", "output": "nobody"}]}


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root manager maps identities")
@pytest.mark.parametrize("revoke", ["deleted", "emptied", "made world-writable"])
def test_a_revoked_mapping_file_maps_nobody_at_once(tmp_path, revoke):
    mapping = tmp_path / "identity_mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    config = from_data("r", "0" * 32, {"broker": {"url": "amqp://b/gce"}, "multi_user": True,
                                       "identity_mapping_config_path": str(mapping)}, tmp_path)
    paths = EndpointPaths(name="r", config_dir=tmp_path, state_dir=tmp_path, runtime_dir=tmp_path,
                          log_file=tmp_path / "endpoint.log")
    router = Router(paths, config)

    async def scenario() -> None:
        mapped = await router.map("alice@uni.edu")
        assert mapped.name == "nobody" and router.known_target("alice@uni.edu") == mapped  # remembered
        if revoke == "deleted":
            mapping.unlink()
        elif revoke == "emptied":
            mapping.write_text("")
        else:
            mapping.chmod(0o666)
        assert router.known_target("alice@uni.edu") is None  # not from memory
        refused = await router.map("alice@uni.edu")
        assert isinstance(refused, Refused) and refused.code == "IDENTITY_NOT_MAPPED"
        assert "'alice@uni.edu' could not be mapped on endpoint 'r'" in str(refused)

    try:
        asyncio.run(scenario())
    finally:
        router.close()


# --- the admin's other files: root checks them, users render them --------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="root's files, writable by others")
def test_a_schema_others_could_change_is_refused(router, tmp_path):
    path = tmp_path / "user_config_schema.json"
    path.chmod(0o666)
    with pytest.raises(Refused) as e:
        router.canonical_config({})
    assert e.value.code == "USER_CONFIG_TEMPLATE_ERROR"
    assert str(e.value) == "endpoint 'r' cannot use its user config schema (the endpoint's log says why)"


@pytest.mark.skipif(os.geteuid() != 0, reason="root's files, writable by others")
def test_a_template_others_could_change_starts_no_user_endpoint(router, tmp_path):
    from gce.daemon.privileges import resolve_local_user
    from gce.transport.message import TaskHeaders

    template = tmp_path / "user_config_template.yaml.j2"
    template.write_text("engine:\n  type: ThreadPoolEngine\n")
    router.config = dataclasses.replace(router.config, user_config_template_path=str(template))
    th = TaskHeaders(task_id="t", user_id="alice", reply_to="q", function_id="f")
    canonical = router.canonical_config({})
    assert router.templated_uep(resolve_local_user("nobody"), canonical, th).conf.template.template_path == str(template)
    template.chmod(0o646)  # bob could then choose what alice's user endpoint runs
    with pytest.raises(Refused) as e:
        router.templated_uep(resolve_local_user("nobody"), canonical, th)
    assert e.value.code == "USER_CONFIG_TEMPLATE_ERROR"
    assert str(e.value) == "endpoint 'r' cannot use its user config template (the endpoint's log says why)"
