"""A real endpoint for gce monitor's tests, shared by a module: started once on the session's
broker, given deterministic work (a function that succeeds, one that fails with hostile text, one
that sleeps), stopped at the end with nothing left running."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.endpoint import Endpoint, environ, processes_under, wait_until

HOSTILE = "[bold red]x[/] \x1b]0;pwned\x07"  # what the failing task's error says
HOSTILE_NAME = "[bold red]x[/]"  # what the failing function is called


def square(x):
    return x * x


def fails(why):
    raise ValueError(why)


fails.__name__ = HOSTILE_NAME


def sleeps(seconds):
    import time

    time.sleep(seconds)
    return seconds


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A running thread-engine endpoint that has run one task well and one that failed."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests
    home = tmp_path_factory.mktemp("monitor") / "home"
    home.mkdir()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    with environ(GCE_HOME=str(home), PATH=path):
        os.environ.pop("NO_COLOR", None)
        ep = Endpoint(broker, home, name="ep", engine="thread")
        try:
            ep.start()
            with ep.executor() as ex:
                assert ex.submit(square, 7).result(timeout=60) == 49
                with pytest.raises(Exception):
                    ex.submit(fails, HOSTILE).result(timeout=60)
            # the manager remembers a result once the broker confirmed it
            wait_until(lambda: len(ep_status(ep).get("recent_tasks") or []) >= 2, timeout=30)
            yield ep
        finally:
            ep.stop()
            wait_until(lambda: not processes_under(home), timeout=30)


def ep_status(ep: Endpoint) -> dict:
    from gce.daemon.client import EndpointClient

    return EndpointClient(ep.paths).status().to_dict()


def settle(seconds: float = 0.05) -> None:
    time.sleep(seconds)
