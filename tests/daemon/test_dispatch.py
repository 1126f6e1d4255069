"""One path from a task to its user endpoint for every endpoint: a personal endpoint's task is
routed to its one UEP and then queued, started, sent and answered by the same code as a
multi-user endpoint's (driven here through the fake OS; the real tests prove both for real)."""

from __future__ import annotations

import asyncio
import os

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


def test_a_personal_endpoints_task_waits_for_its_one_uep_then_runs_there(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "home"))
    remove = raise_on_refused_transitions()
    config = EndpointConfig(name="ep", endpoint_id="e-1", broker_url="amqp://ep:pw@127.0.0.1/gce",
                            engine={"type": "ThreadPoolEngine"})
    spool, fake, answers = Spool(tmp_path / "spool"), FakeOs(), []
    counts = {"violations": 0}
    d = Dispatcher(config, Router(endpoint_paths("ep"), config), spool, asyncio.Event(),
                   lambda rh, body: answers.append((rh, body)), counts, os_=fake)
    th = TaskHeaders("t-1", "alice", "gce.results.alice.1", "f" * 64)

    async def main():
        spool.add_task({"task_id": "t-1", "task": th.to_dict()}, b"payload")
        d.dispatch("t-1")
        assert d.unrouted == ["t-1"]  # no UEP yet: it waits for the endpoint to be ready
        uep = d.personal_uep()
        d.route_unrouted()
        assert uep.queued == ["t-1"]
        await settle(lambda: uep.state is UepState.STARTING)  # a stopped UEP is started for it
        proc = fake.processes[0]
        proc.say(frames.READY, {"python": "3.11.2"})
        await settle(lambda: uep.in_flight)
        heard = []
        await settle(lambda: heard.extend(proc.heard()) or heard)
        assert heard == [(frames.TASK, {"task": th.to_dict()})]
        proc.say(frames.RESULT, {"task_id": "t-1", "status": "success"}, b"42")
        await settle(lambda: answers)
        [(rh, body)] = answers
        assert (rh.task_id, rh.endpoint_id, rh.status, body) == ("t-1", "e-1", "success", b"42")
        assert not uep.in_flight and counts["violations"] == 0
        proc.exit(0)
        await uep.stop()

    try:
        asyncio.run(main())
    finally:
        spool.close()
        remove()


def test_events_tracebacks_and_a_cancelled_block_pass_between_manager_and_uep(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "home"))
    remove = raise_on_refused_transitions()
    config = EndpointConfig(name="ep", endpoint_id="e-1", broker_url="amqp://ep:pw@127.0.0.1/gce",
                            engine={"type": "ThreadPoolEngine"})
    spool, fake = Spool(tmp_path / "spool"), FakeOs()
    counts = {"violations": 0}

    def answer(rh, body):  # as the manager does once the result is spooled
        d.events.finished(rh.task_id, rh.status, rh.error_code, rh.error_message)

    d = Dispatcher(config, Router(endpoint_paths("ep"), config), spool, asyncio.Event(), answer, counts, os_=fake)
    th = TaskHeaders("t-1", "alice", "gce.results.alice.1", "f" * 64, function_name="square")

    async def main():
        uep = d.personal_uep()
        assert d.owner_of("default") == os.geteuid() and d.owner_of("bob/1") is None
        spool.add_task({"task_id": "t-1", "task": th.to_dict()}, b"payload")
        d.dispatch("t-1")
        await settle(lambda: uep.state is UepState.STARTING)
        proc = fake.processes[0]
        proc.say(frames.READY, {"python": "3.11.2"})
        await settle(lambda: uep.in_flight)
        [sent] = d.events.since(0)[0]
        assert (sent.event, sent.function_name, sent.submitter, sent.uep) == ("dispatched", "square", "alice", "default")
        proc.say(frames.RESULT, {"task_id": "t-1", "status": "failed", "error_code": "TASK_EXCEPTION",
                                 "error_message": "ValueError: no", "traceback": "Traceback (most recent call last):"})
        await settle(lambda: d.events.detail("t-1")[1].event.event == "failed")
        assert d.events.detail("t-1")[1].traceback == "Traceback (most recent call last):"
        assert d.cancel_block("default", "0") and not d.cancel_block("bob/1", "0")
        heard = []
        await settle(lambda: heard.extend(proc.heard()) or (frames.CANCEL_BLOCK, {"block_id": "0"}) in heard)
        assert counts["violations"] == 0
        assert d.stop_uep("default") and not d.stop_uep("bob/1")
        proc.exit(0)
        await uep.stop()

    try:
        asyncio.run(main())
    finally:
        spool.close()
        remove()


def test_a_traceback_that_is_not_text_is_a_protocol_violation(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "home"))
    remove = raise_on_refused_transitions()
    config = EndpointConfig(name="ep", endpoint_id="e-1", broker_url="amqp://ep:pw@127.0.0.1/gce",
                            engine={"type": "ThreadPoolEngine"})
    spool, fake, answers = Spool(tmp_path / "spool"), FakeOs(), []
    counts = {"violations": 0}
    d = Dispatcher(config, Router(endpoint_paths("ep"), config), spool, asyncio.Event(),
                   lambda rh, body: answers.append(rh), counts, os_=fake)
    th = TaskHeaders("t-1", "alice", "gce.results.alice.1", "f" * 64)

    async def main():
        uep = d.personal_uep()
        spool.add_task({"task_id": "t-1", "task": th.to_dict()}, b"payload")
        d.dispatch("t-1")
        await settle(lambda: uep.state is UepState.STARTING)
        proc = fake.processes[0]
        proc.say(frames.READY, {"python": "3.11.2"})
        await settle(lambda: uep.in_flight)
        proc.say(frames.RESULT, {"task_id": "t-1", "status": "failed", "traceback": {"frames": []}})
        await settle(lambda: counts["violations"])
        proc.exit(0)
        await uep.stop()

    try:
        asyncio.run(main())
    finally:
        spool.close()
        remove()
