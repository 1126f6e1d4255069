"""A real manager's status, read through the client: typed, with its recent tasks."""

from __future__ import annotations

import time

import pytest

from gce import __version__
from gce.daemon.client import EndpointClient
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
