"""What a manager running as root writes, only root reads: logs, rotated logs, its stderr, its
state file and its user endpoints' stderr files, whatever root's umask. A multi-user endpoint's
directory is 0711 (its users' endpoints must reach the templates in it), so any of those made
0644 there could be read by every local user who knows its name."""

from __future__ import annotations

import os
import stat

import pytest


pytestmark = pytest.mark.broker


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # root's usual umask, which the detached manager inherits
    try:
        yield
    finally:
        os.umask(old)


def test_a_managers_files_are_private_whatever_its_umask(make_endpoint, umask_022):
    ep = make_endpoint(engine="thread")
    ep.paths.config_dir.chmod(0o711)
    ep.start()
    with ep.executor() as ex:
        assert ex.submit(pow, 2, 10).result(timeout=60) == 1024
    ep.stop()
    d = ep.paths.state_dir
    # the user endpoint's stderr goes into its log (default.log), opened by the manager
    written = [d / "endpoint.log", d / "endpoint.log.stderr", d / "manager.json", d / "uep-logs" / "default.log",
               *(d / "uep-logs").iterdir()]
    modes = {str(p.relative_to(d)): stat.S_IMODE(p.stat().st_mode) for p in written}
    assert modes == {name: 0o600 for name in modes}
