"""What a user endpoint of a root multi-user endpoint starts with, read from the real process.

Root's environment here is what a site's init system may give a manager: a PATH with root's
own directories first, a private TMPDIR, a library to preload. None of it may reach the user's
process; the PATH is a fixed safe one (with this interpreter's scripts, which parsl needs),
and the admin's ``user_environment.yaml`` is what changes it.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from gce.config.uep import UepConfig, UepIdentity
from gce.daemon import privileges, proctree, spawn
from tests.daemon.multiuser import local_accounts
from tests.endpoint import environ

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

USER = "gcetest-sp-a"
ROOTS = {"PATH": "/root/bin:/opt/site-admin/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": "/root/tmp",
         "LD_PRELOAD": "/root/lib/audit.so", "PYTHONPATH": "/root/py", "SITE_TOOL_HOME": "/root/tool"}


@pytest.fixture(scope="module")
def user():
    with local_accounts((USER,), users={"u": USER}) as accounts:
        yield privileges.resolve_local_user(accounts["u"].pw_name)


def started_environment(user, tmp_path: Path, admin: str = "") -> dict[str, str]:
    """The environment of a real UEP started for USER (root's planted in this process's)."""
    env_file = tmp_path / "user_environment.yaml"
    env_file.write_text(admin)
    conf = UepConfig(endpoint_id=str(uuid.uuid4()), engine={"type": "ThreadPoolEngine", "max_workers": 1},
                     run_dir="/nonexistent", max_result_bytes=1 << 20,
                     identity=UepIdentity.from_dict(user.identity()))
    with environ(**ROOTS):
        proc, sock = spawn.spawn_uep(conf, tmp_path / "uep.stderr", user, str(env_file))
    try:
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
    finally:
        sock.close()  # it sees its manager go, and exits
        proc.wait(timeout=60)
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if item)


def test_roots_path_and_variables_do_not_reach_a_user_endpoint(user, tmp_path):
    env = started_environment(user, tmp_path)
    assert env["PATH"] == f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    for name in ("TMPDIR", "LD_PRELOAD", "PYTHONPATH", "SITE_TOOL_HOME"):
        assert name not in env, f"root's {name} reached the user endpoint"
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (user.home, user.name, user.name)
    assert len(env[proctree.MARKER]) == 32  # what marks its processes as its own


def test_user_environment_yaml_sets_the_path_and_tmpdir(user, tmp_path):
    env = started_environment(user, tmp_path, admin="PATH: /opt/site/bin:/usr/bin:/bin\nTMPDIR: /scratch/tmp\n")
    # The admin's order wins; parsl's worker pool is still found.
    assert env["PATH"] == f"/opt/site/bin:/usr/bin:/bin:{Path(sys.executable).parent}"
    assert env["TMPDIR"] == "/scratch/tmp"


def test_a_user_environment_yaml_others_could_change_is_ignored(user, tmp_path, caplog):
    (tmp_path / "user_environment.yaml").write_text("")  # created now, so that it can be made unsafe first
    (tmp_path / "user_environment.yaml").chmod(0o666)  # any user could preload a library into everyone's UEP
    with caplog.at_level("ERROR", logger="gce.daemon.privileges"):
        env = started_environment(user, tmp_path, admin="LD_PRELOAD: /home/mallory/evil.so\n")
    assert "LD_PRELOAD" not in env
    assert any("writable by everyone, so someone other than root could change it" in r.getMessage()
               for r in caplog.records)
