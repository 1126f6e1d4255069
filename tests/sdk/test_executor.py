"""The Executor against the session broker and a real gce endpoint (tests/sdk/conftest.py)."""

from __future__ import annotations

import logging
import platform
import threading
import time
from concurrent.futures import FIRST_COMPLETED, as_completed, wait

import pika
import pytest

import gce
from gce.sdk import (BrokerNotConfigured, BrokerUnavailable, Executor, NoTaskQueue, PayloadTooLarge,
                     RemoteExecutionError, ShellFunction, SubmitRefused, TaskFailed, UnknownFunction, serialize)
from gce.transport import names

pytestmark = pytest.mark.broker


@pytest.fixture()
def ex(sdk_broker, gce_home):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as e:
        yield e


def double(x):
    return x * 2


def waits_for(path, timeout):
    """Runs until PATH exists (at most TIMEOUT s)."""
    import os

    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


class Unrebuildable(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args
        super().__init__(f"{a}-{b}")


def test_the_globus_compute_seed_script_runs_with_only_the_import_changed(sdk_broker, gce_home):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as gce_ex:
        fut = gce_ex.submit(double, 7)
        assert fut.result(timeout=20) == 14
        assert isinstance(gce_ex, __import__("concurrent.futures").futures.Executor)


def test_as_completed_and_wait_over_100_futures(ex):
    futs = {ex.submit(pow, i, 2): i for i in range(100)}
    got = {futs[f]: f.result() for f in as_completed(futs, timeout=60)}
    assert got == {i: i * i for i in range(100)}
    done, not_done = wait([ex.submit(double, 1)], timeout=20, return_when=FIRST_COMPLETED)
    assert len(done) == 1 and not not_done


def test_map_keeps_the_order(ex):
    assert list(ex.map(double, range(20), timeout=60)) == [2 * i for i in range(20)]


def test_a_remote_exception_is_reraised_with_its_type_and_traceback(ex):
    def boom(key):
        raise KeyError(key)

    with pytest.raises(KeyError) as info:
        ex.submit(boom, "missing").result(timeout=20)
    assert info.value.args == ("missing",)
    assert "in boom" in info.value.remote_traceback
    if hasattr(info.value, "__notes__"):
        assert info.value.__notes__[0].startswith(f"Remote traceback (endpoint {ex.endpoint_id}):")


def test_an_exception_that_cannot_be_rebuilt_becomes_remote_execution_error(ex):
    def boom():
        raise Unrebuildable(1, 2)

    with pytest.raises(RemoteExecutionError) as info:
        ex.submit(boom).result(timeout=20)
    assert info.value.code == "TASK_EXCEPTION"
    assert "Unrebuildable" in str(info.value) and "in boom" in str(info.value)


def test_a_failure_outside_user_code_is_task_failed_with_its_code(ex):
    # The default result limit is 10 MiB: the function runs, its value cannot come back.
    with pytest.raises(TaskFailed) as info:
        ex.submit(bytes, 11 * 2**20).result(timeout=60)
    assert info.value.code == "RESULT_TOO_LARGE" and f"{10 * 2**20:,}" in str(info.value)
    assert ex.submit(double, 1).result(timeout=20) == 2


def test_shell_function(ex):
    result = ex.submit(ShellFunction("echo {x}; echo oops >&2; exit 3"), x=3).result(timeout=20)
    assert (result.returncode, result.stdout, result.stderr, result.cmd) == (3, "3\n", "oops\n",
                                                                              "echo 3; echo oops >&2; exit 3")


def test_registered_functions_and_source_code(ex):
    fid = ex.register_function(double)
    assert fid == serialize.function_id_of(*serialize.serialize_function(double))
    assert ex.submit_to_registered_function(fid, args=(21,)).result(timeout=20) == 42
    sid = ex.register_source_code("def add(a, b=1):\n    return a + b\n", "add")
    assert ex.submit_to_registered_function(sid, args=(1,), kwargs={"b": 5}).result(timeout=20) == 6
    with pytest.raises(UnknownFunction, match="register_function"):
        ex.submit_to_registered_function("0" * 64)


def _spied(sdk_broker, **kw) -> Executor:
    """An Executor whose tasks go to the spy endpoint: nothing answers, the test reads them."""
    return Executor(endpoint_id=sdk_broker.spy_endpoint_id, broker_url=sdk_broker.user_url, **kw)


def test_the_task_message_carries_identity_runtime_and_config(sdk_broker, spy, gce_home):
    ex = _spied(sdk_broker, user_endpoint_config={"account": "proj1"}, resource_specification={"num_nodes": 2})
    try:
        fut = ex.submit(double, 1)
        [(props, body)] = spy.take(1)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    h = props.headers
    assert props.message_id == fut.task_id
    assert props.user_id == ex.broker_user and props.reply_to == ex.result_queue
    assert props.content_type == names.TASK_CONTENT_TYPE and props.delivery_mode == 2
    assert (h["python-version"], h["gce-version"], h["serializer"]) == (platform.python_version(), gce.__version__,
                                                                        "cloudpickle")
    assert h["user-endpoint-config"] == '{"account": "proj1"}' and h["resource-specification"] == '{"num_nodes": 2}'
    assert h["function-id"] == serialize.task_function_id(body)
    assert h["function-name"] == "double"


def test_payload_size_limit(ex, sdk_broker, spy):
    overhead = len(serialize.serialize_args((b"x" * 2**20,), {})) - 2**20  # same pickle opcodes as near the limit
    limit = ex.max_payload_bytes
    spied = _spied(sdk_broker)
    try:
        with pytest.raises(PayloadTooLarge) as info:
            spied.submit(len, b"x" * (limit - overhead + 1))
        assert spied._link.wait_published(10)
        assert spy.waiting() == 0  # the refused one never left
    finally:
        spied.shutdown(wait=False, cancel_futures=True)
    assert isinstance(info.value, ValueError) and info.value.code == "PAYLOAD_TOO_LARGE"
    assert f"{limit + 1:,} bytes" in str(info.value) and f"limit of {limit:,} bytes" in str(info.value)
    # Exactly at the limit it goes through the endpoint and back.
    assert ex.submit(len, b"x" * (limit - overhead)).result(timeout=60) == limit - overhead


def test_duplicate_and_unknown_results_are_dropped_quietly(ex, sdk_broker, caplog):
    caplog.set_level(logging.DEBUG, logger="gce.sdk")
    conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.admin_url))
    ch = conn.channel()
    copies = ch.queue_declare("", exclusive=True).method.queue  # a copy of every result sent to ex
    ch.queue_bind(copies, names.RESULTS_EXCHANGE, routing_key=ex.result_queue)
    fut = ex.submit(double, 4)
    assert fut.result(timeout=20) == 8
    method, props, body = next(ch.consume(copies, inactivity_timeout=10))
    assert method is not None and props.correlation_id == fut.task_id
    ch.cancel()
    for task_id in (fut.task_id, fut.task_id, "00000000-0000-4000-8000-000000000000"):
        ch.basic_publish(names.RESULTS_EXCHANGE, ex.result_queue, body,
                         pika.BasicProperties(correlation_id=task_id, headers={**props.headers, "task-id": task_id}))
    conn.close()
    assert ex.submit(double, 5).result(timeout=20) == 10  # results arrive in order: the replays came first
    assert fut.result() == 8
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "already completed" in caplog.text and "an unknown task" in caplog.text


