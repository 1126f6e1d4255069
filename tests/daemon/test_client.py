"""The one client commands use, against a real control socket served in a thread's event loop."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager

import pytest

from gce import __version__
from gce.config.paths import endpoint_paths
from gce.daemon import control
from gce.daemon.client import EndpointClient, ManagerError
from gce.daemon.control import ControlCode, Reply, Request
from gce.daemon.control_commands import Commands
from gce.daemon.status import EndpointStatus, TaskCounts
from gce.errors import GceError

STATUS = EndpointStatus(name="demo", state="running", pid=7, gce_version=__version__, tasks=TaskCounts(received=2))


@contextmanager
def serving(paths, handler):
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: list = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        server.append(loop.run_until_complete(control.serve(paths.control_socket, handler)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(server[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_status_is_typed_and_stop_is_asked(gce_home):
    paths = endpoint_paths("demo")
    stopped: list = []
    with serving(paths, Commands(lambda: STATUS, lambda: stopped.append(True))):
        client = EndpointClient(paths)
        assert client.status() == STATUS
        reply = client.status_reply()
        assert reply.data["tasks"]["received"] == 2 and "ok" not in reply.data
        client.stop()
    assert stopped == [True]


def test_an_error_reply_raises_with_its_code(gce_home):
    paths = endpoint_paths("demo")

    async def busy(request: Request, uid: int) -> Reply:
        return Reply.failure(ControlCode.INTERNAL, "busy")

    with serving(paths, busy), pytest.raises(ManagerError) as e:
        EndpointClient(paths).status()
    assert (e.value.code, str(e.value)) == ("INTERNAL", "endpoint 'demo' did not report its status: busy")


def test_a_command_an_older_manager_does_not_know_names_its_gce(gce_home):
    paths = endpoint_paths("demo")

    async def old(request: Request, uid: int) -> Reply:
        return Reply(False, {}, ControlCode.UNKNOWN_COMMAND, "unknown command 'stop'", 0, "0.0.9")

    with serving(paths, old), pytest.raises(GceError) as e:
        EndpointClient(paths).stop()
    assert str(e.value) == f"endpoint demo runs gce 0.0.9, this is gce {__version__}: unknown command 'stop'"
    assert e.value.hint == "gce restart demo runs it with this gce"


def test_snapshot_task_and_actions_send_their_args_and_read_typed_replies(gce_home):
    from gce.daemon.client import Snapshot, TaskDetail, TaskEvent

    paths = endpoint_paths("demo")
    seen: list = []
    event = TaskEvent(seq=5, task_id="t-1", event="failed", function_name="square", code="TASK_EXCEPTION")

    async def manager(request: Request, uid: int) -> Reply:
        seen.append((request.command, request.args))
        if request.command == "snapshot":
            return Reply.success(Snapshot(STATUS, (event,), cursor=5, dropped=1).to_dict())
        if request.command == "task":
            return Reply.success(TaskDetail(event, "it failed", "Traceback ...").to_dict())
        return Reply.success()

    with serving(paths, manager):
        client = EndpointClient(paths)
        assert client.snapshot(since=4) == Snapshot(STATUS, (event,), cursor=5, dropped=1)
        assert client.task("t-1") == TaskDetail(event, "it failed", "Traceback ...")
        client.stop_uep("alice/3f2a")
        client.cancel_block("alice/3f2a", "0")
    assert seen == [("snapshot", {"since": 4}), ("task", {"task_id": "t-1"}), ("stop_uep", {"key": "alice/3f2a"}),
                    ("cancel_block", {"uep": "alice/3f2a", "block_id": "0"})]


def test_a_refused_action_raises_permission_denied(gce_home):
    paths = endpoint_paths("demo")

    async def refuse(request: Request, uid: int) -> Reply:
        return Reply.failure(ControlCode.PERMISSION_DENIED, "permission denied: not your user endpoint")

    with serving(paths, refuse), pytest.raises(GceError) as e:
        EndpointClient(paths).stop_uep("bob/1")
    assert e.value.exit_code == 77 and "not your user endpoint" in str(e.value)


def test_a_busy_manager_is_a_temporary_failure_to_try_again(gce_home):
    """BUSY (the user's other connections hold the socket) exits 75, with a hint to try again."""
    from gce.errors import TemporaryFailure

    async def busy(request: Request, uid: int) -> Reply:
        return Reply.failure(ControlCode.BUSY, "the endpoint is already answering 4 requests of this user")

    paths = endpoint_paths("demo")
    with serving(paths, busy):
        with pytest.raises(TemporaryFailure) as e:
            EndpointClient(paths).status()
    assert e.value.exit_code == 75 and "4 requests" in str(e.value) and "try again" in e.value.hint
