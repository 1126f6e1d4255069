"""Start, status, stop and death of a real manager: liveness from the lock, no leftovers."""

from __future__ import annotations

import pytest

from gce.daemon import control, launcher, pidfile
from gce.errors import AlreadyRunning, ConfigError, Unavailable
from tests.endpoint import processes_under, wait_until

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
    # Unknown keys pass through to parsl (as its users expect), so parsl is what refuses this one.
    ep.set(engine={"type": "HighThroughputEngine", "no_such_option": 1})
    with pytest.raises(Unavailable) as info:
        ep.start(timeout=60)
    assert "engine failed to start" in str(info.value) and "no_such_option" in str(info.value)
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