def test_two_executors_of_one_user_never_share_results(sdk_broker, gce_home):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as a, \
            Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as b:
        assert a.result_queue != b.result_queue
        fa = [a.submit(str, f"a{i}") for i in range(50)]
        fb = [b.submit(str, f"b{i}") for i in range(50)]
        assert [f.result(timeout=30) for f in fa] == [f"a{i}" for i in range(50)]
        assert [f.result(timeout=30) for f in fb] == [f"b{i}" for i in range(50)]


def test_refusals_by_the_broker_fail_only_the_refused_tasks(ex, sdk_broker):
    ex.endpoint_id = sdk_broker.forbidden_endpoint_id
    refused = ex.submit(double, 1)
    ex.endpoint_id = sdk_broker.unstarted_endpoint_id
    unrouted = ex.submit(double, 2)
    ex.endpoint_id = sdk_broker.endpoint_id
    fine = ex.submit(double, 3)
    with pytest.raises(SubmitRefused, match=f"{sdk_broker.forbidden_endpoint_id}.*may not submit"):
        refused.result(timeout=20)
    with pytest.raises(NoTaskQueue, match="has no task queue on this broker"):
        unrouted.result(timeout=20)
    assert fine.result(timeout=20) == 6


def test_a_forged_user_id_is_refused_by_the_broker(sdk_broker):
    conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.user_url))
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish(names.TASKS_EXCHANGE, sdk_broker.endpoint_id, b"x",
                         pika.BasicProperties(user_id="someone-else", message_id="m"))
        ch.queue_declare("gce.results.never", passive=True)  # a round trip, so the refusal arrives
    assert info.value.reply_code == 406
    conn.close()


def test_shutdown_semantics(sdk_broker, gce_home):
    ex = Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url)
    slow = [ex.submit(time.sleep, 3) for _ in range(3)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in slow)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(double, 1)
    conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.user_url))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):  # nothing pending: deleted
        conn.channel().queue_declare(ex.result_queue, passive=True)
    conn.close()


