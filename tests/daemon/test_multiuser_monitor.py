"""Who sees what on a multi-user endpoint's control socket, for real: two local accounts submit
tasks; alice's client (run as alice) sees her user endpoint and tasks and nothing of bob's, root's
sees both, and alice may stop her own user endpoint but not bob's, nor the endpoint.

Creates accounts: run under `flock /tmp/gce-mu.lock`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from gce.daemon.client import EndpointClient
from tests.daemon.multiuser import MultiUserEndpoint, local_accounts, processes_of
from tests.endpoint import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

USERS = {"alice@uni.edu": "gcetest-mon-a", "bob@uni.edu": "gcetest-mon-b"}

# What alice runs, as alice: the same client gce monitor uses.
AS_USER = textwrap.dedent("""
    import json, sys
    from gce.config.paths import endpoint_paths
    from gce.daemon.client import EndpointClient, ManagerError
    from gce.errors import GceError

    client = EndpointClient(endpoint_paths("mu"))
    out = {"snapshot": client.snapshot(0).to_dict(), "actions": {}}
    for name, act in (("stop_other", lambda: client.stop_uep(sys.argv[1])),
                      ("task_other", lambda: client.task(sys.argv[2])),
                      ("stop_endpoint", client.stop),
                      ("stop_own", lambda: client.stop_uep(sys.argv[3]))):
        try:
            act()
            out["actions"][name] = "ok"
        except ManagerError as e:  # the manager's refusal, by its code
            out["actions"][name] = e.code
        except GceError as e:  # PermissionDenied: raised by the client for every refusal
            out["actions"][name] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
""")


def square(x):
    return x * x


def _as(user, *args: str) -> tuple[str, dict]:
    proc = subprocess.run([sys.executable, "-c", AS_USER, *args], capture_output=True, text=True, timeout=60,
                          user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/",
                          env={"GCE_HOME": os.environ["GCE_HOME"], "PATH": os.environ["PATH"],
                               "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(proc.stdout)


def _mentions_uid(text: str, uid: int) -> bool:
    return re.search(rf"(?<![\d.]){uid}(?![\d.])", text) is not None


def test_alice_sees_only_her_own_and_cannot_stop_bobs_user_endpoint(broker):
    with local_accounts(tuple(USERS.values()), users=USERS) as users:
        alice, bob = users["alice@uni.edu"], users["bob@uni.edu"]
        ep = MultiUserEndpoint(broker, mapping=USERS, identities=tuple(USERS))
        try:
            with ep.executor("alice@uni.edu") as ea, ep.executor("bob@uni.edu") as eb:
                fa, fb = ea.submit(square, 3), eb.submit(square, 4)
                assert (fa.result(timeout=60), fb.result(timeout=60)) == (9, 16)
            root = EndpointClient(ep.paths)
            wait_until(lambda: sum(e.event == "success" for e in root.snapshot().events) == 2, timeout=15)
            everything = root.snapshot()
            keys = {u.key.split("/")[0]: u.key for u in everything.status.user_endpoints}
            assert set(keys) == {alice.pw_name, bob.pw_name}  # root sees both
            assert {e.task_id for e in everything.events} == {fa.task_id, fb.task_id}

            _, seen = _as(alice, keys[bob.pw_name], fb.task_id, keys[alice.pw_name])
            snap = seen["snapshot"]
            assert [u["key"] for u in snap["status"]["user_endpoints"]] == [keys[alice.pw_name]]
            assert {e["task_id"] for e in snap["events"]} == {fa.task_id}
            assert {e["event"] for e in snap["events"]} == {"received", "dispatched", "success"}
            assert all(e["function_name"] == "square" and e["local_user"] in ("", alice.pw_name)
                       for e in snap["events"])
            assert snap["status"]["tasks"]["completed"] == 2  # endpoint-wide: a count, nobody's name
            # nothing of bob's: his identity, account, uid, tasks (his key is named only in alice's request)
            reply_text = json.dumps(snap)
            for secret in ("bob@uni.edu", bob.pw_name, fb.task_id, str(ep.paths.spool_dir)):
                assert secret not in reply_text
            assert not _mentions_uid(reply_text, bob.pw_uid)
            denied = "PermissionDenied: cannot query endpoint 'mu': permission denied: "
            assert seen["actions"] == {
                "stop_other": f"{denied}user endpoint {keys[bob.pw_name]!r} belongs to another user",
                "task_other": "NOT_FOUND", "stop_endpoint": f"{denied}only root and the endpoint's owner may stop it",
                "stop_own": "ok"}
            wait_until(lambda: [u.key for u in root.status().user_endpoints] == [keys[bob.pw_name]], timeout=20)
            wait_until(lambda: not processes_of([alice.pw_name]), timeout=20)
            assert processes_of([bob.pw_name])  # bob's user endpoint runs on
        finally:
            ep.close()
            wait_until(lambda: not processes_of(list(USERS.values())), timeout=20)
