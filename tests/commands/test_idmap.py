"""gce idmap test: a multi-user endpoint's mapping and policy, run for one identity."""

from __future__ import annotations

import grp
import json
import os
import pwd
from pathlib import Path

import pytest

ENDPOINT_ID = "6f1c1f0e-0000-4000-8000-0000000000aa"
RULES = [{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [
    {"source": "{username}", "match": "(.*)@uni\\.edu", "output": "{0}"},
    {"source": "{username}", "match": "(.*)@lab\\.org", "output": "{0}"},
]}]


@pytest.fixture
def endpoint(home: Path):
    """endpoint(mapping=..., **config keys) -> the mapping file of a multi-user endpoint 'cluster'."""
    def make(mapping: object = RULES, **keys: object) -> Path:
        d = home / "cluster"
        d.mkdir(exist_ok=True)
        config = {"broker": {"url": "amqp://ep-cluster@127.0.0.1:5672/gce"}, "multi_user": True,
                  "identity_mapping_config_path": "identity_mapping.json", **keys}
        (d / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
        (d / "endpoint.json").write_text(json.dumps({"endpoint_id": ENDPOINT_ID}))
        path = d / "identity_mapping.json"
        path.write_text(json.dumps(mapping))
        return path

    return make


def _groups(gids) -> str:
    return ", ".join(f"{g}({grp.getgrgid(g).gr_name})" for g in gids)


def test_an_identity_that_maps(gce, endpoint):
    path = endpoint(allowed_domains=["uni.edu"])
    result = gce("idmap", "test", "cluster", "nobody@uni.edu")
    assert result.exit_code == 0, result.stderr
    pw = pwd.getpwnam("nobody")
    assert result.stdout == (
        "identity 'nobody@uni.edu' maps to local user 'nobody' on endpoint 'cluster'\n"
        f"  rule    expression mapping #1 in {path}\n"
        "  uid     65534\n"
        f"  gid     {_groups([pw.pw_gid])}\n"
        f"  groups  {_groups(sorted(os.getgrouplist('nobody', pw.pw_gid)))}\n"
        f"  home    {pw.pw_dir}\n"
        f"  shell   {pw.pw_shell}\n"
    )
    assert result.stderr == ""


def test_json(gce, endpoint):
    path = endpoint()
    result = gce("idmap", "test", "cluster", "nobody@lab.org", "--json")
    assert result.exit_code == 0, result.stderr
    pw = pwd.getpwnam("nobody")
    assert json.loads(result.stdout) == {
        "identity": "nobody@lab.org", "endpoint": "cluster", "allowed": True, "rule": "expression mapping #2",
        "mapping_file": str(path),
        "local_user": {"name": "nobody", "uid": 65534, "gid": pw.pw_gid, "groups": [pw.pw_gid],
                       "home": pw.pw_dir, "shell": pw.pw_shell},
    }


def test_root_is_refused(gce, endpoint):
    endpoint()
    result = gce("idmap", "test", "cluster", "root@uni.edu")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: identity 'root@uni.edu' maps to 'root' (uid 0) on endpoint 'cluster': mapping to root is refused\n"
        "hint: map it to an unprivileged account (allow_privileged_mapping: true lifts this check)\n"
    )


def test_no_rule_matched(gce, endpoint):
    path = endpoint()
    result = gce("idmap", "test", "cluster", "eve@evil.org")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: identity 'eve@evil.org' does not map to a local user on endpoint 'cluster' (no mapping rule matched)\n"
        f"hint: add a rule for this identity to {path}\n"
    )


def test_refused_by_allowed_domains_as_json(gce, endpoint):
    path = endpoint(allowed_domains=["uni.edu"])
    result = gce("idmap", "test", "cluster", "nobody@lab.org", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "identity": "nobody@lab.org", "endpoint": "cluster", "allowed": False, "rule": "allowed_domains",
        "reason": "identity 'nobody@lab.org' is not allowed on endpoint 'cluster' (allowed_domains: uni.edu)",
        "detail": "", "mapping_file": str(path),
    }
    assert result.stderr == ""


def test_a_failing_mapping_program_shows_its_stderr(gce, endpoint, tmp_path):
    script = tmp_path / "map.sh"
    script.write_text("#!/bin/sh\necho 'ldap: server down' >&2\nexit 1\n")
    script.chmod(0o755)
    path = endpoint([{"DATA_TYPE": "external_identity_mapping#1.0.0", "command": [str(script)]}])
    result = gce("idmap", "test", "cluster", "alice@uni.edu")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: identity 'alice@uni.edu' could not be mapped on endpoint 'cluster' (external mapping: the mapping "
        "program map.sh exited with status 1): stderr: ldap: server down\n"
        f"hint: fix the mapping program or its rule in {path}\n"
    )


def test_a_broken_mapping_file_is_a_config_error(gce, endpoint):
    path = endpoint({"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{"source": "{username}"}]})
    result = gce("idmap", "test", "cluster", "alice@uni.edu")
    assert result.exit_code == 78
    assert result.stderr == (
        f"error: invalid identity mapping file {path}: mappings[0]: missing match, output\n"
        "hint: fix the file; gce idmap test NAME IDENTITY shows how an identity maps\n"
    )


def test_an_endpoint_that_is_not_multi_user(gce, endpoint, home):
    endpoint(multi_user=False, engine={"type": "ThreadPoolEngine"})
    result = gce("idmap", "test", "cluster", "alice@uni.edu")
    assert result.exit_code == 78
    assert result.stderr == (
        "error: endpoint 'cluster' does not map identities: it is not a multi-user endpoint\n"
        f"hint: set multi_user: true and identity_mapping_config_path in {home}/cluster/config.yaml\n"
    )


def test_an_unknown_endpoint(gce, home):
    result = gce("idmap", "test", "nope", "alice@uni.edu")
    assert result.exit_code == 78
    assert result.stderr.startswith(f"error: no endpoint named 'nope': {home}/nope/config.yaml does not exist\n")
