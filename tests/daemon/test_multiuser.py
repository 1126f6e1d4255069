"""A multi-user endpoint run by root, for real: identity mapping, the privilege drop, one UEP per
user and config, refusals answered as results, idle UEPs stopped, no UEP outliving its manager."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.daemon.multiuser import MultiUserEndpoint, local_accounts, processes_of
from tests.endpoint import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")


@pytest.fixture(scope="module")
def users():
    with local_accounts() as accounts:
        yield accounts


@pytest.fixture(scope="module")
def endpoint(broker, users):
    ep = MultiUserEndpoint(broker, environ={"SITE_QUEUE": SITE_QUEUE})
    yield ep
    ep.close()
    wait_until(lambda: not processes_of(["gcetest-mu-a", "gcetest-mu-b"]), timeout=20)


@pytest.fixture
def scratch():
    """A sticky, world-writable directory for the files the users' tasks write, removed after."""
    d = Path(tempfile.mkdtemp(prefix="gce-mu-scratch-"))
    d.chmod(0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# In the manager's environment: a UEP must not inherit it (test_multiuser_isolation.py tries harder).
SITE_QUEUE = f"amqp://site:{uuid.uuid4().hex}@queue.example.org/"


def whoami(path: str) -> dict:
    import os

    with open(path, "w") as f:
        f.write("x")
    try:
        open("/root/x")
        root_readable = True
    except PermissionError:
        root_readable = False
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
            "root_readable": root_readable, "owner": os.stat(path).st_uid, "umask": os.umask(0o077),
            "env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(), "sid": os.getsid(0)}


def _expect(user) -> dict:
    return {"uid": user.pw_uid, "gid": user.pw_gid, "groups": sorted(os.getgrouplist(user.pw_name, user.pw_gid))}


def test_each_user_runs_as_their_mapped_account(endpoint, users, scratch):
    assert os.stat("/root").st_mode & 0o777 == 0o700
    assert SITE_QUEUE.encode() in Path(f"/proc/{endpoint.pid}/environ").read_bytes()
    with endpoint.executor("alice@uni.edu", user_endpoint_config={"workers": 2}) as ea, \
            endpoint.executor("bob@uni.edu", user_endpoint_config={"workers": 2}) as eb:
        fa = ea.submit(whoami, f"{scratch}/alice-{uuid.uuid4().hex}")
        fb = eb.submit(whoami, f"{scratch}/bob-{uuid.uuid4().hex}")
        a, b = fa.result(timeout=60), fb.result(timeout=60)
    for got, user in ((a, users["alice@uni.edu"]), (b, users["bob@uni.edu"])):
        assert {k: got[k] for k in ("uid", "gid", "groups")} == _expect(user)
        assert got["euid"] == user.pw_uid and got["owner"] == user.pw_uid
        assert got["root_readable"] is False
        assert got["umask"] == 0o077
        assert got["env"]["USER"] == user.pw_name and got["env"]["LOGNAME"] == user.pw_name
        assert got["env"]["SITE_SCRATCH"] == "/scratch" and got["env"]["HOME"] == "/elsewhere"  # the admin's word
        assert got["cwd"] == user.pw_dir
        assert not [k for k, v in got["env"].items() if "amqp" in v.lower()]
        # A ThreadPoolEngine runs the task in the UEP itself: a session leader, apart from the manager's.
        assert got["sid"] == got["pid"] == os.getsid(got["pid"]) != os.getsid(endpoint.pid)
    assert a["uid"] != b["uid"]
    log = Path(users["alice@uni.edu"].pw_dir, ".gce", "uep-logs", "mu")
    assert log.is_dir() and log.stat().st_uid == users["alice@uni.edu"].pw_uid


def test_mapping_to_root_is_refused(endpoint, users):
    from gce.sdk.errors import TaskFailed

    with endpoint.executor("root@uni.edu") as ex:
        fut = ex.submit(whoami, "/tmp/never")
        with pytest.raises(TaskFailed) as e:
            fut.result(timeout=60)
    assert e.value.code == "IDENTITY_REFUSED"
    assert "'root@uni.edu'" in str(e.value) and "'mu'" in str(e.value)
    assert not os.path.exists("/tmp/never")
    admin_log = endpoint.paths.log_file.read_text(errors="replace")
    assert "refused a task of 'root@uni.edu' (rule: uid 0)" in admin_log  # and the rule that decided


def test_user_config_outside_the_schema_is_refused(endpoint, users):
    from gce.sdk.errors import TaskFailed

    with endpoint.executor("alice@uni.edu", user_endpoint_config={"workers": 99}) as ex:
        with pytest.raises(TaskFailed) as e:
            ex.submit(whoami, "/tmp/never").result(timeout=60)
    assert e.value.code == "USER_CONFIG_INVALID"
    assert "workers" in str(e.value)


class Marker:
    """Creates a file when unpickled: whoever unpickles the task's arguments leaves it behind."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def identity(x):
    return None


def test_root_manager_never_unpickles(endpoint, users):
    marker = Path(tempfile.mkdtemp(prefix="gce-mu-marker-"))
    marker.chmod(0o777)
    path = str(marker / "unpickled")
    try:
        with endpoint.executor("alice@uni.edu") as ex:
            ex.submit(identity, Marker(path)).result(timeout=60)
        # The task reached alice's UEP, where her worker unpickled it: the file is hers, never root's.
        assert os.stat(path).st_uid == users["alice@uni.edu"].pw_uid
    finally:
        shutil.rmtree(marker, ignore_errors=True)


def _user_children(manager_pid: int, name: str) -> list:
    """Live processes below MANAGER_PID running as NAME."""
    uid = pwd.getpwnam(name).pw_uid
    try:
        below = psutil.Process(manager_pid).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in below if _alive_as(p, uid)]


def _alive_as(p, uid: int) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE and p.uids().real == uid
    except psutil.Error:
        return False


def test_idle_user_endpoint_stops(broker, users, scratch):
    ep = MultiUserEndpoint(broker, idle_timeout=2)
    try:
        with ep.executor("bob@uni.edu") as ex:
            assert ex.submit(whoami, f"{scratch}/idle-{uuid.uuid4().hex}").result(timeout=60)["uid"] == \
                users["bob@uni.edu"].pw_uid
        assert _user_children(ep.pid, "gcetest-mu-b")
        wait_until(lambda: not _user_children(ep.pid, "gcetest-mu-b"), timeout=15)
    finally:
        ep.close()


HTEX_TEMPLATE = """engine:
  type: HighThroughputEngine
  max_workers_per_node: {{ workers }}
  strategy_period: 0.5
  provider: {type: LocalProvider, init_blocks: 1, min_blocks: 0, max_blocks: 1}
"""


def test_sigkill_of_the_manager_leaves_no_user_process(broker, users, scratch):
    """Not the UEP, nor the parsl interchange, worker pool or workers it started as the user."""
    def alices() -> set[str]:  # "pid cmdline" of each: a pid reused by another program differs
        return set(processes_of(["gcetest-mu-a"]))

    before = alices()  # the module's other endpoint may run a UEP of alice's too
    ep = MultiUserEndpoint(broker, template=HTEX_TEMPLATE)
    try:
        with ep.executor("alice@uni.edu") as ex:
            ex.submit(whoami, f"{scratch}/kill-{uuid.uuid4().hex}").result(timeout=120)
        assert _user_children(ep.pid, "gcetest-mu-a")
        mine = alices() - before
        # The UEP, its interchange, and the worker pool with its worker (started by the
        # provider in a session of their own: not the UEP's children).
        assert len(mine) >= 4 and any("interchange" in p for p in mine), mine
        os.kill(ep.pid, signal.SIGKILL)
        wait_until(lambda: not mine & alices(), timeout=20, interval=0.2)
    finally:
        ep.close()


def test_unwritable_home_is_reported_to_the_submitter(endpoint, users):
    from gce.sdk.errors import TaskFailed

    bob = users["bob@uni.edu"]
    home = Path(bob.pw_dir)
    shutil.rmtree(home / ".gce", ignore_errors=True)
    os.chown(home, 0, 0)
    try:
        with endpoint.executor("bob@uni.edu", user_endpoint_config={"workers": 3}) as ex:
            with pytest.raises(TaskFailed) as e:
                ex.submit(whoami, "/tmp/never").result(timeout=60)
    finally:
        os.chown(home, bob.pw_uid, bob.pw_gid)
    assert e.value.code == "ENDPOINT_FAILED"
    said = f"home directory {home} of user {bob.pw_name} is not writable"
    assert said in str(e.value)
    assert said in endpoint.paths.log_file.read_text(errors="replace")  # the admin is told the same
