"""What the SDK tests talk to: the session's private broker and one real gce endpoint.

The endpoint is a real manager + user endpoint (thread engine) started detached for the
whole module, provisioned with least-privilege accounts on a vhost of its own. Two more
endpoint ids exist on the broker's side only: ``unstarted`` (users may submit to it, but no
queue was ever declared) and ``spy`` (users may submit to it and the test administrator
reads what arrives, to look at messages exactly as the SDK sent them). ``forbidden`` is
outside every user's permission.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import pika
import pytest
import yaml

from gce.config.paths import endpoint_paths
from gce.daemon import launcher
from gce.transport import names
from tests.endpoint import environ, processes_under, wait_until


class SdkBroker(NamedTuple):
    user_url: str  # a submitter allowed to submit to endpoint_id, unstarted_endpoint_id and spy_endpoint_id
    other_user_url: str  # a second submitter with the same rights
    endpoint_id: str  # served by a real gce endpoint
    unstarted_endpoint_id: str
    spy_endpoint_id: str
    forbidden_endpoint_id: str
    vhost: str
    admin_url: str  # the broker administrator on this vhost
    admin: Callable[..., str]  # admin("list_connections", "name") runs rabbitmqctl -p VHOST, returns stdout
    endpoint_home: Path


@pytest.fixture(scope="session")
def sdk_broker(broker, tmp_path_factory) -> Iterator[SdkBroker]:
    home = tmp_path_factory.mktemp("sdk-endpoint")
    ep, ghost, spy, forbidden = (str(uuid.uuid4()) for _ in range(4))
    token = secrets.token_hex(3)
    # Dots and an @ in user names exercise the escaping in the permission regexes.
    alice, bob = f"alice.{token}@uni.edu", f"bob.{token}@uni.edu"
    ep_url, urls = broker.provision(ep, users=[alice, bob], also_allowed=[ghost, spy])
    vhost = ep_url.rsplit("/", 1)[1]
    admin_url = broker.admin_url_for(vhost)

    conn = pika.BlockingConnection(pika.URLParameters(admin_url))
    ch = conn.channel()
    spy_queue = f"spy.{spy}"
    ch.queue_declare(spy_queue, durable=False, arguments={"x-expires": 3_600_000})
    ch.queue_bind(spy_queue, names.TASKS_EXCHANGE, routing_key=spy)
    conn.close()

    with environ(GCE_HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"):
        paths = endpoint_paths("sdk")
        paths.config_dir.mkdir(parents=True, mode=0o700)
        config = {"broker": {"url": ep_url}, "engine": {"type": "ThreadPoolEngine", "max_workers": 8},
                  "status_period": 2}
        paths.config_file.write_text(yaml.safe_dump(config))
        paths.config_file.chmod(0o600)
        paths.endpoint_json.write_text(json.dumps({"endpoint_id": ep}))
        launcher.start_detached(paths, timeout=90)

    def admin(*args: str) -> str:
        return broker.ctl("-q", args[0], "-p", vhost, *args[1:]).stdout

    try:
        yield SdkBroker(urls[alice], urls[bob], ep, ghost, spy, forbidden, vhost, admin_url, admin, home)
    finally:
        with environ(GCE_HOME=str(home)):
            launcher.stop(endpoint_paths("sdk"), timeout=30)
        wait_until(lambda: not processes_under(home), timeout=30)
        broker.ctl("delete_vhost", vhost, check=False)


class Spy:
    """Reads, as the administrator, the tasks sent to the spy endpoint (nothing answers them)."""

    def __init__(self, sdk_broker: SdkBroker) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.admin_url))
        self.ch = self.conn.channel()
        self.queue = f"spy.{sdk_broker.spy_endpoint_id}"
        self.ch.queue_purge(self.queue)

    def take(self, count: int, timeout: float = 10) -> list[tuple[Any, bytes]]:
        got = []
        for method, props, body in self.ch.consume(self.queue, inactivity_timeout=timeout):
            if method is None:
                break
            self.ch.basic_ack(method.delivery_tag)
            got.append((props, body))
            if len(got) >= count:
                break
        self.ch.cancel()
        return got

    def waiting(self) -> int:
        return self.ch.queue_declare(self.queue, passive=True).method.message_count

    def close(self) -> None:
        self.conn.close()


@pytest.fixture()
def spy(sdk_broker) -> Iterator[Spy]:
    s = Spy(sdk_broker)
    yield s
    s.close()


def assert_refused(url: str, *actions: Callable[[Any], Any]) -> None:
    """Each of ACTIONS, on a channel of its own with publisher confirms, as the account of URL:
    the broker closes the channel with 403 ACCESS_REFUSED."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for action in actions:
            ch = conn.channel()
            ch.confirm_delivery()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                action(ch)
            assert info.value.reply_code == 403, info.value.reply_text
    finally:
        conn.close()
