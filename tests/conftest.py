"""Fixtures shared by every test: a private RabbitMQ broker for the session, a private GCE_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.broker import BrokerMissing, PrivateBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    """A private RabbitMQ for the whole session (started on first use), amqps too (tls_port)."""
    b = PrivateBroker(tmp_path_factory.mktemp("rabbitmq"), tls=True)
    try:
        try:
            b.start()
        except BrokerMissing as e:
            pytest.fail(str(e), pytrace=False)
        yield b
    finally:
        b.shutdown()


@pytest.fixture()
def gce_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private GCE_HOME so tests never read or write the real ~/.gce or /etc/gce."""
    home = tmp_path / "gce-home"
    home.mkdir()
    monkeypatch.setenv("GCE_HOME", str(home))
    monkeypatch.delenv("GCE_BROKER_URL", raising=False)
    return home


def pytest_collection_finish(session: pytest.Session) -> None:
    """Send the test modules' functions by value, as a user's script's are: the endpoint's
    workers run from / and cannot import ``tests``."""
    import sys

    import cloudpickle

    import tests.rendezvous

    for name in {item.module.__name__ for item in session.items if getattr(item, "module", None)}:
        cloudpickle.register_pickle_by_value(sys.modules[name])
    cloudpickle.register_pickle_by_value(tests.rendezvous)
