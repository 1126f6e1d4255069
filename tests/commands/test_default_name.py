"""NAME may be left out (it is then `default`, as in Globus Compute), and -c/--config-dir DIR
says where endpoints live, as GCE_HOME does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.commands.conftest import GCE_BIN

# Every command whose NAME names one endpoint (gce idmap test takes NAME before IDENTITY: it stays required).
WITH_NAME = ["configure", "start", "stop", "restart", "status", "blocks", "tasks", "logs", "resume", "delete",
             "enable-on-boot", "disable-on-boot", "render-user-config", "audit"]


@pytest.mark.parametrize("command", WITH_NAME)
def test_name_is_optional_in_usage(gce, command):
    result = gce(command, "--help")
    assert result.exit_code == 0, result.output
    usage = result.stdout.splitlines()[0]
    assert usage.startswith(f"Usage: gce {command} [OPTIONS] [NAME]"), usage
    assert "default: default" in " ".join(result.stdout.split())


def test_commands_without_name_use_the_default_endpoint(gce, home: Path):
    created = gce("configure", "--no-input", "--engine", "thread", "--max-workers", "1")
    assert created.exit_code == 0, created.stderr
    assert created.stdout.startswith("created endpoint default (id ")
    assert (home / "default" / "config.yaml").is_file()
    status = gce("status")
    assert status.exit_code == 3, status.stderr  # LSB: not running
    assert "default" in status.stdout + status.stderr
    deleted = gce("delete", "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    assert not (home / "default").exists()


def test_no_default_endpoint_says_so(gce):
    result = gce("start")
    assert result.exit_code == 78
    assert result.stderr.startswith("error: no endpoint named 'default': ")
    assert "hint: gce list shows the configured endpoints; gce configure default creates this one" in result.stderr


# In-process, -c sets GCE_HOME in this process: each call names GCE_HOME so that the runner puts it back.
def test_config_dir_is_where_endpoints_live(gce, home: Path, tmp_path: Path):
    elsewhere, env = tmp_path / "endpoints", {"GCE_HOME": str(home)}
    created = gce("-c", str(elsewhere), "configure", "ep1", "--no-input", env=env)
    assert created.exit_code == 0, created.stderr
    assert (elsewhere / "ep1" / "config.yaml").is_file() and not (home / "ep1").exists()
    listed = gce("--config-dir", str(elsewhere), "list", "--json", env=env)
    assert listed.exit_code == 0, listed.stderr
    assert '"ep1"' in listed.stdout
    assert '"ep1"' not in gce("list", "--json", env=env).stdout  # GCE_HOME's endpoints are others


@pytest.mark.skipif(os.geteuid() != 0, reason="root's endpoints live in /etc/gce unless told otherwise")
def test_config_dir_makes_roots_endpoint_a_personal_one(gce_bin, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("GCE_HOME")
    elsewhere = tmp_path / "endpoints"
    created = gce_bin("-c", str(elsewhere), "configure", "gcetest-cdir", "--no-input")
    assert created.returncode == 0, created.stderr
    assert (elsewhere / "gcetest-cdir" / "config.yaml").is_file()
    assert not Path("/etc/gce/gcetest-cdir").exists()


def test_config_dir_must_be_a_directory(gce, home: Path, tmp_path: Path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    result = gce("-c", str(a_file), "list", env={"GCE_HOME": str(home)})
    assert result.exit_code == 64
    assert result.stderr.startswith(f"error: invalid --config-dir {str(a_file)!r}: it is not a directory")



def test_a_relative_config_dir_is_made_absolute_and_a_tilde_expanded(home: Path, tmp_path: Path):
    """The detached manager runs from "/": a relative GCE_HOME would move under it."""
    (tmp_path / "work").mkdir()
    (tmp_path / "afile").write_text("")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(GCE_BIN), *args], cwd=tmp_path / "work", capture_output=True, text=True,
                              timeout=60, env={**os.environ, "HOME": str(tmp_path)})

    created = run("-c", "rel", "configure", "ep3", "--no-input")
    assert created.returncode == 0, created.stderr
    assert f"config: {tmp_path}/work/rel/ep3/config.yaml" in created.stdout
    refused = run("-c", "~/afile", "list")  # as a quoted ~ reaches gce
    assert refused.returncode == 64, refused.stderr
    assert refused.stderr.startswith(f"error: invalid --config-dir '{tmp_path}/afile': it is not a directory")
