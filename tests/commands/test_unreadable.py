"""An endpoint whose files a user cannot read, seen by that user: one row of `gce list` says so
and the others show as usual, `gce diagnostic` fails its files check naming the path and its
mode, and `gce start` refuses with a permission error (exit 77) naming path, mode and owner.

The commands run as a real throw-away account (root reads everything), against real files
made unreadable with chmod.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from gce.cli import app
from gce.config.paths import endpoint_paths
from tests.commands.conftest import GCE_BIN

USER = f"gcetest-dg-{os.getpid() % 100000}"


@pytest.fixture(scope="module")
def account() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("creates a local account: run as root")
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", USER], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(USER)
    finally:
        subprocess.run(["userdel", USER], capture_output=True)


@pytest.fixture
def shared(account, monkeypatch) -> Iterator[Path]:
    """A GCE_HOME the account may enter, holding its own endpoint 'mine' and root's 'closed'
    (a 0700 directory) and 'sealed' (an open directory whose files are root's, 0600)."""
    home = Path(tempfile.mkdtemp(prefix="gce-unreadable-"))
    home.chmod(0o755)
    monkeypatch.setenv("GCE_HOME", str(home))
    for name, extra in (("mine", ["--engine", "thread"]), ("closed", []), ("sealed", [])):
        result = CliRunner().invoke(app, ["configure", name, "--max-workers", "1", *extra])
        assert result.exit_code == 0, result.stderr
    for p in [home / "mine", *(home / "mine").rglob("*")]:
        os.lchown(p, account.pw_uid, account.pw_gid)
    (home / "closed").chmod(0o700)
    (home / "sealed").chmod(0o755)
    (home / "sealed" / "manager.lock").write_bytes(b"")
    for p in (home / "sealed").iterdir():
        p.chmod(0o600)
    try:
        yield home
    finally:
        shutil.rmtree(home)


def as_user(account, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "GCE_HOME": str(home), "HOME": str(home), "LANG": "C.UTF-8",
           "COLUMNS": "200"}
    return subprocess.run([str(GCE_BIN), *args], capture_output=True, text=True, timeout=60, env=env, cwd="/",
                          user=account.pw_uid, group=account.pw_gid, extra_groups=[])


def test_list_shows_the_unreadable_rows_and_the_others(account, shared):
    result = as_user(account, shared, "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["mine"]["state"] == "stopped" and rows["mine"]["engine_type"] == "ThreadPoolEngine"
    assert rows["closed"]["state"] == "unreadable"
    assert rows["closed"]["reason"] == f"permission denied: {shared / 'closed'} is mode 0700, owned by root"
    assert rows["sealed"]["state"] == "unreadable"
    assert rows["sealed"]["reason"].startswith(f"permission denied: {shared / 'sealed'}/")
    assert rows["sealed"]["reason"].endswith(" is mode 0600, owned by root")

    table = as_user(account, shared, "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ENDPOINT", "ID"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["closed", "mine", "sealed"]
    assert lines[1].split()[2] == "unreadable" and lines[2].split()[2] == "stopped"
    assert f"closed: unreadable: permission denied: {shared / 'closed'} is mode 0700, owned by root" in lines


def test_diagnostic_fails_the_files_check_naming_path_and_mode(account, shared):
    result = as_user(account, shared, "diagnostic", "--json")
    assert "internal error" not in result.stderr and result.stderr == ""
    assert result.returncode == 1
    rows = {(r["endpoint"], r["check"]): r for r in json.loads(result.stdout)}
    assert not [r for r in rows.values() if "the check itself failed" in r["reason"]]
    closed = rows[("closed", "files")]
    assert closed["status"] == "FAIL"
    assert f"cannot read {shared / 'closed'}: it is mode 0700, owned by root" in closed["reason"]
    sealed = rows[("sealed", "files")]
    assert sealed["status"] == "FAIL"
    assert f"cannot read {shared / 'sealed' / 'config.yaml'}: it is mode 0600, owned by root" in sealed["reason"]
    assert rows[("closed", "process")]["status"] == "WARN"
    assert rows[("closed", "process")]["reason"].startswith("cannot tell whether it runs: permission denied")
    assert rows[("mine", "files")]["status"] == "PASS"

    one = as_user(account, shared, "diagnostic", "--endpoint", "closed")
    assert one.returncode == 1 and "internal error" not in one.stderr


@pytest.mark.parametrize("name, path, mode", [("closed", "closed", "0700"), ("sealed", "sealed/config.yaml", "0600")])
def test_start_refuses_with_a_permission_error(account, shared, name, path, mode):
    result = as_user(account, shared, "start", name, "--detach", "--timeout", "5")
    assert result.returncode == 77, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"error: cannot read endpoint {name!r}: permission denied: {shared / path} is mode {mode}, owned by root")
    assert result.stderr.splitlines()[1].startswith("hint: ")
    assert "root" in result.stderr.splitlines()[1]


def test_root_still_reads_them(shared):
    assert endpoint_paths("closed").config_file.is_file()


def test_diagnostic_bundles_what_it_may_read(account, shared):
    out = Path(tempfile.mkdtemp(prefix="gce-bundle-"))
    os.chown(out, account.pw_uid, account.pw_gid)
    try:
        result = as_user(account, shared, "diagnostic", "--bundle-dir", str(out))
        assert result.returncode == 1, result.stderr
        assert "internal error" not in result.stderr
        assert [p.name.startswith("gce-diagnostic-") for p in out.iterdir()] == [True]
    finally:
        shutil.rmtree(out)


@pytest.mark.parametrize("command", ["status", "stop"])
def test_other_commands_on_it_refuse_with_a_permission_error(account, shared, command):
    result = as_user(account, shared, command, "closed")
    assert result.returncode == 77, result.stderr
    assert result.stderr.startswith(f"error: cannot read endpoint 'closed': permission denied: {shared / 'closed'} "
                                    "is mode 0700, owned by root\n")
