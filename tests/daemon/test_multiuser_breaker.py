"""A multi-user endpoint whose users' blocks keep failing, for real (two local accounts, their
HighThroughputEngine's LocalProvider blocks run a worker_init that exits 1): each user sees the
reason for their own user endpoint and only a count of the others', resumes only their own (root
resumes anyone's), and a change of the user config template restarts a failing one from it.

Creates accounts: run under `flock /tmp/gce-mu.lock`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gce.daemon.client import EndpointClient
from gce.sdk import TaskFailed
from tests.daemon.multiuser import MultiUserEndpoint, local_accounts, processes_of
from tests.endpoint import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

USERS = {"alice@uni.edu": "gcetest-bf-a", "bob@uni.edu": "gcetest-bf-b"}
GCE = str(Path(sys.executable).parent / "gce")
TEMPLATE = """engine:
  type: HighThroughputEngine
  max_workers_per_node: 1
  strategy_period: 0.3
  address: 127.0.0.1
  block_failure_limit: 2
  block_grace_period: 5
  scheduler_poll_period: 1
  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
    worker_init: "WORKER_INIT"
"""


def add(a, b):
    return a + b


def gce_as(user, *args: str) -> subprocess.CompletedProcess:
    env = {"GCE_HOME": os.environ["GCE_HOME"], "PATH": os.environ["PATH"], "PYTHONPATH": os.getcwd(), "COLUMNS": "200"}
    ids = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run([GCE, *args], capture_output=True, text=True, timeout=60, cwd="/", env=env, **ids)


def failing(ep: MultiUserEndpoint, identity: str) -> None:
    with ep.executor(identity) as ex:
        with pytest.raises(TaskFailed) as failed:
            ex.submit(add, 1, 2).result(timeout=90)
    assert failed.value.code == "BLOCKS_FAILING", failed.value
    assert "no module named numpi" in str(failed.value)


def test_each_user_resumes_only_their_own_and_a_template_change_restarts_a_failing_one(broker):
    template = TEMPLATE.replace("WORKER_INIT", "echo no module named numpi >&2; exit 1")
    with local_accounts(tuple(USERS.values()), users=USERS) as users:
        alice, bob = users["alice@uni.edu"], users["bob@uni.edu"]
        ep = MultiUserEndpoint(broker, mapping=USERS, identities=tuple(USERS), template=template)
        try:
            failing(ep, "alice@uni.edu")
            failing(ep, "bob@uni.edu")
            root = EndpointClient(ep.paths)
            wait_until(lambda: root.status().blocks_failing == 2, timeout=15, interval=0.3)
            keys = {u.key.split("/")[0]: u.key for u in root.status().user_endpoints}

            status = gce_as(bob, "status", "mu")
            assert status.returncode == 0, status.stderr  # the endpoint serves its other users
            assert f"user endpoint {keys[bob.pw_name]}: blocks failing: " in status.stdout
            assert alice.pw_name not in status.stdout
            assert status.stdout.splitlines()[-1] == "1 user endpoint(s) of other users have failing blocks too"

            refused = gce_as(bob, "resume", "mu", "--user", alice.pw_name)
            assert refused.returncode == 77, refused.stderr
            assert refused.stderr.startswith(f"error: cannot resume endpoint mu: permission denied: the user "
                                             f"endpoints of {alice.pw_name!r} are not yours to resume")
            unknown = gce_as(bob, "resume", "mu", "--user", "gcetest-bf-nobody")
            assert unknown.returncode == 64 and "no local user 'gcetest-bf-nobody'" in unknown.stderr
            own = gce_as(bob, "resume", "mu")
            assert own.returncode == 0, own.stderr
            assert own.stdout.startswith(f"resumed user endpoint {keys[bob.pw_name]} of mu (its blocks had failed")
            assert len(own.stdout.splitlines()) == 1  # not alice's
            assert keys[alice.pw_name] in [u.key for u in root.status().user_endpoints if u.blocks_failing]
            theirs = gce_as(None, "resume", "mu", "--user", alice.pw_name)  # root: anyone's
            assert theirs.returncode == 0, theirs.stderr
            assert theirs.stdout.startswith(f"resumed user endpoint {keys[alice.pw_name]} of mu")

            # The cause is still there: bob's blocks fail again, until the template is fixed,
            # which restarts his user endpoint from it at his next task.
            failing(ep, "bob@uni.edu")
            (ep.paths.config_dir / "user_config_template.yaml.j2").write_text(
                TEMPLATE.replace("WORKER_INIT", "echo fixed"))
            with ep.executor("bob@uni.edu") as ex:
                assert ex.submit(add, 3, 4).result(timeout=90) == 7
            log = ep.paths.log_file.read_text()
            assert log.count(f"user endpoint {keys[bob.pw_name]}: its config changed") == 1
            assert log.count(f"user endpoint {keys[bob.pw_name]}: blocks failing, it submits no more") == 2
            # alice's failing one restarts from it on the status tick: nothing is left to resume
            wait_until(lambda: root.status().blocks_failing == 0, timeout=30, interval=0.5)
            assert gce_as(None, "resume", "mu").stdout == "nothing to resume: no user endpoint of mu has failing blocks\n"
        finally:
            ep.close()
            wait_until(lambda: not processes_of(list(USERS.values())), timeout=20)
