"""gce monitor on a root multi-user endpoint with real local accounts: root sees every user's user
endpoint and tasks; alice sees hers and nothing of bob's, and may not stop his user endpoint.
Run under the multi-user lock (flock /tmp/gce-mu.lock), as the other tests of real accounts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.multiuser import MultiUserEndpoint, local_accounts

GCE = str(Path(sys.executable).parent / "gce")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create local accounts")


def square(x):
    return x * x


def _gce(command: str, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    env = {"GCE_HOME": os.environ["GCE_HOME"], "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "COLUMNS": "300"}
    runas = ["runuser", "-u", user, "--"] if user else []
    return subprocess.run([*runas, "env", *(f"{k}={v}" for k, v in env.items()), GCE, command, *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd="/")


def _monitor(*args: str, user: str | None = None) -> subprocess.CompletedProcess:
    return _gce("monitor", *args, user=user)


def test_each_local_user_sees_only_their_own_and_root_sees_all(broker):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with local_accounts() as users:
        ep = MultiUserEndpoint(broker)
        try:
            for identity in ("alice@uni.edu", "bob@uni.edu"):
                with ep.executor(identity) as ex:
                    assert ex.submit(square, 3).result(timeout=120) == 9
            alice, bob = users["alice@uni.edu"].pw_name, users["bob@uni.edu"].pw_name

            root_view = json.loads(_monitor("mu", "--json").stdout)["endpoints"][0]
            keys = sorted(u["key"].split("/")[0] for u in root_view["status"]["user_endpoints"])
            assert keys == sorted([alice, bob])
            assert {t.get("submitter") for t in root_view["tasks"]} == {"alice@uni.edu", "bob@uni.edu"}

            done = _monitor("mu", "--json", user=alice)
            assert done.returncode == 0, done.stderr
            mine = json.loads(done.stdout)["endpoints"][0]
            assert mine["state"] == "running"
            assert [u["key"].split("/")[0] for u in mine["status"]["user_endpoints"]] == [alice]
            assert {t.get("submitter") for t in mine["tasks"]} == {"alice@uni.edu"}
            assert bob not in done.stdout and "bob@uni.edu" not in done.stdout

            # The same for scripts: gce tasks and gce blocks, as alice, through the endpoint's socket
            # (its files are root's and alice may not read them).
            for command in ("tasks", "blocks"):
                hers = _gce(command, "mu", "--json", user=alice)
                assert hers.returncode == 0, hers.stderr
                assert bob not in hers.stdout and "bob@uni.edu" not in hers.stdout
            assert "alice@uni.edu" in _gce("tasks", "mu", "--json", user=alice).stdout

            bobs = next(u["key"] for u in root_view["status"]["user_endpoints"] if u["key"].startswith(bob))
            refused = subprocess.run(
                ["runuser", "-u", alice, "--", "env", f"GCE_HOME={os.environ['GCE_HOME']}", sys.executable, "-c",
                 "import sys; from gce.config.paths import endpoint_paths; from gce.tui import actions\n"
                 "try:\n    actions.stop_uep(endpoint_paths('mu'), sys.argv[1])\n"
                 "except Exception as e:\n    print(e)", bobs],
                capture_output=True, text=True, timeout=60, cwd="/")
            assert "permission denied" in refused.stdout.lower(), refused.stdout + refused.stderr
            assert len(ep.user_endpoints()) == 2  # bob's still runs
        finally:
            ep.close()
