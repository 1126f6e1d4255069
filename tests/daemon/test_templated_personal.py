"""`gce configure NAME --multi-user` run by an ordinary user: a templated personal endpoint.

No identity mapping and no privilege change: every submitter's tasks run as the account that
started it, in a user endpoint per distinct user config rendered from the template. Run for
real as a freshly created non-root account (the test itself needs root to create it).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gce.sdk.errors import TaskFailed
from tests.daemon.multiuser import kill_processes_of, processes_of
from tests.endpoint import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create the account that runs it")
ACCOUNT = "gcetest-tp"
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def account():
    subprocess.run(["userdel", "-r", ACCOUNT], capture_output=True)
    subprocess.run(["useradd", "-m", "-K", "UID_MIN=1000", ACCOUNT], check=True)
    try:
        yield pwd.getpwnam(ACCOUNT)
    finally:
        kill_processes_of(ACCOUNT)
        subprocess.run(["userdel", "-r", ACCOUNT], capture_output=True)


def as_account(user, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """ARGV run as USER with the environment of a fresh login (and the venv on PATH)."""
    env = ["env", "-i", f"HOME={user.pw_dir}", f"USER={user.pw_name}", f"LOGNAME={user.pw_name}",
           f"PATH={VENV_BIN}:/usr/bin:/bin", "LANG=C.UTF-8"]
    proc = subprocess.run(["runuser", "-u", user.pw_name, "--", *env, *argv], capture_output=True, text=True,
                          timeout=120, cwd="/")
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def whoami():
    import os

    return os.getuid(), os.getgroups()


@pytest.fixture(scope="module")
def endpoint(broker, account):
    configured = as_account(account, f"{VENV_BIN}/gce", "configure", "tp", "--multi-user")
    home = Path(account.pw_dir, ".gce", "tp")
    endpoint_id = json.loads((home / "endpoint.json").read_text())["endpoint_id"]
    endpoint_url, urls = broker.provision(endpoint_id, users=["carol@uni.edu", "dave@uni.edu"])
    as_account(account, sys.executable, "-c", "import sys, pathlib; from gce.commands.broker import set_yaml_key; "
               "set_yaml_key(pathlib.Path(sys.argv[1]), ('broker', 'url'), sys.argv[2])",
               str(home / "config.yaml"), endpoint_url)
    as_account(account, f"{VENV_BIN}/gce", "start", "tp", "--detach")
    yield {"id": endpoint_id, "urls": urls, "home": home, "configured": configured}
    stopped = as_account(account, f"{VENV_BIN}/gce", "stop", "tp", check=False)
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not processes_of([ACCOUNT]), timeout=30)


def executor(endpoint, identity: str, **kw):
    from gce.sdk import Executor

    return Executor(endpoint_id=endpoint["id"], broker_url=endpoint["urls"][identity], **kw)


def test_configure_writes_a_template_and_no_mapping(endpoint, account):
    home = endpoint["home"]
    written = {p.name for p in home.iterdir()}
    assert {"config.yaml", "endpoint.json", "user_config_schema.json", "user_config_template.yaml.j2",
            "user_environment.yaml"} <= written
    assert not [n for n in written if "mapping" in n]
    assert all(p.stat().st_uid == account.pw_uid for p in home.iterdir())
    config = (home / "config.yaml").read_text()
    assert "multi_user: true" in config and "\nidentity_mapping_config_path" not in config
    out = endpoint["configured"].stdout
    assert "user_config_template.yaml.j2" in out and "gce start tp" in out


def test_every_submitter_runs_as_the_account_that_started_it(endpoint, account):
    with executor(endpoint, "carol@uni.edu", user_endpoint_config={"workers_per_node": 1}) as c, \
            executor(endpoint, "dave@uni.edu", user_endpoint_config={"workers_per_node": 2}) as d:
        fc, fd = c.submit(whoami), d.submit(whoami)
        for uid, groups in (fc.result(timeout=120), fd.result(timeout=120)):
            assert uid == account.pw_uid
            assert sorted(groups) == sorted(os.getgrouplist(account.pw_name, account.pw_gid))

    def user_endpoints():
        status = json.loads(as_account(account, f"{VENV_BIN}/gce", "status", "tp", "--json").stdout)
        ueps = status["user_endpoints"]
        # Engine figures are reported every 2 s: wait for the workers to have registered.
        return ueps if sorted(u["engine"].get("workers_total", 0) for u in ueps) == [1, 2] else None

    # One user endpoint per distinct config, each with the engine its values rendered.
    ueps = wait_until(user_endpoints, timeout=20, interval=1)
    assert len(ueps) == 2 and {u["state"] for u in ueps} == {"running"}
    assert {u["engine"]["type"] for u in ueps} == {"HighThroughputEngine"}


def test_values_outside_the_schema_are_refused(endpoint, account):
    with executor(endpoint, "carol@uni.edu", user_endpoint_config={"workers_per_node": 1000}) as c:
        with pytest.raises(TaskFailed) as e:
            c.submit(whoami).result(timeout=60)
    assert e.value.code == "USER_CONFIG_INVALID"
    assert "workers_per_node" in str(e.value) and "64" in str(e.value)
    with executor(endpoint, "carol@uni.edu", user_endpoint_config={"worker_init": "echo 'x\nevil: 1'"}) as c:
        assert c.submit(whoami).result(timeout=120)[0] == account.pw_uid
    assert uuid.UUID(endpoint["id"])
