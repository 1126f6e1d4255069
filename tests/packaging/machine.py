"""A booted copy of tests/systemd's Debian 12 rootfs to install a package in, for one test module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.systemd.container import Machine, MirrorUnreachable, ensure_rootfs, missing_tools


def booted_debian(workdir: Path, name: str, what: str,
                  before_boot: Callable[[Machine], None] | None = None) -> Iterator[Machine]:
    """Yield the booted container (WHAT names the package, for the skip and failure messages);
    BEFORE_BOOT may put files into its root. The container is destroyed whatever happens."""
    if os.geteuid() != 0:
        pytest.skip(f"the {what} is installed in a container booted with systemd-nspawn: run as root")
    if missing_tools():
        pytest.fail(f"booting the container needs {', '.join(missing_tools())}: "
                    "apt-get install -y debootstrap systemd-container zstd (make test does it)", pytrace=False)
    try:
        tarball = ensure_rootfs()
    except MirrorUnreachable as e:
        pytest.skip(f"no rootfs to install the {what} in: {e}")
    m = Machine(workdir, name=name)
    try:
        m.unpack(tarball)
        if before_boot is not None:
            before_boot(m)
        m.boot()
        yield m
    finally:
        m.destroy()
