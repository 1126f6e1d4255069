"""gce enable-on-boot as installed from a package, under a real systemd (a booted container).

The container gets the layout a .deb makes, built from this checkout: a venv at /opt/gce whose
packaged.json says so, /usr/bin/gce linking to its gce, the units rendered by
``python -m gce.commands.packaged units`` into /usr/lib/systemd/{system,user} and the environment
file /etc/default/gce. (The venv reaches the checkout's code through a .pth file instead of a copy;
tests/packaging/ installs the real .deb.)

The tests of this module run in order on one container, as an admin would meet them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.systemd.conftest import USER

pytestmark = [pytest.mark.systemd, pytest.mark.broker, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED = "/usr/lib/systemd/system/gce-endpoint@.service"


def square(x):
    return x * x


@pytest.fixture(scope="module")
def installed(machine) -> str:
    """The package's layout in the container; returns the gce an admin runs."""
    site = "/opt/gce/lib/python3.11/site-packages"
    packaged = {"kind": "deb", "version": "0.0.test", "environment_file": "/etc/default/gce",
                "system_unit_dir": "/usr/lib/systemd/system", "user_unit_dir": "/usr/lib/systemd/user"}
    machine.run(
        f"/usr/bin/python3.11 -m venv --without-pip /opt/gce && "
        f"printf '%s\\n' {PROJECT} {Path(sys.prefix).resolve()}/lib/python3.11/site-packages > {site}/checkout.pth && "
        f"printf '#!/opt/gce/bin/python\\nimport sys\\nfrom gce.cli import main\\nsys.exit(main())\\n' > /opt/gce/bin/gce && "
        f"chmod 755 /opt/gce/bin/gce && ln -s /opt/gce/bin/gce /usr/bin/gce && "
        f"echo '{json.dumps(packaged)}' > /opt/gce/packaged.json && "
        f"/opt/gce/bin/python -m gce.commands.packaged units /usr/lib/systemd --environment-file /etc/default/gce && "
        f"printf '# site-wide settings of every gce endpoint\\nGCE_SITE_MARK=from-etc-default\\n' > /etc/default/gce && "
        f"systemctl daemon-reload")
    return "/usr/bin/gce"


@pytest.fixture(scope="module")
def endpoints(inside_endpoint, linger_user):
    return [inside_endpoint("ep-pkg"), inside_endpoint("ep-pkg-user", user=linger_user)]


def test_enable_on_boot_starts_the_shipped_unit_and_writes_no_unit_file(machine, installed, endpoints):
    for ep in endpoints:
        done = machine.run(f"{installed} enable-on-boot {ep.name}", user=ep.user)
        assert done.stdout.startswith(f"endpoint {ep.name} runs as {ep.unit} and starts at boot\n"), done.stdout
        assert "warning" not in done.stderr, done.stderr
        state = machine.wait_active(ep.unit, user=ep.user)
        where = machine.show(ep.unit, "FragmentPath", "UnitFileState", user=ep.user)
        assert where["UnitFileState"] == "enabled"
        # Debian 12's systemd finds it as /lib/systemd/..., the same file (/lib links to /usr/lib)
        fragment = machine.run(f"realpath {where['FragmentPath']}").stdout.strip()
        assert fragment == f"/usr/lib/systemd/{'user' if ep.user else 'system'}/gce-endpoint@.service"
        # The manager runs the package's gce and reads the package's environment file.
        environ = machine.run(f"tr '\\0' '\\n' < /proc/{state['MainPID']}/environ").stdout.split()
        assert "GCE_SITE_MARK=from-etc-default" in environ
        assert machine.run(f"readlink /proc/{state['MainPID']}/exe").stdout.strip() == "/usr/bin/python3.11"
        assert "/opt/gce/bin/python" in machine.run(f"ps -o args= -p {state['MainPID']}").stdout
        with ep.executor() as ex:
            assert ex.submit(square, 9).result(timeout=60) == 81
    written = machine.run(f"find /etc/systemd /home/{USER}/.config/systemd -name 'gce-endpoint@.service'").stdout
    assert written == ""  # only the enabling links


def test_gce_home_is_refused_for_the_packaged_system_unit(machine, installed, endpoints):
    home = {"GCE_HOME": "/srv/gce"}
    machine.run(f"{installed} configure ep-home --engine thread --max-workers 2 --no-input", env=home)
    refused = machine.run(f"{installed} enable-on-boot ep-home", env=home, check=False)
    assert refused.returncode == 64
    assert "error: cannot enable endpoint 'ep-home' with GCE_HOME=/srv/gce: the packaged unit " \
           f"{SHIPPED} runs endpoints without GCE_HOME" in " ".join(refused.stderr.split())


def test_a_unit_from_a_source_install_is_named_as_shadowing_and_left_alone(machine, installed, endpoints):
    from gce.commands.packaged import render_unit

    old = render_unit(False, f"{Path(sys.prefix).resolve()}/bin/gce", None)
    (machine.root / "etc/systemd/system/gce-endpoint@.service").write_text(old)
    done = machine.run(f"{installed} enable-on-boot ep-pkg")
    assert ("warning: /etc/systemd/system/gce-endpoint@.service (from an install of gce from source) shadows "
            f"the packaged {SHIPPED}") in " ".join(done.stderr.split())
    assert (machine.root / "etc/systemd/system/gce-endpoint@.service").read_text() == old
    (machine.root / "etc/systemd/system/gce-endpoint@.service").unlink()
    machine.run("systemctl daemon-reload")


def test_disable_on_boot_stops_and_disables_and_keeps_the_shipped_units(machine, installed, endpoints):
    for ep in endpoints:
        systemctl = "systemctl --user" if ep.user else "systemctl"
        done = machine.run(f"{installed} disable-on-boot {ep.name}", user=ep.user)
        assert done.stdout == f"endpoint {ep.name} is stopped and no longer starts at boot\n"  # no "kept"
        state = machine.run(f"{systemctl} show -p ActiveState -p UnitFileState {ep.unit}", user=ep.user).stdout
        assert state.split() == ["ActiveState=inactive", "UnitFileState=disabled"]
    assert machine.run("ls /usr/lib/systemd/system/gce-endpoint@.service "
                       "/usr/lib/systemd/user/gce-endpoint@.service").returncode == 0
    assert machine.run(f"find /etc/systemd /home/{USER}/.config/systemd -name '*gce*'").stdout == ""
