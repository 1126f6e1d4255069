"""Liveness from the live process: stale files never block, two starts leave one manager,
and a manager on another host sharing the directory is reported as such."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

import pytest

from gce.daemon import launcher, pidfile
from gce.errors import AlreadyRunning, GceError

pytestmark = pytest.mark.broker


def _write_state(ep, **fields) -> None:
    ep.paths.state_dir.mkdir(parents=True, exist_ok=True)
    ep.paths.state_file.write_text(json.dumps(fields))


def test_a_stale_state_file_never_blocks_a_start(make_endpoint):
    ep = make_endpoint(engine="thread")
    # What a SIGKILLed manager leaves behind: "running", a pid that is now someone else's.
    _write_state(ep, state="running", pid=1, host=socket.gethostname(), updated_at=time.time())
    assert pidfile.probe(ep.paths).state == "failed"
    ep.start()
    live = pidfile.probe(ep.paths)
    assert live.state == "running" and live.pid == pidfile.read_state(ep.paths)["pid"] != 1


def test_two_concurrent_starts_leave_exactly_one_manager(make_endpoint):
    ep = make_endpoint(engine="thread")
    outcomes: list = []

    def start() -> None:
        try:
            outcomes.append(ep.start())
        except GceError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    started = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, GceError)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert "already running" in str(refused[0])
    managers = [p for p in psutil.process_iter(["cmdline", "environ"])
                if "gce.daemon" in " ".join(p.info["cmdline"] or [])
                and (p.info["environ"] or {}).get("GCE_HOME") == str(ep.home)]
    assert len(managers) == 1


def test_a_manager_on_another_host_is_reported_and_not_started_twice(make_endpoint):
    ep = make_endpoint(engine="thread")
    _write_state(ep, state="running", pid=4242, host="login2.cluster", updated_at=time.time(),
                 started_at=time.time() - 60)
    live = pidfile.probe(ep.paths)
    assert (live.state, live.host, live.pid) == ("running", "login2.cluster", 4242)
    assert "on host login2.cluster" in live.reason
    with pytest.raises(AlreadyRunning, match="runs on host login2.cluster"):
        ep.start()
    with pytest.raises(AlreadyRunning, match="cannot stop endpoint 'ep0' here: it runs on host login2") as info:
        launcher.stop(ep.paths)
    assert info.value.hint == "run gce stop ep0 on login2.cluster"
    # Silent for longer than the refresh period allows: that manager is gone, start here.
    _write_state(ep, state="running", pid=4242, host="login2.cluster",
                 updated_at=time.time() - pidfile.STALE_AFTER_SECONDS - 1)
    assert pidfile.probe(ep.paths).state == "failed"
    ep.start()
    assert pidfile.probe(ep.paths).state == "running"


def test_a_running_manager_keeps_its_state_fresh_for_other_hosts(gce_home):
    from gce.config.paths import endpoint_paths

    paths = endpoint_paths("fresh")
    paths.state_dir.mkdir(parents=True)
    pidfile.write_state(paths, "running", started_at=123.0, endpoint_id="e")
    st = pidfile.read_state(paths)
    paths.state_file.write_text(json.dumps({**st, "updated_at": st["updated_at"] - 1000}))
    pidfile.refresh_state(paths)
    again = pidfile.read_state(paths)
    assert time.time() - again["updated_at"] < 5
    assert {k: again[k] for k in ("state", "pid", "started_at", "endpoint_id")} == \
        {"state": "running", "pid": st["pid"], "started_at": 123.0, "endpoint_id": "e"}
    # Only the manager that wrote it re-stamps it.
    paths.state_file.write_text(json.dumps({**again, "pid": 1, "updated_at": 5.0}))
    pidfile.refresh_state(paths)
    assert pidfile.read_state(paths)["updated_at"] == 5.0


def test_two_gce_start_commands_at_once_leave_exactly_one_manager(make_endpoint):
    """The same race between two shells: `gce start --detach` twice, started together."""
    ep = make_endpoint(engine="thread")
    gce = str(Path(sys.executable).with_name("gce"))
    procs = [subprocess.Popen([gce, "start", ep.name, "--detach"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, env={**os.environ, "NO_COLOR": "1"})
             for _ in range(2)]
    outcomes = sorted((p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs)
    (ok, out, _), (refused, _, err) = outcomes
    assert (ok, refused) == (0, 73), outcomes
    assert out.startswith(f"endpoint {ep.name} started (pid ")
    assert err.startswith(f"error: endpoint '{ep.name}' is already running"), err
    pid = pidfile.read_state(ep.paths)["pid"]
    assert f"(pid {pid}," in out
    managers = [p for p in psutil.process_iter(["cmdline", "environ"])
                if "gce.daemon" in " ".join(p.info["cmdline"] or [])
                and (p.info["environ"] or {}).get("GCE_HOME") == str(ep.home)]
    assert [p.pid for p in managers] == [pid]
