"""`systemctl reload gce-endpoint@NAME` under a real systemd (a booted container): the manager
reads its configuration again in place (same MainPID, still active), a broken one is refused
with the reason in the unit's status, and the next good reload clears it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.endpoint import wait_until

pytestmark = [pytest.mark.systemd, pytest.mark.broker, pytest.mark.slow]

GCE = str(Path(sys.executable).parent / "gce")  # the same path inside the container (bind mount)


def square(x):
    return x * x


@pytest.fixture(scope="module")
def enabled(machine, inside_endpoint):
    ep = inside_endpoint("ep-reload")
    machine.run(f"{GCE} enable-on-boot {ep.name}")
    return ep


def journal(machine, ep) -> str:
    return machine.run(f"journalctl -u {ep.unit} -o cat --no-pager").stdout


def test_systemctl_reload_keeps_the_manager_running_and_rereads_its_config(machine, enabled):
    ep = enabled
    before = machine.wait_active(ep.unit)
    with open(ep.config_file, "a") as f:
        f.write("idle_timeout: 900\n")
    started = time.monotonic()
    done = machine.run(f"systemctl reload {ep.unit}", check=False)
    assert (done.returncode, done.stderr) == (0, "")
    print(f"systemctl reload: {time.monotonic() - started:.2f} s")
    wait_until(lambda: "reload: idle_timeout changed: applied" in journal(machine, ep), timeout=15)
    after = machine.wait_active(ep.unit)
    assert after["MainPID"] == before["MainPID"] and after["NRestarts"] == before["NRestarts"]
    with ep.executor() as ex:
        assert ex.submit(square, 12).result(timeout=60) == 144


def test_a_broken_config_is_refused_by_reload_and_shown_in_the_status_until_a_good_one(machine, enabled):
    ep = enabled
    before = machine.wait_active(ep.unit)
    good = ep.config_file.read_text()
    ep.config_file.write_text(good + "no_such_key: 1\n")
    assert machine.run(f"systemctl reload {ep.unit}", check=False).returncode == 0
    wait_until(lambda: machine.show(ep.unit, "StatusText")["StatusText"].startswith(
        f"reload failed: invalid configuration in /etc/gce/{ep.name}/config.yaml: (top level)"), timeout=15)
    assert "reload failed, the configuration in force is unchanged: invalid configuration" in journal(machine, ep)
    assert machine.wait_active(ep.unit)["MainPID"] == before["MainPID"]
    with ep.executor() as ex:
        assert ex.submit(square, 3).result(timeout=60) == 9
    ep.config_file.write_text(good)
    assert machine.run(f"systemctl reload {ep.unit}", check=False).returncode == 0
    wait_until(lambda: not machine.show(ep.unit, "StatusText")["StatusText"].startswith("reload failed"),
               timeout=15)
    assert machine.wait_active(ep.unit)["MainPID"] == before["MainPID"]
