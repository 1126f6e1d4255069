"""A user's code cannot answer another user's task: the manager trusts a user endpoint only for
the tasks it gave it, and a worker cannot take the user endpoint's channel at all.

Root multi-user endpoint, two real local accounts, real tasks writing real frames on the real
channel: what a hostile user would do from inside her own task.
"""

from __future__ import annotations

import os

import pytest

from gce.sdk.errors import TaskFailed
from tests.daemon.multiuser import MultiUserEndpoint, local_accounts
from tests.endpoint import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

ALICE, BOB = "gcetest-fr-a", "gcetest-fr-b"
USERS = {"alice@uni.edu": ALICE, "bob@uni.edu": BOB}
TEMPLATE = """engine:
  type: {{ engine }}
  max_workers: 2
"""
SCHEMA = {"type": "object", "additionalProperties": False, "properties": {
    "engine": {"enum": ["ThreadPoolEngine", "ProcessPoolEngine"], "default": "ThreadPoolEngine"}}}


def nap(i):
    return i


def bobs_work(seconds):
    import time

    time.sleep(seconds)
    return "bob's own result"


def send_frame(header, body=b"", raw=None):
    """From inside a task on a ThreadPoolEngine: write to the user endpoint's own channel."""
    import os
    import socket
    import sys

    from gce.transport import frames

    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    s = socket.socket(fileno=os.dup(fd))
    s.sendall(raw if raw is not None else frames.encode(frames.RESULT, header, body))
    s.detach()
    return "sent"


def forge_result_for(task_id):
    import cloudpickle

    from gce.sdk import serialize

    forged = serialize.pack([b"ok", cloudpickle.dumps("forged by alice")])
    return send_frame({"task_id": task_id, "endpoint_id": "x", "status": "success", "error_code": "",
                       "error_message": "", "timings": {}}, forged)


def take_channel_from_worker():
    """From a ProcessPoolEngine worker: copy the user endpoint's channel with pidfd_getfd(2)."""
    import ctypes
    import errno
    import os

    parent = os.getppid()
    with open(f"/proc/{parent}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    fd = int(argv[argv.index(b"--fd") + 1])
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, parent, 0)  # pidfd_open
    if pidfd < 0:
        return "pidfd_open: " + errno.errorcode[ctypes.get_errno()]
    got = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
    if got < 0:
        return errno.errorcode[ctypes.get_errno()]
    try:
        os.listdir(f"/proc/{parent}/fd")
        return f"took fd {got} and can list /proc/{parent}/fd"
    except PermissionError:
        return f"took fd {got}"


@pytest.fixture(scope="module")
def endpoint(broker):
    with local_accounts(names=(ALICE, BOB), users=USERS):
        ep = MultiUserEndpoint(broker, mapping=USERS, template=TEMPLATE, schema=SCHEMA, identities=tuple(USERS))
        try:
            yield ep
        finally:
            ep.close()


def _bob_busy(endpoint, seconds=8):
    """Bob's executor and the future of a task of his that is in flight for SECONDS."""
    bob = endpoint.executor("bob@uni.edu")
    bob.submit(nap, 0).result(timeout=60)  # his user endpoint is up
    fut = bob.submit(bobs_work, seconds)
    wait_until(lambda: any(u["in_flight"] for u in endpoint.user_endpoints() if u["key"].startswith(BOB)), 10)
    return bob, fut


def test_a_result_forged_for_another_users_task_is_refused_and_stops_the_forger(endpoint):
    alice = endpoint.executor("alice@uni.edu")
    alice.submit(nap, 0).result(timeout=60)
    bob, victim = _bob_busy(endpoint)
    forger = alice.submit(forge_result_for, victim.task_id)
    with pytest.raises(TaskFailed) as info:
        forger.result(timeout=30)
    assert info.value.code == "ENDPOINT_FAILED"
    assert "broke the channel protocol" in info.value.message and victim.task_id in info.value.message
    assert victim.result(timeout=30) == "bob's own result"  # not the forged one
    log = endpoint.paths.log_file.read_text()
    assert f"protocol violation: user endpoint {ALICE}/" in log and "which it is not running" in log
    assert alice.submit(nap, 5).result(timeout=60) == 5  # a fresh user endpoint serves her again
    alice.shutdown()
    bob.shutdown()


@pytest.mark.parametrize("frame", ["unexpected fields", "bad length", "not json"])
def test_a_malformed_frame_from_a_user_endpoint_stops_it_and_nobody_else(endpoint, frame):
    alice = endpoint.executor("alice@uni.edu")
    alice.submit(nap, 0).result(timeout=60)
    bob, busy = _bob_busy(endpoint, seconds=3)
    if frame == "unexpected fields":
        bad = alice.submit(send_frame, {"task_id": "x", "status": "success", "surprise": [1]})
    elif frame == "bad length":
        bad = alice.submit(send_frame, None, raw=b"\xff\xff\xff\xffR")
    else:
        bad = alice.submit(send_frame, None, raw=b"\x00\x00\x00\x0aR\x00\x00\x00\x05nope!")
    with pytest.raises(TaskFailed, match="protocol"):
        bad.result(timeout=30)
    assert busy.result(timeout=30) == "bob's own result"
    assert alice.submit(nap, 6).result(timeout=60) == 6
    status = endpoint.user_endpoints()
    assert all(u["state"] == "running" for u in status), status
    alice.shutdown()
    bob.shutdown()


def test_a_worker_cannot_take_its_user_endpoints_channel(endpoint):
    alice = endpoint.executor("alice@uni.edu", user_endpoint_config={"engine": "ProcessPoolEngine"})
    outcome = alice.submit(take_channel_from_worker).result(timeout=90)
    alice.shutdown()
    assert outcome == "EPERM"
