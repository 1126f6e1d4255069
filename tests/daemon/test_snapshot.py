"""A real manager's status, read through the client: typed, with its recent tasks."""

from __future__ import annotations

import os
import pwd
import time

import pytest

from gce import __version__
from gce.daemon.client import EndpointClient, ManagerError
from gce.daemon.status import PROTOCOL
from tests.endpoint import wait_until

pytestmark = pytest.mark.broker


def divide(a, b):
    return a / b


def test_a_running_manager_reports_its_user_endpoint_and_recent_tasks(make_endpoint):
    ep = make_endpoint(engine="thread")
    started = time.time()
    ep.start()
    try:
        with ep.executor() as ex:
            assert ex.submit(divide, 6, 3).result(timeout=60) == 2
            with pytest.raises(ZeroDivisionError):
                ex.submit(divide, 1, 0).result(timeout=60)
        client = EndpointClient(ep.paths)
        wait_until(lambda: len(client.status().recent_tasks) == 2, timeout=10)
        status = client.status()
        assert (status.protocol, status.gce_version, status.state) == (PROTOCOL, __version__, "running")
        assert status.accepting_tasks and status.broker.connected and "***@" in status.broker.url
        assert (status.tasks.received, status.tasks.completed, status.tasks.failed) == (2, 1, 1)
        ok, failed = status.recent_tasks
        assert ok.status == "success" and ok.code == "" and ok.finished_at >= started
        assert failed.status == "failed" and failed.message.startswith("ZeroDivisionError")
        assert "\n" not in failed.message
        [uep] = status.user_endpoints
        assert (uep.key, uep.state, uep.in_flight, uep.queued) == ("default", "running", 0, 0)
        assert uep.pid and uep.started_at >= started and uep.idle_for >= 0
        assert uep.engine.type == "ThreadPoolEngine" and uep.engine.workers_total  # as its engine last reported
    finally:
        ep.stop()


def test_a_snapshot_holds_the_task_events_since_a_cursor_and_a_failed_task_its_sentence(make_endpoint):
    ep = make_endpoint(engine="thread")
    ep.start()
    try:
        client = EndpointClient(ep.paths)
        with ep.executor() as ex:
            assert ex.submit(divide, 6, 3).result(timeout=60) == 2
            wait_until(lambda: client.snapshot().cursor == 3, timeout=10)
            first = client.snapshot()
            with pytest.raises(ZeroDivisionError):
                bad = ex.submit(divide, 1, 0)
                bad.result(timeout=60)
        wait_until(lambda: client.snapshot(first.cursor).cursor == 6, timeout=10)
        assert [(e.event, e.function_name) for e in first.events] == [
            ("received", "divide"), ("dispatched", "divide"), ("success", "divide")]
        assert first.dropped == 0 and first.status.user_endpoints[0].key == "default"
        later = client.snapshot(first.cursor)
        assert [(e.seq, e.event) for e in later.events] == [(4, "received"), (5, "dispatched"), (6, "failed")]
        failed = later.events[-1]
        assert (failed.task_id, failed.code, failed.uep, failed.local_user) == \
            (bad.task_id, "TASK_EXCEPTION", "default", pwd.getpwuid(os.geteuid()).pw_name)
        assert failed.submitter and failed.message.startswith("ZeroDivisionError") and failed.ran_for >= 0
        assert failed.queued_for is not None and failed.queued_for >= 0
        detail = client.task(bad.task_id)
        assert detail.event == failed and "ZeroDivisionError" in detail.error
        # the worker's traceback, as the user endpoint sent it in text: root unpickled nothing
        assert detail.traceback.startswith("Traceback") and "in divide" in detail.traceback
        with pytest.raises(ManagerError) as e:
            client.task("5f0e0b7c-0000-4000-8000-000000000001")
        assert e.value.code == "NOT_FOUND"
    finally:
        ep.stop()


def test_an_idle_user_endpoint_says_when_it_will_be_stopped_and_a_busy_one_does_not():
    """stops_in is what is left of the idle timeout of a multi-user endpoint's UEP without work;
    None while it has work, and for a personal endpoint's UEP (never stopped for idleness)."""
    from types import SimpleNamespace

    from gce.daemon.snapshot import uep_status
    from gce.daemon.states import UepState

    def uep(idle: float, in_flight: dict) -> SimpleNamespace:
        return SimpleNamespace(key="alice/3f2a", pid=42, state=UepState.RUNNING, reason="", python="3.11",
                               in_flight=in_flight, queued=[], started_at=1.0, engine_status={},
                               idle_for=lambda: idle)

    assert uep_status(uep(100.0, {}), idle_timeout=1800.0).stops_in == 1700.0
    assert uep_status(uep(2000.0, {}), idle_timeout=1800.0).stops_in == 0.0
    assert uep_status(uep(0.0, {"t": 1}), idle_timeout=1800.0).stops_in is None
    assert uep_status(uep(100.0, {}), idle_timeout=None).stops_in is None
    assert uep_status(uep(100.0, {}), idle_timeout=1800.0).to_dict()["stops_in"] == 1700.0
