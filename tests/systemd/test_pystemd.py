"""enable-on-boot / disable-on-boot driving systemd over D-Bus with pystemd (the gce[systemd]
extra) instead of systemctl: systemctl is off PATH, so only D-Bus can have done the work."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from tests.systemd.container import PystemdUnavailable, ensure_pystemd_wheels

pytestmark = [pytest.mark.systemd, pytest.mark.broker, pytest.mark.slow]

GCE = str(Path(sys.executable).parent / "gce")
NO_SYSTEMCTL = "PATH=/nonexistent"


def cube(x):
    return x ** 3


@pytest.fixture(scope="module")
def pystemd_path(machine) -> dict[str, str]:
    """PYTHONPATH of a pystemd installed in the container only (the venv under test has none)."""
    try:
        wheels = ensure_pystemd_wheels()
    except PystemdUnavailable as e:
        pytest.skip(str(e))
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(machine.root / "opt/pystemd")
    return {"PYTHONPATH": "/opt/pystemd"}


def test_enable_and_disable_on_boot_through_pystemd(machine, inside_endpoint, linger_user, pystemd_path):
    for ep in [inside_endpoint("ep-dbus"), inside_endpoint("ep-dbus-user", user=linger_user)]:
        done = machine.run(f"{NO_SYSTEMCTL} {GCE} enable-on-boot {ep.name}", user=ep.user, env=pystemd_path)
        assert done.stdout.startswith(f"endpoint {ep.name} runs as {ep.unit} and starts at boot\n"
                                      "status: 0 tasks received"), done.stdout + done.stderr
        assert machine.wait_active(ep.unit, user=ep.user)["NRestarts"] == "0"
        with ep.executor() as ex:
            assert ex.submit(cube, 3).result(timeout=60) == 27

        gone = machine.run(f"{NO_SYSTEMCTL} {GCE} disable-on-boot {ep.name}", user=ep.user, env=pystemd_path)
        assert gone.stdout.startswith(f"endpoint {ep.name} is stopped and no longer starts at boot\n")
        state = machine.show(ep.unit, "ActiveState", "LoadState", user=ep.user)
        assert state == {"ActiveState": "inactive", "LoadState": "not-found"}
    assert machine.run(f"find /etc/systemd /home/{linger_user}/.config/systemd -name '*gce*'").stdout == ""
