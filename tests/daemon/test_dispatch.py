"""One path from a task to its user endpoint for every endpoint: a personal endpoint's task is
routed to its one UEP and then queued, started, sent and answered by the same code as a
multi-user endpoint's (driven here through the fake OS; the real tests prove both for real)."""

from __future__ import annotations

import asyncio
import os

import pytest

from gce.config.model import EndpointConfig
from gce.config.paths import endpoint_paths
from gce.daemon.dispatch import Dispatcher
from gce.daemon.routing import Router
from gce.daemon.spool import Spool
from gce.daemon.states import UepState
from gce.transport import frames
from gce.transport.message import TaskHeaders
from tests.daemon.fake_os import FakeOs, raise_on_refused_transitions
from tests.daemon.test_children_lifecycle import settle


class Rig:
    """A personal endpoint's dispatcher on a real spool and the fake OS; ON_ANSWER takes what it
    answers (by default kept in ANSWERS)."""

    def __init__(self, tmp_path) -> None:
        config = EndpointConfig(name="ep", endpoint_id="e-1", broker_url="amqp://ep:pw@127.0.0.1/gce",
                                engine={"type": "ThreadPoolEngine"})
        self.spool, self.os, self.answers, self.counts = Spool(tmp_path / "spool"), FakeOs(), [], {"violations": 0}
        self.on_answer = lambda rh, body: self.answers.append((rh, body))
        self.d = Dispatcher(config, Router(endpoint_paths("ep"), config), self.spool, asyncio.Event(),
                            lambda rh, body: self.on_answer(rh, body), self.counts, os_=self.os)

    def add(self, th: TaskHeaders) -> None:
        self.spool.add_task({"task_id": th.task_id, "task": th.to_dict()}, b"payload")

    async def running(self, th: TaskHeaders):
        """Dispatch TH to the personal UEP, started and READY: (the UEP, its fake process)."""
        uep = self.d.personal_uep()
        self.add(th)
        self.d.dispatch(th.task_id)
        await settle(lambda: uep.state is UepState.STARTING)
        proc = self.os.processes[0]
        proc.say(frames.READY, {"python": "3.11.2"})
        await settle(lambda: uep.in_flight)
        return uep, proc


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


def test_a_personal_endpoints_task_waits_for_its_one_uep_then_runs_there(rig):
    d, th = rig.d, TaskHeaders("t-1", "alice", "gce.results.alice.1", "f" * 64)

    async def main():
        rig.add(th)
        d.dispatch("t-1")
        assert d.unrouted == ["t-1"]  # no UEP yet: it waits for the endpoint to be ready
        uep = d.personal_uep()
        d.route_unrouted()
        assert list(uep.queued) == ["t-1"]
        await settle(lambda: uep.state is UepState.STARTING)  # a stopped UEP is started for it
        proc = rig.os.processes[0]
        proc.say(frames.READY, {"python": "3.11.2"})
        await settle(lambda: uep.in_flight)
        heard = []
        await settle(lambda: heard.extend(proc.heard()) or heard)
        assert heard == [(frames.TASK, {"task": th.to_dict()})]
        proc.say(frames.RESULT, {"task_id": "t-1", "status": "success"}, b"42")
        await settle(lambda: rig.answers)
        [(rh, body)] = rig.answers
        assert (rh.task_id, rh.endpoint_id, rh.status, body) == ("t-1", "e-1", "success", b"42")
        assert not uep.in_flight and rig.counts["violations"] == 0
        proc.exit(0)
        await uep.stop()

    asyncio.run(main())


def test_events_tracebacks_and_a_cancelled_block_pass_between_manager_and_uep(rig):
    d, th = rig.d, TaskHeaders("t-1", "alice", "gce.results.alice.1", "f" * 64, function_name="square")
    # as the manager does once the result is spooled
    rig.on_answer = lambda rh, body: d.events.finished(rh.task_id, rh.status, rh.error_code, rh.error_message)

    async def main():
        assert d.owner_of("default") is None  # no UEP yet
        uep, proc = await rig.running(th)
        assert d.owner_of("default") == os.geteuid() and d.owner_of("bob/1") is None
        [sent] = d.events.since(0)[0]
        assert (sent.event, sent.function_name, sent.submitter, sent.uep) == ("dispatched", "square", "alice", "default")
        proc.say(frames.RESULT, {"task_id": "t-1", "status": "failed", "error_code": "TASK_EXCEPTION",
                                 "error_message": "ValueError: no", "traceback": "Traceback (most recent call last):"})
        await settle(lambda: d.events.detail("t-1")[1].event.event == "failed")
        assert d.events.detail("t-1")[1].traceback == "Traceback (most recent call last):"
        assert d.cancel_block("default", "0") and not d.cancel_block("bob/1", "0")
        heard = []
        await settle(lambda: heard.extend(proc.heard()) or (frames.CANCEL_BLOCK, {"block_id": "0"}) in heard)
        assert rig.counts["violations"] == 0
        assert d.stop_uep("default") and not d.stop_uep("bob/1")
        proc.exit(0)
        await uep.stop()

    asyncio.run(main())


def test_a_traceback_that_is_not_text_is_a_protocol_violation(rig):
    async def main():
        uep, proc = await rig.running(TaskHeaders("t-1", "alice", "gce.results.alice.1", "f" * 64))
        proc.say(frames.RESULT, {"task_id": "t-1", "status": "failed", "traceback": {"frames": []}})
        await settle(lambda: rig.counts["violations"])
        proc.exit(0)
        await uep.stop()

    asyncio.run(main())
