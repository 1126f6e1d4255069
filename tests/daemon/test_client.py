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
from gce.daemon.control import Commands, ControlCode, Reply, Request
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
