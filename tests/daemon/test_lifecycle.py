"""Start, status, stop and death of a real manager: liveness from the lock, no leftovers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from gce.daemon import control, launcher, pidfile
from gce.errors import AlreadyRunning, ConfigError, Unavailable
from gce.transport.urls import redact
from tests.endpoint import processes_under, wait_until

GCE = str(Path(sys.executable).parent / "gce")

pytestmark = pytest.mark.broker


def test_start_status_stop_leaves_nothing_behind(make_endpoint):
    ep = make_endpoint(engine="htex")
    info = ep.start()
    live = pidfile.probe(ep.paths)
    assert live.state == "running" and live.pid == info["pid"]
    status = control.request(ep.paths, "status")
    assert status["broker"]["connected"] and status["user_endpoints"][0]["state"] == "running"
    assert "***@" in status["broker"]["url"]
    with pytest.raises(AlreadyRunning):
        ep.start()
    assert ep.stop() is True
    assert pidfile.probe(ep.paths).state == "stopped"
    wait_until(lambda: not processes_under(ep.home), timeout=10)
    assert ep.stop() is False  # stopping a stopped endpoint is fine and says so


def test_sigkill_of_the_manager_takes_its_user_endpoint_and_workers_down(make_endpoint):
    ep = make_endpoint(engine="htex")
    ep.start()
    wait_until(lambda: control.request(ep.paths, "status")["user_endpoints"][0]["engine"].get("workers_total"),
               timeout=30)
    assert len(processes_under(ep.home)) >= 3  # manager, UEP, interchange (+ workers)
    ep.kill_manager()
    wait_until(lambda: not processes_under(ep.home), timeout=15)
    live = pidfile.probe(ep.paths)
    assert live.state == "failed" and "exited without shutting down" in live.reason
    ep.start()  # a stale state file never blocks a start
    assert pidfile.probe(ep.paths).state == "running"


def test_an_invalid_config_is_refused_before_anything_starts(make_endpoint):
    ep = make_endpoint(engine="thread")
    ep.set(engine={"type": "ThreadPoolEngine", "max_workers": "two"})
    with pytest.raises(ConfigError) as info:
        launcher.start_detached(ep.paths)
    assert "engine.max_workers" in str(info.value) and str(ep.paths.config_file) in str(info.value)
    assert not processes_under(ep.home)


def test_an_engine_that_cannot_start_fails_the_detached_start_with_the_reason(make_endpoint):
    ep = make_endpoint(engine="htex")
    # A key parsl takes passes the config check; its value is parsl's to refuse, in the user endpoint.
    ep.set(engine={"type": "HighThroughputEngine", "available_accelerators": 2.5})
    with pytest.raises(Unavailable) as info:
        ep.start(timeout=60)
    assert "engine failed to start" in str(info.value) and "available_accelerators" in str(info.value)
    assert pidfile.probe(ep.paths).state == "failed"
    wait_until(lambda: not processes_under(ep.home), timeout=15)


def environment():
    import os

    return dict(os.environ)


def test_a_personal_endpoint_keeps_its_users_environment_but_no_secret(make_endpoint, monkeypatch):
    # What the user's batch jobs need (a site's slurm.conf, a loaded module) reaches the workers ...
    monkeypatch.setenv("SLURM_CONF", "/site/slurm/slurm.conf")
    monkeypatch.setenv("MODULEPATH", "/site/modules")
    # ... but nothing that looks like a secret, and nothing meant for the manager alone.
    secrets = {"GCE_ENDPOINT_BROKER_URL": "amqps://ep:hunter2@broker/gce", "GITHUB_TOKEN": "ghp_x",
               "DB_PASSWORD": "p", "SSH_PRIVATE_KEY": "k", "MIRROR": "https://me:pw@mirror.example/simple",
               "AWS_SECRET_ACCESS_KEY": "s"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    ep = make_endpoint(engine="thread")
    ep.start()
    with ep.executor() as ex:
        env = ex.submit(environment).result(timeout=60)
    assert env["SLURM_CONF"] == "/site/slurm/slurm.conf" and env["MODULEPATH"] == "/site/modules"
    assert not set(secrets) & set(env)
    assert not [k for k, v in env.items() if "hunter2" in v or ":pw@" in v]


def start_detached_cli(ep, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """`gce start NAME --detach ARGS` as a user runs it; (the process, seconds it took)."""
    began = time.monotonic()
    run = subprocess.run([GCE, "start", ep.name, "--detach", *args], capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    return run, time.monotonic() - began


def last_lines_shown(run: subprocess.CompletedProcess, ep) -> list[str]:
    """The lines of the log that the error shows, checked to be the log's last ten but pika's
    (which repeat the reason the error gives)."""
    lines = run.stderr.splitlines()
    start = [i for i, ln in enumerate(lines) if ln.startswith(f"last lines of {ep.paths.log_file}")
             and ln.endswith(":")][0] + 1
    shown = lines[start:-1]
    assert shown == [ln for ln in ep.log().splitlines() if not re.match(r"\S+ \S+ \S+ \S+ pika\.", ln)][-10:]
    return shown


def test_a_wrong_broker_password_fails_the_detached_start_with_the_reason_and_leaves_nothing(make_endpoint):
    ep = make_endpoint(engine="thread")
    wrong = re.sub(r":[^:@/]+@", ":not-the-password@", ep.endpoint_url)
    assert wrong != ep.endpoint_url
    ep.set(broker={"url": wrong})
    run, _ = start_detached_cli(ep)
    assert (run.returncode, run.stdout) == (69, "")
    refused = f"the broker at {redact(wrong)} refused the login of user 'ep-{ep.endpoint_id}' (wrong password?)"
    lines = run.stderr.splitlines()
    assert lines[0] == f"error: endpoint '{ep.name}' failed to start: {refused}"
    assert lines[-1] == (f"hint: check the broker URL's user and password in {ep.paths.config_file}; "
                         f"then gce start {ep.name} --detach (full log: {ep.paths.log_file})")
    shown = last_lines_shown(run, ep)
    assert any(line.endswith(f"ERROR manager[{ep_pid(shown)}] gce.daemon: start-up failed: {refused}") for line in shown)
    assert "not-the-password" not in run.stderr + ep.log()
    wait_until(lambda: not processes_under(ep.home), timeout=15)
    assert pidfile.probe(ep.paths).state == "failed"
    assert not pidfile.lock_is_held(ep.paths)


def ep_pid(lines: list[str]) -> str:
    return re.search(r" manager\[(\d+)\] ", "\n".join(lines)).group(1)


def test_an_endpoint_not_ready_within_the_timeout_is_stopped_with_all_it_started(make_endpoint):
    ep = make_endpoint(engine="thread")
    # A broker host that takes the TCP connection and then says nothing: the AMQP handshake hangs.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        ep.set(broker={"url": f"amqp://ep:pw@127.0.0.1:{silent.getsockname()[1]}/gce"})
        run, took = start_detached_cli(ep, "--timeout", "3")
    assert (run.returncode, run.stdout) == (75, "")
    lines = run.stderr.splitlines()
    assert lines[0] == (f"error: endpoint '{ep.name}' did not become ready within 3 s: it had neither connected to the "
                        "broker with its engine up, nor failed; it was stopped with all it had started")
    assert lines[-1] == f"hint: look at {ep.paths.log_file}, or retry with a larger --timeout"
    last_lines_shown(run, ep)
    log = ep.log()
    manager = int(ep_pid(log.splitlines()))
    assert "started user endpoint default" in log  # there was a child to take down too
    assert f"INFO manager[{manager}] gce.daemon: stopping" in log  # asked to stop first, not killed outright
    # Stopping in the middle of the AMQP handshake is a normal stop, not a crash of pika's.
    assert "Traceback" not in log and "ERROR" not in log and "never retrieved" not in log
    assert 3 <= took < 3 + launcher.STOP_GRACE + 10
    assert not pidfile.lock_is_held(ep.paths)
    with pytest.raises(ProcessLookupError):
        os.kill(manager, 0)
    wait_until(lambda: not processes_under(ep.home), timeout=5)
    assert pidfile.probe(ep.paths).state != "running"


def test_an_account_missing_a_permission_fails_the_detached_start_naming_it(make_endpoint, broker):
    """Connected is not enough: an endpoint account that may not read the task exchange (an
    admin's typo in its permissions, say) fails the start, saying which permission is missing."""
    from gce.transport import provision

    ep = make_endpoint(engine="thread")
    vhost = urllib.parse.unquote(ep.endpoint_url.rsplit("/", 1)[1])
    perms, _ = provision.endpoint_permissions(f"ep-{ep.endpoint_id}", ep.endpoint_id)
    broker.ctl("set_permissions", "-p", vhost, perms["user"], perms["configure"], perms["write"], "^$")
    run, _ = start_detached_cli(ep)
    assert (run.returncode, run.stdout) == (69, ""), run.stderr
    first = run.stderr.splitlines()[0]
    assert first.startswith(f"error: endpoint '{ep.name}' failed to start: could not bind queue "
                            f"'gce.ep.{ep.endpoint_id}.tasks': "), first
    assert first.endswith(f"(broker user 'ep-{ep.endpoint_id}' lacks a permission); binding needs write permission "
                          f"on 'gce.ep.{ep.endpoint_id}.tasks' and read permission on exchange 'gce.tasks'"), first
    last_lines_shown(run, ep)
    wait_until(lambda: not processes_under(ep.home), timeout=15)
    assert pidfile.probe(ep.paths).state == "failed" and not pidfile.lock_is_held(ep.paths)
