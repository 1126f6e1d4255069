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
from gce.daemon.control import Commands, ControlCode, ControlError, Reply, Request
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
