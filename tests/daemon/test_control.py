"""The control socket for real: a server in the test's loop, clients as this user and as another
one; replies are typed and failures carry a code, never just words."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

from gce import __version__
from gce.config.paths import endpoint_paths
from gce.daemon import control
from gce.daemon.control import ControlCode, ControlError, Reply, Request
from gce.daemon.control_commands import Commands
from gce.daemon.status import PROTOCOL, EndpointStatus, TaskCounts
from gce.errors import NotRunning, PermissionDenied

NOBODY = 65534
# A peer without gce: what it sends and gets is the wire format itself.
PEER = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n")
print(s.makefile().read())
"""


def _status() -> EndpointStatus:
    return EndpointStatus(name="demo", state="running", pid=os.getpid(), gce_version=__version__,
                          tasks=TaskCounts(received=3))


@pytest.fixture
def socket_dir():
    # Outside pytest's 0700 tmp root, so that another user can reach the socket at all.
    d = Path(tempfile.mkdtemp(prefix="gce-control-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


async def _peer(path: Path, line: str, uid: int | None = None) -> dict:
    ids = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PEER, str(path), line,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                cwd="/", **ids)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


def _serve_then(socket_dir: Path, *lines: str, uid: int | None = None, stopped: list | None = None) -> list[dict]:
    path = socket_dir / "control.sock"

    async def main() -> list[dict]:
        server = await control.serve(path, Commands(_status, lambda: (stopped if stopped is not None else []).append(True)))
        try:
            path.chmod(0o666)  # here only SO_PEERCRED keeps another user out
            return [await _peer(path, line, uid) for line in lines]
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_status_and_stop_answer_the_owner(socket_dir):
    stopped: list = []
    status, stop = _serve_then(socket_dir, json.dumps(Request("status").to_dict()), '{"command": "stop"}',
                               stopped=stopped)
    assert status["ok"] is True and status["protocol"] == PROTOCOL
    assert EndpointStatus.from_dict(status) == _status()
    assert stop == {"ok": True, "protocol": PROTOCOL, "gce_version": status["gce_version"]} and stopped == [True]


def test_a_peer_of_another_uid_is_refused_with_a_code(socket_dir):
    [reply] = _serve_then(socket_dir, '{"command": "status"}', uid=NOBODY)
    assert reply["ok"] is False and reply["code"] == "PERMISSION_DENIED"
    assert reply["error"] == "permission denied: this endpoint belongs to another user"
    assert "tasks" not in reply and "pid" not in reply


@pytest.mark.parametrize("line, code", [
    ('{"command": "reboot"}', "UNKNOWN_COMMAND"),
    ('{"command": 7}', "BAD_REQUEST"),
    ('{"command": "status", "args": "all"}', "BAD_REQUEST"),
    ("not json", "BAD_REQUEST"),
    ('["status"]', "BAD_REQUEST"),
    ("[" * 5000, "BAD_REQUEST"),
])
def test_a_bad_request_gets_a_code(socket_dir, line, code):
    [reply] = _serve_then(socket_dir, line)
    assert reply["ok"] is False and reply["code"] == code and reply["error"]


def test_a_failing_command_is_an_internal_error_and_the_server_goes_on(socket_dir):
    path = socket_dir / "control.sock"

    async def broken(request: Request, uid: int) -> Reply:
        if request.command == "status":
            raise RuntimeError("the spool vanished")
        return Reply.success({"pong": uid})

    async def main() -> list[dict]:
        server = await control.serve(path, broken)
        try:
            return [await _peer(path, '{"command": "status"}'), await _peer(path, '{"command": "ping"}')]
        finally:
            server.close()
            await server.wait_closed()

    failed, answered = asyncio.run(main())
    assert failed["code"] == "INTERNAL" and failed["error"] == "RuntimeError: the spool vanished"
    assert answered["ok"] is True and answered["pong"] == os.geteuid()


def test_the_client_raises_permission_denied_by_code_not_words(gce_home, socket_dir):
    paths = endpoint_paths("demo")
    paths.control_socket.parent.mkdir(parents=True, exist_ok=True)
    refusal = {"ok": False, "code": "PERMISSION_DENIED", "error": "nicht erlaubt"}
    old_words = {"ok": False, "error": "permission denied: this endpoint belongs to another user"}

    def answer_once(reply: dict) -> dict:
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(str(paths.control_socket))
        srv.listen(1)
        try:
            import threading

            def serve_one() -> None:
                conn, _ = srv.accept()
                conn.makefile().readline()
                conn.sendall(json.dumps(reply).encode() + b"\n")
                conn.close()

            t = threading.Thread(target=serve_one)
            t.start()
            try:
                return control.request(paths, "status", timeout=5)
            finally:
                t.join()
        finally:
            srv.close()
            paths.control_socket.unlink()

    with pytest.raises(PermissionDenied) as e:
        answer_once(refusal)
    assert str(e.value) == "cannot query endpoint 'demo': nicht erlaubt"
    assert answer_once(old_words) == old_words  # words alone decide nothing


def test_no_manager_is_not_running(gce_home):
    with pytest.raises(NotRunning, match="endpoint 'demo' is not running"):
        control.request(endpoint_paths("demo"), "status")


def test_requests_and_replies_round_trip():
    req = Request("status", {"user": "alice"})
    assert Request.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    for reply in (Reply.success({"a": 1}), Reply.failure(ControlCode.UNKNOWN_COMMAND, "unknown command 'x'")):
        assert Reply.from_dict(json.loads(json.dumps(reply.to_dict()))) == reply
    with pytest.raises(ControlError) as e:
        Request.from_dict({"command": "status", "protocol": "1"})
    assert e.value.code is ControlCode.BAD_REQUEST


def test_a_code_from_a_newer_manager_reads_as_internal():
    reply = Reply.from_dict({"ok": False, "code": "RATE_LIMITED", "error": "slow down", "protocol": PROTOCOL + 1})
    assert reply.code is ControlCode.INTERNAL and reply.error == "slow down" and reply.protocol == PROTOCOL + 1


class _Endpoint:
    """The manager's side of the commands (control.Endpoint): two users' UEPs and task events."""

    def __init__(self) -> None:
        from gce.daemon.snapshot import TaskEvents

        self.events = TaskEvents()
        self.owners = {"gcetest-alice/3f2a": 1000, "nobody/9c1d": NOBODY}
        self.stopped: list = []
        self.cancelled: list = []
        for task_id, key, user, uid in (("t-alice", "gcetest-alice/3f2a", "gcetest-alice", 1000),
                                        ("t-nobody", "nobody/9c1d", "nobody", NOBODY)):
            self.events.received(task_id, "f", f"{user}@uni.edu")
            self.events.dispatched(task_id, key, user, uid)
            self.events.finished(task_id, "failed", "TASK_EXCEPTION", f"{user}'s error in /home/{user}/x.py")

    def owner_of(self, key):
        return self.owners.get(key)

    def stop_uep(self, key):
        self.stopped.append(key)
        return True

    def cancel_block(self, key, block_id):
        self.cancelled.append((key, block_id))
        return True


def _multi_user_status() -> EndpointStatus:
    from gce.daemon.status import RecentTask, SpoolStatus, UepStatus

    return EndpointStatus(
        name="mu", state="degraded", reason="not taking tasks: /var/lib/gce/mu/spool is full", pid=os.getpid(),
        spool=SpoolStatus("/var/lib/gce/mu/spool", "disk full", 5.0), tasks=TaskCounts(received=2, failed=2),
        user_endpoints=(UepStatus("gcetest-alice/3f2a", 11, "fatal", "cannot read /home/gcetest-alice/.bashrc"),
                        UepStatus("nobody/9c1d", 12, "running")),
        recent_tasks=(RecentTask("t-alice", "failed", "TASK_EXCEPTION", "gcetest-alice's error"),
                      RecentTask("t-nobody", "failed", "TASK_EXCEPTION", "nobody's error")))


def _serve_multi_user(socket_dir: Path, endpoint: _Endpoint, *lines: str, uid: int | None = None,
                      stopped: list | None = None) -> list[dict]:
    path = socket_dir / "control.sock"

    async def main() -> list[dict]:
        commands = Commands(_multi_user_status, lambda: (stopped if stopped is not None else []).append(True),
                            endpoint)
        server = await control.serve(path, commands, others=True)
        try:
            assert path.stat().st_mode & 0o777 == 0o666  # every local user may connect: SO_PEERCRED decides
            return [await _peer(path, line, uid) for line in lines]
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_a_local_user_of_a_multi_user_endpoint_sees_only_their_own(socket_dir):
    ep, stopped = _Endpoint(), []
    lines = [Request("status"), Request("snapshot", {"since": 0}), Request("task", {"task_id": "t-nobody"}),
             Request("task", {"task_id": "t-alice"}), Request("stop")]
    status, snap, mine, theirs, stop = _serve_multi_user(socket_dir, ep, *(json.dumps(r.to_dict()) for r in lines),
                                                         uid=NOBODY, stopped=stopped)
    assert [u["key"] for u in status["user_endpoints"]] == ["nobody/9c1d"]
    assert [t["task_id"] for t in status["recent_tasks"]] == ["t-nobody"]
    assert status["tasks"]["received"] == 2 and status["state"] == "degraded"  # counts over all users
    assert status["reason"] == "not taking tasks: the endpoint cannot write its spool"
    assert [u["key"] for u in snap["status"]["user_endpoints"]] == ["nobody/9c1d"]
    assert {e["task_id"] for e in snap["events"]} == {"t-nobody"} and snap["cursor"] == 6
    assert mine["ok"] is True and mine["traceback"] == "" and "nobody's error" in mine["error"]
    assert theirs["ok"] is False and theirs["code"] == "NOT_FOUND"
    assert stop["code"] == "PERMISSION_DENIED" and stopped == []
    for reply in (status, snap, mine, theirs, stop):  # nothing of the other user: account, uid, paths
        text = json.dumps(reply)
        assert "gcetest-alice" not in text and "1000" not in text and "/var/lib/gce" not in text


def test_root_sees_every_user_and_acts_on_any_user_endpoint(socket_dir):
    ep = _Endpoint()
    lines = [Request("snapshot", {"since": 0}), Request("task", {"task_id": "t-alice"}),
             Request("stop_uep", {"key": "gcetest-alice/3f2a"}),
             Request("cancel_block", {"uep": "nobody/9c1d", "block_id": "0"})]
    snap, task, stopped, cancelled = _serve_multi_user(socket_dir, ep, *(json.dumps(r.to_dict()) for r in lines))
    assert [u["key"] for u in snap["status"]["user_endpoints"]] == ["gcetest-alice/3f2a", "nobody/9c1d"]
    assert len(snap["events"]) == 6 and snap["status"]["spool"]["path"] == "/var/lib/gce/mu/spool"
    assert task["local_user"] == "gcetest-alice" and stopped["ok"] and cancelled["ok"]
    assert ep.stopped == ["gcetest-alice/3f2a"] and ep.cancelled == [("nobody/9c1d", "0")]


def test_a_local_user_acts_only_on_their_own_user_endpoints(socket_dir):
    ep = _Endpoint()
    lines = [Request("stop_uep", {"key": "gcetest-alice/3f2a"}),
             Request("cancel_block", {"uep": "gcetest-alice/3f2a", "block_id": "0"}),
             Request("stop_uep", {"key": "ghost/1"}), Request("stop_uep", {"key": 7}),
             Request("snapshot", {"since": -1}),
             Request("cancel_block", {"uep": "nobody/9c1d", "block_id": "0"}), Request("stop_uep", {"key": "nobody/9c1d"})]
    replies = _serve_multi_user(socket_dir, ep, *(json.dumps(r.to_dict()) for r in lines), uid=NOBODY)
    assert [r.get("code") for r in replies] == ["PERMISSION_DENIED", "PERMISSION_DENIED", "NOT_FOUND", "BAD_REQUEST",
                                                "BAD_REQUEST", None, None]
    assert ep.stopped == ["nobody/9c1d"] and ep.cancelled == [("nobody/9c1d", "0")]


HOLDER = """
import socket, sys, time
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    held.append(s)
if sys.argv[3] == "read":  # one more, whose reply is read: refused at once while the others are held
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(b'{"command": "status"}\\n')
    print(s.makefile().readline(), flush=True)
else:  # ask for a large reply on each and never read it
    for s in held:
        s.sendall(b'{"command": "status"}\\n')
    print("sent", flush=True)
time.sleep(30)
"""


def test_a_local_user_cannot_hold_the_socket_with_idle_or_unread_connections(socket_dir, monkeypatch):
    """On a multi-user endpoint every local user may connect: one who opens connections and sends
    nothing, or asks and never reads, must not tie up the root manager (its file descriptors, the
    memory of the replies): a few connections per user at a time, the rest refused at once with
    BUSY, and a reply not taken within the write timeout is dropped."""
    monkeypatch.setattr(control, "WRITE_TIMEOUT", 1.0)

    async def big(request: Request, uid: int) -> Reply:  # a reply far over the socket's buffer
        return Reply.success({"blob": "x" * 4_000_000})

    async def main() -> tuple[dict, float, dict]:
        path = socket_dir / "c.sock"
        server = await control.serve(path, big, others=True)
        ids = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        try:
            holder = await asyncio.create_subprocess_exec(
                sys.executable, "-c", HOLDER, str(path), str(control.PEER_CONNECTIONS), "read",
                stdout=asyncio.subprocess.PIPE, cwd="/", **ids)
            line = await asyncio.wait_for(holder.stdout.readline(), 10)
            holder.kill()
            await holder.wait()
            refused = json.loads(line)
            # Connections that asked and do not read: their replies go after WRITE_TIMEOUT.
            loop = asyncio.get_running_loop()
            reader = await asyncio.create_subprocess_exec(
                sys.executable, "-c", HOLDER, str(path), str(control.PEER_CONNECTIONS), "write",
                stdout=asyncio.subprocess.PIPE, cwd="/", **ids)
            assert await asyncio.wait_for(reader.stdout.readline(), 10) == b"sent\n"
            start = loop.time()
            while control.connections_of(server, NOBODY) < control.PEER_CONNECTIONS and loop.time() - start < 5:
                await asyncio.sleep(0.01)
            assert control.connections_of(server, NOBODY) == control.PEER_CONNECTIONS  # held, replies unread
            start = loop.time()
            while control.connections_of(server, NOBODY) and loop.time() - start < 10:
                await asyncio.sleep(0.05)
            held_for = loop.time() - start
            reader.kill()
            await reader.wait()
            after = await _peer(path, json.dumps({"command": "status"}), uid=NOBODY)
            return refused, held_for, after
        finally:
            server.close()
            await server.wait_closed()

    refused, held_for, after = asyncio.run(main())
    assert refused["ok"] is False and refused["code"] == "BUSY", refused
    assert 0.5 < held_for < 5, f"unread replies were held {held_for:.1f} s (WRITE_TIMEOUT is 1 s)"
    assert after["ok"] is True  # once they went, the user is answered again
