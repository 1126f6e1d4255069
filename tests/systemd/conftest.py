"""Fixtures of the systemd tests: the cached rootfs, a booted container, endpoints inside it.

Every container booted here is powered off (or killed) and its rootfs copy removed at
teardown, whatever the tests did.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

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


def _ids(machine: Machine, user: str) -> tuple[int, int]:
    for line in (machine.root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise KeyError(user)


@pytest.fixture(scope="module")
def inside_endpoint(machine: Machine, broker):  # type: ignore[no-untyped-def]
    """configure(name, user=None): write a thread-engine endpoint's files into the container,
    /etc/gce/NAME for root or ~USER/.gce/NAME for USER, as `gce configure` would."""

    def configure(name: str, user: str | None = None) -> InsideEndpoint:
        endpoint_id = str(uuid.uuid4())
        endpoint_url, users = broker.provision(endpoint_id, users=["alice"])
        if user is None:
            config_dir, state_dir = machine.root / "etc/gce" / name, machine.root / "var/lib/gce" / name
        else:
            config_dir = state_dir = machine.root / "home" / user / ".gce" / name
        for d in (config_dir, state_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = {"broker": {"url": endpoint_url}, "engine": {"type": "ThreadPoolEngine", "max_workers": 2},
                  "status_period": 1}
        (config_dir / "config.yaml").write_text(yaml.safe_dump(config))
        (config_dir / "config.yaml").chmod(0o600)
        (state_dir / "endpoint.json").write_text(json.dumps({"endpoint_id": endpoint_id}))
        if user is not None:
            uid, gid = _ids(machine, user)
            for p in [config_dir.parent, *config_dir.parent.rglob("*")]:
                os.chown(p, uid, gid)
        return InsideEndpoint(name, endpoint_id, users["alice"], config_dir / "config.yaml", user)

    return configure
