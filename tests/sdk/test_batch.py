"""Client batches: create_batch / add / batch_run / get_batch_result against the session endpoint."""

from __future__ import annotations

import time
import uuid

import pytest

from gce.sdk import Client, NoTaskQueue, SubmitRefused, UnknownFunction
from gce.transport.message import parse_task

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


def _all_done(client: Client, task_ids: list[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = client.get_batch_result(task_ids)
        if not any(info["pending"] for info in got.values()) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_a_batch_of_two_functions_runs_and_its_results_come_back_in_one_call(client, sdk_broker):
    f_triple, f_fail = client.register_function(triple), client.register_function(fail)
    batch = client.create_batch(resource_specification={"priority": 1})
    for i in range(20):
        batch.add(f_triple, args=(i,))
    batch.add(f_fail, kwargs={"x": 7})
    assert len(batch) == 21
    r = client.batch_run(sdk_broker.endpoint_id, batch)
    assert set(r) == {"request_id", "task_group_id", "endpoint_id", "tasks"}
    assert r["endpoint_id"] == sdk_broker.endpoint_id and uuid.UUID(r["task_group_id"])
    assert [len(r["tasks"][f_triple]), len(r["tasks"][f_fail])] == [20, 1]
    ids = r["tasks"][f_triple] + r["tasks"][f_fail]
    assert len(set(ids)) == 21

    got = _all_done(client, ids)
    assert set(got) == set(ids)
    assert [got[t]["result"] for t in r["tasks"][f_triple]] == [3 * i for i in range(20)]
    bad = got[r["tasks"][f_fail][0]]
    assert (bad["pending"], bad["status"]) == (False, "failed") and "bad 7" in str(bad["exception"])
    # Taken from the queue once: asking again answers from what this Client holds.
    assert client.get_batch_result(ids[:3]) == {t: got[t] for t in ids[:3]}
    assert client.get_result(ids[0]) == 0


def test_get_batch_result_says_pending_for_unknown_ids_and_leaves_others_results(client, sdk_broker):
    fid = client.register_function(triple)
    mine = client.run(5, endpoint_id=sdk_broker.endpoint_id, function_id=fid)
    nobody = str(uuid.uuid4())
    deadline = time.monotonic() + 30
    while client.get_batch_result([nobody, mine])[mine]["pending"] and time.monotonic() < deadline:
        time.sleep(0.2)
    got = client.get_batch_result([nobody, mine])
    assert got[nobody] == {"task_id": nobody, "pending": True, "status": "pending"}
    assert got[mine]["result"] == 15


def test_get_batch_result_takes_only_what_it_is_asked_for(client, sdk_broker, monkeypatch):
    fid = client.register_function(triple)
    batch = client.create_batch()
    for i in range(30):
        batch.add(fid, (i,))
    ids = client.batch_run(sdk_broker.endpoint_id, batch)["tasks"][fid]
    asked, others = ids[::2], ids[1::2]
    got = _all_done(client, asked)
    assert {t: got[t]["result"] for t in asked} == {t: 3 * ids.index(t) for t in asked}
    with Client() as another:  # the results not asked for were left in the queue for anyone
        rest = _all_done(another, others)
    assert {t: rest[t]["result"] for t in others} == {t: 3 * ids.index(t) for t in others}


def test_a_batch_reaches_the_endpoint_as_tasks_with_the_batch_settings(client, sdk_broker, spy):
    fid = client.register_function(triple)
    batch = client.create_batch(user_endpoint_config={"k": "v"}, resource_specification={"walltime": 9})
    for i in range(300):
        batch.add(fid, [i])
    r = client.batch_run(sdk_broker.spy_endpoint_id, batch)
    assert spy.waiting() == 300  # all confirmed by the broker when batch_run returns
    seen = spy.take(300)
    heads = [parse_task(p.message_id, p.user_id, p.reply_to, p.headers) for p, _ in seen]
    assert [h.task_id for h in heads] == r["tasks"][fid]  # in order
    assert {h.reply_to for h in heads} == {client.result_queue}
    assert all(h.user_endpoint_config == {"k": "v"} and h.resource_specification == {"walltime": 9} for h in heads)


def test_a_batch_to_an_endpoint_without_queue_or_permission_fails_with_the_reason(client, sdk_broker):
    fid = client.register_function(triple)
    batch = client.create_batch()
    batch.add(fid, (1,))
    with pytest.raises(NoTaskQueue):
        client.batch_run(sdk_broker.unstarted_endpoint_id, batch)
    with pytest.raises(SubmitRefused):
        client.batch_run(sdk_broker.forbidden_endpoint_id, batch)
    client.batch_run(sdk_broker.spy_endpoint_id, batch)  # the Client still works


def test_batch_add_checks_its_arguments_and_the_function_before_anything_is_sent(client):
    batch = client.create_batch()
    with pytest.raises(UnknownFunction):
        batch.add("0" * 64, (1,))
    fid = client.register_function(triple)
    with pytest.raises(TypeError):
        batch.add(fid, args=1)
    with pytest.raises(TypeError):
        batch.add(fid, kwargs={1: 2})
    with pytest.raises(ValueError, match="no task"):
        client.batch_run(str(uuid.uuid4()), batch)


def test_an_executor_takes_globus_computes_batch_size_and_sends_a_burst_at_once(sdk_broker, gce_home):
    from gce.sdk import Executor

    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url, batch_size=16) as ex:
        assert ex.batch_size == 16
        futs = [ex.submit(pow, i, 2) for i in range(200)]
        assert [f.result(timeout=30) for f in futs] == [i * i for i in range(200)]
