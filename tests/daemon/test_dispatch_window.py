"""Flow control from the manager to a user endpoint: it holds at most the window its READY frame
names; the rest of a backlog stays in the spool and goes, oldest first, as results come back.
Driven through the fake OS here; tests/daemon/test_backlog.py proves it with a real endpoint."""

from __future__ import annotations

import asyncio

import pytest

from gce.daemon.dispatch import MAX_WINDOW, window_of
from gce.daemon.states import UepState
from gce.transport import frames
from gce.transport.message import TaskHeaders
from tests.daemon.fake_os import raise_on_refused_transitions
from tests.daemon.test_children_lifecycle import settle
from tests.daemon.test_dispatch import Rig


@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "home"))
    remove = raise_on_refused_transitions()
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.spool.close()
        remove()


def _task(i: int) -> TaskHeaders:
    return TaskHeaders(f"t-{i}", "alice", "gce.results.alice.1", "f" * 64)


def test_a_user_endpoint_is_sent_its_window_and_one_more_task_per_result_in_order(rig):
    d = rig.d

    async def main():
        uep = d.personal_uep()
        for i in range(100):
            rig.add(_task(i))
            d.dispatch(f"t-{i}")
        await settle(lambda: uep.state is UepState.STARTING)
        proc = rig.os.processes[0]
        proc.say(frames.READY, {"python": "3.11.2", "window": 8})
        await settle(lambda: uep.in_flight)
        heard: list = []
        await settle(lambda: heard.extend(proc.heard()) or len(heard) >= 8)
        await asyncio.sleep(0.05)
        heard.extend(proc.heard())
        assert [h["task"]["task_id"] for _, h in heard] == [f"t-{i}" for i in range(8)]
        assert (len(uep.in_flight), len(uep.queued)) == (8, 92)  # the rest waits, in the spool
        for i in range(100, 110):  # new tasks queue behind the old ones
            rig.add(_task(i))
            d.dispatch(f"t-{i}")
        assert (len(uep.in_flight), len(uep.queued)) == (8, 102)
        for i in range(3):
            proc.say(frames.RESULT, {"task_id": f"t-{i}", "status": "success"}, b"")
        await settle(lambda: len(rig.answers) == 3)
        await settle(lambda: heard.extend(proc.heard()) or len(heard) >= 11)
        assert [h["task"]["task_id"] for _, h in heard[8:]] == ["t-8", "t-9", "t-10"]
        assert (len(uep.in_flight), len(uep.queued)) == (8, 99)
        proc.exit(1)  # the tasks in flight go first to its successor, before the spooled ones
        await settle(lambda: uep.state is UepState.BACKOFF)
        assert list(uep.queued)[:9] == [f"t-{i}" for i in range(3, 11)] + ["t-11"]
        assert len(uep.queued) == 107 and rig.counts["violations"] == 0
        await uep.stop()

    asyncio.run(main())


def test_a_window_is_what_the_user_endpoint_asks_within_what_the_manager_buffers():
    assert window_of({"window": 64}) == 64
    assert window_of({"window": 10 ** 9}) == MAX_WINDOW
    assert window_of({"window": 0}) == 1
    assert window_of({}) == window_of({"window": "64"}) == window_of({"window": True}) > 1
