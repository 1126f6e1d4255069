"""The control socket's `resume` for real (a server in the test's loop, peers as root and as another
local user): who may resume which user endpoints whose blocks kept failing."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from gce.daemon import control
from gce.daemon.control import Request
from gce.daemon.control_commands import Commands
from gce.daemon.status import EndpointStatus, EngineStatus, UepStatus
from tests.daemon.test_control import NOBODY, _peer

BREAKER = {"state": "blocks failing", "reason": "blocks failing: block 2 exited with code 1", "failures": 3}


@pytest.fixture
def socket_dir():
    d = Path(tempfile.mkdtemp(prefix="gce-control-"))  # outside pytest's 0700 tmp root: nobody reaches it
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


class _Endpoint:
    """The manager's side: root's and nobody's user endpoints, two of them with an open breaker."""

    events = None
    owners = {"root/3f2a": 0, "nobody/9c1d": NOBODY, "nobody/77aa": NOBODY}

    def __init__(self) -> None:
        self.resumed: list[str] = []

    def owner_of(self, key):
        return self.owners.get(key)

    def resume(self, key):
        self.resumed.append(key)
        return True


def _status() -> EndpointStatus:
    failing = EngineStatus.from_dict({"breaker": BREAKER})
    return EndpointStatus(name="mu", state="running", blocks_failing=2, user_endpoints=(
        UepStatus("root/3f2a", 11, "running", engine=failing), UepStatus("nobody/9c1d", 12, "running", engine=failing),
        UepStatus("nobody/77aa", 13, "running")))


def _ask(socket_dir: Path, ep: _Endpoint, *requests: Request, uid: int | None = None) -> list[dict]:
    path = socket_dir / "control.sock"

    async def main() -> list[dict]:
        server = await control.serve(path, Commands(_status, lambda: None, ep), others=True)  # type: ignore[arg-type]
        try:
            return [await _peer(path, json.dumps(r.to_dict()), uid) for r in requests]
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_root_resumes_every_failing_user_endpoint_or_one_users(socket_dir):
    ep = _Endpoint()
    every, nobodys, none_left = _ask(socket_dir, ep, Request("resume"), Request("resume", {"user": "nobody"}),
                                     Request("resume", {"user": "root"}))
    assert every["resumed"] == [{"uep": "root/3f2a", "reason": "block 2 exited with code 1"},
                                {"uep": "nobody/9c1d", "reason": "block 2 exited with code 1"}]
    assert nobodys["resumed"] == [{"uep": "nobody/9c1d", "reason": "block 2 exited with code 1"}]
    assert none_left["resumed"] == [{"uep": "root/3f2a", "reason": "block 2 exited with code 1"}]
    assert ep.resumed == ["root/3f2a", "nobody/9c1d", "nobody/9c1d", "root/3f2a"]


def test_a_local_user_resumes_only_their_own(socket_dir):
    ep = _Endpoint()
    own, named, others, unknown = _ask(socket_dir, ep, Request("resume"), Request("resume", {"user": "nobody"}),
                                       Request("resume", {"user": "root"}),
                                       Request("resume", {"user": "gcetest-no-such-user"}), uid=NOBODY)
    assert own["resumed"] == named["resumed"] == [{"uep": "nobody/9c1d", "reason": "block 2 exited with code 1"}]
    assert others["ok"] is False and others["code"] == "PERMISSION_DENIED"
    assert others["error"] == "permission denied: the user endpoints of 'root' are not yours to resume"
    assert unknown["code"] == "NOT_FOUND" and unknown["error"] == "no local user 'gcetest-no-such-user' on this host"
    assert ep.resumed == ["nobody/9c1d", "nobody/9c1d"]


def test_nothing_to_resume_is_an_empty_list_and_a_bad_user_is_a_bad_request(socket_dir):
    ep = _Endpoint()
    ep.owners = {}  # none of them is there any more
    nothing, bad = _ask(socket_dir, ep, Request("resume"), Request("resume", {"user": 7}))
    assert nothing["ok"] is True and nothing["resumed"] == []
    assert bad["code"] == "BAD_REQUEST"
