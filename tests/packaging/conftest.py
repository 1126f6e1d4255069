"""Fixtures of the packaging tests: gce's .deb at this tree's version and at version B (the
upgrade's), built once per content of their inputs (tests/packaging/build.py keeps them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.packaging.build import package, version_b

DEB_TOOLS = ("dpkg-buildpackage", "dh", "fakeroot", "lintian")


def _deb(version: str | None) -> Path:
    missing = [t for t in DEB_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"building the .deb needs {', '.join(missing)}: "
                    "apt-get install -y debhelper fakeroot lintian (make test does it)", pytrace=False)
    return package("deb", version)


@pytest.fixture(scope="session")
def deb() -> Path:
    """gce_<__version__>_amd64.deb of this tree."""
    return _deb(None)


@pytest.fixture(scope="session")
def deb_b() -> Path:
    """The same tree as a newer version, f"{__version__}.post1": what an upgrade installs."""
    return _deb(version_b())