def test_the_executor_reconnects_and_loses_nothing(sdk_broker, gce_home, caplog):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        assert ex.submit(double, 1).result(timeout=20) == 2
        futs = [ex.submit(double, i) for i in range(2000)]
        conns = [line.split("\t") for line in sdk_broker.admin("list_connections", "pid", "client_properties")
                 .splitlines()]
        pid = next(c[0] for c in conns if len(c) > 1 and ex.result_queue in c[1])
        sdk_broker.admin("close_connection", pid, "test: broker restart")
        futs += [ex.submit(double, i) for i in range(2000, 2100)]
        assert [f.result(timeout=90) for f in futs] == [2 * i for i in range(2100)]
    assert "reconnecting" in caplog.text


def test_a_task_queued_while_the_link_closes_its_connection_waits_for_the_next_one(sdk_broker, gce_home):
    # CI saw this: three nacks in a row close the connection, and a nacked task's retry timer fired
    # before the channel had finished closing. Publishing on a closing channel raised, and the
    # Executor failed for good. Here the I/O thread closes its connection and drains a new task
    # in the same turn of its loop: the task must wait for the next connection and be answered.
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        assert ex.submit(double, 1).result(timeout=20) == 2
        link, futs, raced = ex._link, [], threading.Event()

        def race() -> None:
            link._close_connection("test: a new connection")
            futs.append(ex.submit(double, 21))
            link._drain()
            raced.set()

        link._conn.ioloop.add_callback_threadsafe(race)
        assert raced.wait(10)
        assert futs[0].result(timeout=60) == 42
        assert link.fatal is None
        assert ex.submit(double, 2).result(timeout=20) == 4


def test_many_submitters_from_many_threads(ex):
    results: list = []

    def work(k: int) -> None:
        results.extend(f.result(timeout=60) for f in [ex.submit(double, k * 100 + i) for i in range(100)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [2 * i for i in range(800)]


def test_a_wrong_password_fails_the_constructor_clearly(sdk_broker, gce_home):
    bad = sdk_broker.user_url.replace(":" + sdk_broker.user_url.split(":")[2].split("@")[0] + "@", ":wrong@")
    with pytest.raises(BrokerUnavailable, match="refused user .*wrong password"):
        Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=bad)


def test_no_broker_url_names_all_three_places(gce_home):
    with pytest.raises(BrokerNotConfigured, match=r"broker_url=.*GCE_BROKER_URL.*sdk\.yaml"):
        Executor(endpoint_id="5f1b5d4e-0d6f-4b8e-9f3a-2a9c6f1e7d10")


def test_a_fatal_broker_error_fails_the_pending_futures_instead_of_hanging(sdk_broker, gce_home, tmp_path):
    import re
    import secrets

    user, password = f"carol.{secrets.token_hex(3)}", secrets.token_hex(8)
    mine = rf"gce\.results\.{re.escape(user)}\.[^.]+"
    sdk_broker.admin("add_user", user, password)
    sdk_broker.admin("set_permissions", user, f"^{mine}$", rf"^(gce\.tasks|{mine})$", rf"^(gce\.results|{mine})$")
    sdk_broker.admin("set_topic_permissions", user, "gce.tasks", f"^{sdk_broker.endpoint_id}$", "^$")
    url = sdk_broker.user_url.replace(sdk_broker.user_url.split("//")[1].split("@", 1)[0], f"{user}:{password}")
    ex = Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=url)
    assert ex.submit(double, 1).result(timeout=20) == 2
    # Held until she is gone, however long deleting her takes: its result never comes.
    release = tmp_path / "release"
    slow = ex.submit(waits_for, str(release), 120)
    try:
        sdk_broker.admin("delete_user", user)  # the broker drops her connection; she can never log in again
        with pytest.raises(BrokerUnavailable, match="refused user"):
            slow.result(timeout=60)
        with pytest.raises(BrokerUnavailable):
            ex.submit(double, 2)
    finally:
        release.touch()  # the endpoint's worker is free again
    ex.shutdown(wait=False)


def test_each_submitter_is_identified_by_the_broker_and_gets_only_her_results(sdk_broker, spy, gce_home):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as alice, \
            Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.other_user_url) as bob:
        fa, fb = alice.submit(str, "for alice"), bob.submit(str, "for bob")
        assert (fa.result(timeout=20), fb.result(timeout=20)) == ("for alice", "for bob")
        assert alice.broker_user != bob.broker_user
        # The submitter an endpoint sees is the broker-checked user_id of each message.
        alice.endpoint_id = bob.endpoint_id = sdk_broker.spy_endpoint_id
        alice.submit(str, 1), bob.submit(str, 2)
        seen = {props.reply_to: props.user_id for props, _ in spy.take(2)}
        assert seen == {alice.result_queue: alice.broker_user, bob.result_queue: bob.broker_user}
        alice.shutdown(wait=False, cancel_futures=True)
        bob.shutdown(wait=False, cancel_futures=True)
