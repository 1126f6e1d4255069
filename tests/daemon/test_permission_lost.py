"""An endpoint whose broker account may not publish results: refused at start, and when the
permission goes away later the endpoint says it is degraded (status, list, the submitter's
timeout), retries with a capped backoff instead of reconnecting in a loop, and delivers the
held results once the permission is back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from gce.daemon import control, pidfile
from gce.errors import GceError
from gce.transport import provision
from tests.endpoint import wait_until

pytestmark = pytest.mark.broker
GCE = str(Path(sys.executable).parent / "gce")


def double(i):
    return 2 * i


def _grant(ep, *, results: bool) -> None:
    """Set the endpoint account's permissions, with or without write on gce.results."""
    perms, _topics = provision.endpoint_permissions(f"ep-{ep.endpoint_id}", ep.endpoint_id)
    write = perms["write"] if results else perms["write"].replace(r"gce\.results|", "")
    assert results or write != perms["write"], write
    vhost = unquote(urlsplit(ep.endpoint_url).path.lstrip("/"))
    ep.broker.ctl("set_permissions", "-p", vhost, perms["user"], perms["configure"], write, perms["read"])


def _drop_connection(ep) -> None:
    """Close the endpoint's broker connection: RabbitMQ checks a permission once per channel and
    resource, so a permission taken away shows on the endpoint's next connection."""
    user = f"ep-{ep.endpoint_id}"
    rows = ep.broker.ctl("list_connections", "-q", "--no-table-headers", "pid", "user").stdout.splitlines()
    pids = [row.split()[0] for row in rows if row.split()[1:] == [user]]
    assert pids, rows
    for pid in pids:
        ep.broker.ctl("close_connection", pid, "permissions changed")


def _status(ep) -> dict:
    return control.request(ep.paths, "status")


def test_start_fails_naming_the_exchange_when_results_cannot_be_published(make_endpoint):
    ep = make_endpoint(engine="thread")
    _grant(ep, results=False)
    with pytest.raises(GceError) as info:
        ep.start(timeout=60)
    assert "gce.results" in str(info.value) and "write permission" in str(info.value), str(info.value)
    assert pidfile.probe(ep.paths).state == "failed"


def test_a_permission_lost_while_running_degrades_backs_off_and_recovers(make_endpoint):
    ep = make_endpoint(engine="thread")
    ep.start(timeout=60)
    ex = ep.executor()
    try:
        assert ex.submit(double, 1).result(timeout=30) == 2
        _grant(ep, results=False)
        _drop_connection(ep)
        fut = ex.submit(double, 21)
        wait_until(lambda: _status(ep).get("state") == "degraded", timeout=20)
        st = _status(ep)
        assert st["reason"] == "cannot publish results (permission)", st
        assert st["accepting_tasks"] is False
        cli = subprocess.run([GCE, "status", ep.name], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 150 and "cannot publish results (permission)" in cli.stdout, cli
        listed = subprocess.run([GCE, "list"], capture_output=True, text=True, timeout=60)
        assert f"{ep.name}: degraded: cannot publish results (permission)" in listed.stdout + listed.stderr, listed
        # The submitter's timeout names the cause, read from the endpoint's public status.
        wait_until(lambda: ex._endpoint_status().get("details", {}).get("state") == "degraded", timeout=20)
        with pytest.raises(TimeoutError) as info:
            fut.result(timeout=0.5)
        assert f"endpoint {ep.endpoint_id} is degraded: cannot publish results (permission)" in str(info.value)
        # No reconnect loop: a handful of refusals in the log, not thousands.
        time.sleep(4)
        assert ep.log().count("ACCESS_REFUSED") <= 3, ep.log()[-3000:]
        _grant(ep, results=True)
        assert fut.result(timeout=60) == 42
        wait_until(lambda: _status(ep).get("state") == "running", timeout=20)
        assert ex.submit(double, 5).result(timeout=30) == 10
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    assert "publishing results is allowed again" in ep.log()


def test_a_result_refused_on_the_running_channel_backs_off_instead_of_reconnecting_in_a_loop(make_endpoint):
    """The link's channel has published no result yet, so the broker checks the permission at the
    first result: it closes the channel, and the link must not reconnect and re-publish at once."""
    ep = make_endpoint(engine="thread")
    ep.start(timeout=60)
    _grant(ep, results=False)
    ex = ep.executor()
    try:
        fut = ex.submit(double, 4)
        wait_until(lambda: _status(ep).get("state") == "degraded", timeout=20)
        assert _status(ep)["tasks"]["unconfirmed_results"] == 1
        time.sleep(4)
        log = ep.log()
        assert log.count("ACCESS_REFUSED") <= 3 and log.count("connected to the broker") <= 3, log[-3000:]
        _grant(ep, results=True)
        assert fut.result(timeout=60) == 8
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
