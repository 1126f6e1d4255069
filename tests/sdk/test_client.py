"""The Client: run by function id now, get_result later, from this or another process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from gce.sdk import Client, NoTaskQueue, SubmitRefused, TaskPending, serialize

pytestmark = pytest.mark.broker


def triple(x):
    return 3 * x


def fail(x):
    raise ValueError(f"bad {x}")


@pytest.fixture()
def client(sdk_broker, gce_home, monkeypatch):
    monkeypatch.setenv("GCE_BROKER_URL", sdk_broker.user_url)
    with Client() as c:
        yield c


def _wait_result(client: Client, task_id: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get_result(task_id)
        except TaskPending:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_register_function_persists_the_blob_under_gce_home(client, gce_home):
    fid = client.register_function(triple)
    saved = Path(gce_home, "sdk", "functions", fid)
    assert serialize.function_id_of(*serialize.unpack(saved.read_bytes())) == fid
    assert oct(saved.stat().st_mode & 0o777) == "0o600"


def test_run_then_get_result_from_a_new_process(client, sdk_broker):
    fid = client.register_function(triple)
    task_id = client.run(14, endpoint_id=sdk_broker.endpoint_id, function_id=fid)
    code = textwrap.dedent(f"""
        import time
        from gce.sdk import Client, TaskPending
        c = Client()
        for _ in range(200):
            try:
                print(c.get_result({task_id!r})); break
            except TaskPending:
                time.sleep(0.1)
        # A registered function is found by id in a new process too.
        print(c.run(1, endpoint_id={sdk_broker.endpoint_id!r}, function_id={fid!r}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ)
    assert out.returncode == 0, out.stderr
    value, second = out.stdout.split()
    assert value == "42"
    assert _wait_result(client, second) == 3


def test_get_result_before_the_result_exists_raises_task_pending(client, sdk_broker):
    fid = client.register_function(time.sleep)
    task_id = client.run(1.5, endpoint_id=sdk_broker.endpoint_id, function_id=fid)
    with pytest.raises(TaskPending) as info:
        client.get_result(task_id)
    assert info.value.task_id == task_id and info.value.code == "TASK_PENDING"
    info = client.get_task(task_id)  # the endpoint says where it is (tests/daemon/test_cancel.py)
    assert (info["task_id"], info["pending"]) == (task_id, True) and info["status"] in ("waiting", "running")
    assert info["state"] == info["status"] and info["endpoint_id"] == sdk_broker.endpoint_id
    assert _wait_result(client, task_id) is None


def test_other_results_seen_on_the_way_are_not_lost(client, sdk_broker):
    fid = client.register_function(triple)
    ids = [client.run(i, endpoint_id=sdk_broker.endpoint_id, function_id=fid) for i in range(3)]
    assert _wait_result(client, ids[2]) == 6  # passes over the results of ids[0] and ids[1]
    with Client() as fresh:  # a second reader proves they are still in the broker
        assert [_wait_result(fresh, t) for t in ids[:2]] == [0, 3]
    assert client.get_result(ids[2]) == 6  # what this client took it remembers


def test_get_task_shape_and_remote_errors(client, sdk_broker):
    ok = client.run(2, endpoint_id=sdk_broker.endpoint_id, function_id=client.register_function(triple))
    bad = client.run(2, endpoint_id=sdk_broker.endpoint_id, function_id=client.register_function(fail))
    _wait_result(client, ok)
    task = client.get_task(ok)
    assert (task["task_id"], task["pending"], task["status"], task["result"]) == (ok, False, "success", 6)
    with pytest.raises(ValueError, match="bad 2"):
        _wait_result(client, bad)
    task = client.get_task(bad)
    assert task["status"] == "failed" and isinstance(task["exception"], ValueError)


def test_source_code_runs_by_id(client, sdk_broker):
    fid = client.register_source_code("def greet(name):\n    return 'hi ' + name\n", "greet")
    assert _wait_result(client, client.run("ann", endpoint_id=sdk_broker.endpoint_id, function_id=fid)) == "hi ann"


def test_run_refusals(client, sdk_broker):
    fid = client.register_function(triple)
    with pytest.raises(NoTaskQueue, match="ever started"):
        client.run(1, endpoint_id=sdk_broker.unstarted_endpoint_id, function_id=fid)
    with pytest.raises(SubmitRefused, match="may not submit"):
        client.run(1, endpoint_id=sdk_broker.forbidden_endpoint_id, function_id=fid)
    assert _wait_result(client, client.run(1, endpoint_id=sdk_broker.endpoint_id, function_id=fid)) == 3


def test_endpoint_status(client, sdk_broker):
    status = client.get_endpoint_status(sdk_broker.endpoint_id)
    assert status["status"] == "online" and status["details"]["endpoint_id"] == sdk_broker.endpoint_id
    assert client.get_endpoint_status(sdk_broker.endpoint_id)["status"] == "online"  # left in place for others
    unknown = client.get_endpoint_status(sdk_broker.unstarted_endpoint_id)
    assert unknown["status"] == "unknown" and "ever started" in unknown["reason"]
    assert client.get_endpoint_status(uuid.uuid4())["status"] == "unknown"
