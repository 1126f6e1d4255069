"""Registered functions live on the broker: a function id works from another host (another GCE_HOME,
another process) of the same broker user, and from no other broker user."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time

import pika
import pytest

from gce.sdk import Client, UnknownFunction, serialize
from gce.sdk.registry import RegistryRefused
from gce.transport import names, provision, rabbitmqctl
from tests.sdk.conftest import assert_refused

pytestmark = pytest.mark.broker


def triple(x):
    return 3 * x


def _python(code: str, url: str, home) -> str:
    """CODE run by a fresh interpreter as another 'host': its own GCE_HOME, the broker URL of URL."""
    env = {**os.environ, "GCE_HOME": str(home), "GCE_BROKER_URL": url}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_function_registered_on_one_host_runs_from_another(sdk_broker, tmp_path):
    here, there = tmp_path / "laptop", tmp_path / "cluster"
    fid = _python("""
        from gce.sdk import Client
        def quadruple(x):
            return 4 * x
        print(Client().register_function(quadruple))
    """, sdk_broker.user_url, here)
    assert not there.exists()
    got = _python(f"""
        import json, time
        from gce.sdk import Client, TaskPending
        c = Client()
        info = c.get_function({fid!r})
        tid = c.run(5, endpoint_id={sdk_broker.endpoint_id!r}, function_id={fid!r})
        for _ in range(300):
            try:
                value = c.get_result(tid); break
            except TaskPending:
                time.sleep(0.1)
        print(json.dumps({{"value": value, "info": info}}))
    """, sdk_broker.user_url, there)
    result = json.loads(got)
    assert result["value"] == 20
    info = result["info"]
    assert (info["function_id"], info["sha256"], info["function_name"], info["kind"]) == (
        fid, fid, "quadruple", "cloudpickle")
    assert info["size"] > 0 and abs(info["registered"] - time.time()) < 120
    assert info["python_version"] == "%d.%d.%d" % sys.version_info[:3]


def test_source_code_functions_carry_their_metadata(sdk_broker, tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    source = "def greet(name):\n    return 'hi ' + name\n"
    with Client(sdk_broker.user_url) as c:
        fid = c.register_source_code(source, "greet")
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "elsewhere"))
    with Client(sdk_broker.user_url) as c:
        info = c.get_function(fid)
    kind, blob = serialize.source_function(source, "greet")
    assert (info["function_name"], info["kind"], info["size"]) == ("greet", "source", len(blob))
    assert serialize.function_id_of(kind, blob) == fid


def test_another_broker_user_can_neither_read_nor_replace_it(sdk_broker, tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    with Client(sdk_broker.user_url) as alice:
        fid = alice.register_function(triple)
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "bob"))
    with Client(sdk_broker.other_user_url) as bob:
        with pytest.raises(UnknownFunction, match=fid):
            bob.get_function(fid)
        with pytest.raises(UnknownFunction):
            bob.run(1, endpoint_id=sdk_broker.endpoint_id, function_id=fid)
    alice_user = pika.URLParameters(sdk_broker.user_url).credentials.username
    queue = names.function_queue(alice_user, fid)
    assert_refused(sdk_broker.other_user_url,
                   lambda ch: ch.basic_get(queue),
                   lambda ch: ch.basic_publish(names.FUNCTIONS_EXCHANGE, queue, b"evil"),
                   lambda ch: ch.queue_purge(queue))


def test_a_body_changed_on_the_broker_is_not_taken_for_the_function(sdk_broker, tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    with Client(sdk_broker.user_url) as c:
        fid = c.register_source_code("def one():\n    return 1\n", "one")
        user = c.broker_user
    queue = names.function_queue(user, fid)
    conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.user_url))  # she can only harm herself
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        forged = serialize.pack(list(serialize.source_function("def one():\n    return 2\n", "one")))
        ch.basic_publish(names.FUNCTIONS_EXCHANGE, queue, forged, pika.BasicProperties(user_id=user), mandatory=True)
    finally:
        conn.close()  # the queue holds one message: the forged one replaced the original
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "elsewhere"))
    with Client(sdk_broker.user_url) as c:
        with pytest.raises(UnknownFunction, match="does not match"):
            c.run(endpoint_id=sdk_broker.endpoint_id, function_id=fid)


def test_a_user_provisioned_before_the_registry_is_told_to_provision_again(sdk_broker, broker, tmp_path,
                                                                            monkeypatch, caplog):
    user, password = "carol." + os.urandom(3).hex(), os.urandom(8).hex()
    # What an account provisioned before the function registry may do: no gce.functions.
    defs = provision.definitions(sdk_broker.vhost, users=[(provision.Account(user, password),
                                                           [sdk_broker.endpoint_id])])
    mine = rf"gce\.results\.{re.escape(user)}\.[^.]{{1,128}}"
    defs["permissions"] = [{"user": user, "vhost": sdk_broker.vhost, "configure": f"^{mine}$",
                            "write": rf"^(gce\.tasks|{mine})$", "read": rf"^(gce\.results|{mine})$"}]
    defs["topic_permissions"] = [t for t in defs["topic_permissions"] if t["exchange"] != names.FUNCTIONS_EXCHANGE]
    rabbitmqctl.import_definitions(defs, rabbitmqctl=broker.rabbitmqctl, env=broker.env)
    url = provision.amqp_url(user, password, "127.0.0.1", broker.port, sdk_broker.vhost)
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    try:
        with Client(url) as c, caplog.at_level(logging.WARNING, logger="gce.sdk"):
            fid = c.register_function(triple)  # still works from this host
            assert "gce broker provision" in caplog.text and user in caplog.text
            with pytest.raises(RegistryRefused, match="gce broker provision") as info:
                c.get_function(fid)
            assert user in str(info.value)
    finally:
        broker.ctl("delete_user", user, check=False)
