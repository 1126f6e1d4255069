from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.endpoint import Endpoint, processes_under, wait_until


@pytest.fixture
def make_endpoint(broker, tmp_path, monkeypatch):
    """Factory of real endpoints; at teardown every one is stopped and nothing may be left running."""
    home = tmp_path / "home"
    monkeypatch.setenv("GCE_HOME", str(home))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    made: list[Endpoint] = []

    def make(**kw) -> Endpoint:
        ep = Endpoint(broker, home, name=kw.pop("name", f"ep{len(made)}"), **kw)
        made.append(ep)
        return ep

    yield make
    for ep in made:
        ep.stop()
    wait_until(lambda: not processes_under(home), timeout=30)


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 where nothing listens."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
