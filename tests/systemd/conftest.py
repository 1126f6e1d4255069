"""Fixtures of the systemd tests: the cached rootfs, a booted container, endpoints inside it.

Every container booted here is powered off (or killed) and its rootfs copy removed at
teardown, whatever the tests did.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.systemd.container import Machine, MirrorUnreachable, ensure_rootfs, missing_tools


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "systemd: boots a Debian container with a real systemd (root, systemd-nspawn)")


@pytest.fixture(scope="session")
def rootfs_tarball() -> Path:
    if os.geteuid() != 0:
        pytest.skip("the systemd tests boot a container with systemd-nspawn: run them as root")
    missing = missing_tools()
    if missing:
        pytest.fail(f"the systemd tests need {', '.join(missing)}: "
                    "apt-get install -y debootstrap systemd-container zstd (make test does it)", pytrace=False)
    try:
        return ensure_rootfs()
    except MirrorUnreachable as e:
        pytest.skip(f"no rootfs for the systemd tests: {e}")


@pytest.fixture(scope="module")
def machine(rootfs_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    m = Machine(tmp_path_factory.mktemp("machine"))
    try:
        m.unpack(rootfs_tarball)
        m.boot()
        yield m
    finally:
        m.destroy()


USER = "gceuser"


@pytest.fixture(scope="module")
def linger_user(machine: Machine) -> str:
    """A user of the container whose systemd user manager runs from boot (lingering)."""
    machine.run(f"useradd --create-home --shell /bin/sh {USER} && loginctl enable-linger {USER}")
    uid = machine.run(f"id -u {USER}").stdout.strip()
    deadline = time.monotonic() + 30
    while machine.run(f"test -S /run/user/{uid}/systemd/private", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the user manager of a lingering user did not start"
        time.sleep(0.1)
    return USER


@dataclass
class InsideEndpoint:
    """An endpoint configured inside the container, provisioned on the host's session broker."""

    name: str
    endpoint_id: str
    user_url: str
    config_file: Path  # as seen from the host
    user: str | None = None

    @property
    def unit(self) -> str:
        return f"gce-endpoint@{self.name}.service"

    def executor(self):  # type: ignore[no-untyped-def]
        from gce.sdk import Executor

        return Executor(endpoint_id=self.endpoint_id, broker_url=self.user_url)


@pytest.fixture(scope="module")
def inside_endpoint(machine: Machine, broker):  # type: ignore[no-untyped-def]
    """configure(name, user=None): a thread-engine endpoint configured inside the container by
    `gce configure` itself, as root (/etc/gce/NAME) or as USER (~USER/.gce/NAME), then given
    its account on the host's session broker, as `gce broker provision` does on a broker host."""
    from gce.commands.broker import set_yaml_key

    def configure(name: str, user: str | None = None, multi_user: bool = False) -> InsideEndpoint:
        gce = Path(sys.executable).parent / "gce"  # the same path inside (Machine.binds)
        kind = "--multi-user" if multi_user else "--engine thread --max-workers 2"
        machine.run(f"{gce} configure {name} {kind} --no-input", user=user)
        if user is None:
            config_dir, state_dir = machine.root / "etc/gce" / name, machine.root / "var/lib/gce" / name
        else:
            config_dir = state_dir = machine.root / "home" / user / ".gce" / name
        endpoint_id = json.loads((state_dir / "endpoint.json").read_text())["endpoint_id"]
        endpoint_url, users = broker.provision(endpoint_id, users=["alice"])
        config = config_dir / "config.yaml"
        set_yaml_key(config, ("broker", "url"), endpoint_url)  # keeps the file's owner and mode 0600
        with open(config, "a") as f:
            f.write("status_period: 1\n")  # live STATUS= figures without waiting 30 s
        return InsideEndpoint(name, endpoint_id, users["alice"], config, user)

    return configure
