"""Client.get_endpoints: the endpoints a broker user may submit to, from the directory provisioning
writes where she alone reads it, each with the status the real endpoint reports."""

from __future__ import annotations

import time

import pika
import pytest

from gce.sdk import Client
from gce.sdk.discovery import NoDirectory
from gce.transport import directory, names
from tests.sdk.conftest import assert_refused

pytestmark = pytest.mark.broker


def _user(url: str) -> str:
    return pika.URLParameters(url).credentials.username


def test_a_user_lists_the_endpoints_she_was_given_with_their_status(sdk_broker):
    alice = _user(sdk_broker.user_url)
    directory.publish(sdk_broker.admin_url, {alice: [sdk_broker.endpoint_id, sdk_broker.unstarted_endpoint_id]})
    with Client(sdk_broker.user_url) as c:
        deadline = time.monotonic() + 20
        while True:
            found = {e["endpoint_id"]: e for e in c.get_endpoints()}
            if found[sdk_broker.endpoint_id]["status"] == "online" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert c.get_endpoints()  # the list stays on the broker for the next reader
    assert set(found) == {sdk_broker.endpoint_id, sdk_broker.unstarted_endpoint_id}
    live, ghost = found[sdk_broker.endpoint_id], found[sdk_broker.unstarted_endpoint_id]
    assert live["status"] == "online" and abs(live["last_seen"] - time.time()) < 60
    assert live["details"]["python_version"]
    assert ghost["status"] == "unknown" and ghost["last_seen"] is None and "status queue" in ghost["reason"]


def test_another_user_sees_only_her_own_list(sdk_broker):
    alice, bob = _user(sdk_broker.user_url), _user(sdk_broker.other_user_url)
    directory.publish(sdk_broker.admin_url, {alice: [sdk_broker.endpoint_id], bob: [sdk_broker.unstarted_endpoint_id]})
    with Client(sdk_broker.other_user_url) as c:
        assert [e["endpoint_id"] for e in c.get_endpoints()] == [sdk_broker.unstarted_endpoint_id]
    assert_refused(sdk_broker.other_user_url,
                   lambda ch: ch.basic_get(names.directory_queue(alice)),
                   lambda ch: ch.basic_publish(names.DIRECTORY_EXCHANGE, bob, directory.body(["x"])))


def test_an_account_without_a_directory_is_told_to_provision_again(sdk_broker):
    bob = _user(sdk_broker.other_user_url)
    admin = pika.BlockingConnection(pika.URLParameters(sdk_broker.admin_url))
    queue = names.directory_queue(bob)
    try:
        admin.channel().queue_delete(queue)  # as before provisioning wrote directories
        with Client(sdk_broker.other_user_url) as c:
            with pytest.raises(NoDirectory, match=f"gce broker provision --endpoint NAME --user {bob}"):
                c.get_endpoints()
    finally:
        ch = admin.channel()
        ch.queue_declare(queue, durable=True, arguments={"x-max-length": 1})
        ch.queue_bind(queue, names.DIRECTORY_EXCHANGE, routing_key=bob)
        admin.close()
