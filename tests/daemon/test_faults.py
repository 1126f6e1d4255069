"""Faults from the issue, each checked for "every task answered exactly once, nothing lost".

Real broker, real manager and UEP processes, real parsl workers; nothing of the transport mocked.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time

import pytest

from gce.daemon import control, pidfile
from gce.errors import Unavailable
from gce.sdk.errors import TaskFailed
from tests.endpoint import RawClient, wait_until
from tests.rendezvous import wait_for

pytestmark = pytest.mark.broker


def nap(i):
    import time

    time.sleep(0.002)
    return i


def slow_nap(i):
    import time

    time.sleep(0.02)
    return i


def held_nap(i, gate):
    """slow_nap, once the file GATE exists (at most 120 s from its start)."""
    import time

    wait_for(gate, 120)
    time.sleep(0.02)
    return i


def kill_my_worker():
    import os

    os.kill(os.getpid(), 9)


def _all_answered(futs, expected, timeout=180):
    done, not_done = cf.wait(futs, timeout=timeout)
    assert not not_done, f"{len(not_done)} task(s) never answered"
    assert [f.result() for f in futs] == expected


def test_kill_9_of_the_manager_with_1000_tasks_in_flight_then_start_again(make_endpoint):
    ep = make_endpoint(engine="htex")
    ep.start()
    with ep.executor() as ex:
        futs = [ex.submit(nap, i) for i in range(1000)]
        wait_until(lambda: sum(f.done() for f in futs) >= 50, timeout=60)
        assert sum(f.done() for f in futs) < 1000, "the batch finished before the kill: nothing was in flight"
        ep.kill_manager()
        assert pidfile.probe(ep.paths).state == "failed"
        ep.start()
        _all_answered(futs, list(range(1000)))
    assert "recovered" in ep.log()


def test_rabbitmq_restart_in_the_middle_of_a_1000_task_batch(make_endpoint, broker, tmp_path):
    ep = make_endpoint(engine="thread")
    ep.start()
    gate = tmp_path / "gate"
    with ep.executor() as ex:
        # The second half waits for the gate, opened once the broker is down: the batch is still
        # running when it goes, however long stopping it takes.
        try:
            futs = [ex.submit(slow_nap, i) if i < 500 else ex.submit(held_nap, i, str(gate)) for i in range(1000)]
            wait_until(lambda: sum(f.done() for f in futs) >= 100, timeout=60)
            broker.stop()
            assert not any(f.done() for f in futs[500:]), "the batch finished before the broker went down"
        finally:
            gate.touch()  # the held tasks run on while the broker is down
        time.sleep(1)
        broker.start()
        _all_answered(futs, list(range(1000)), timeout=240)
    wait_until(lambda: control.request(ep.paths, "status")["broker"]["connected"], timeout=60)
    assert "lost the broker connection" in ep.log() or "connection lost" in ep.log()


def test_a_task_that_kills_its_worker_fails_naming_the_lost_worker_and_the_rest_succeed(make_endpoint):
    from gce.sdk import TaskFailed

    ep = make_endpoint(engine="htex")
    ep.start()
    with ep.executor() as ex:
        bad = ex.submit(kill_my_worker)
        good = [ex.submit(nap, i) for i in range(20)]
        t = time.monotonic()
        with pytest.raises(TaskFailed) as info:
            bad.result(timeout=30)
        assert time.monotonic() - t < 30
        assert info.value.code == "WORKER_LOST"
        assert "loss of worker" in str(info.value)
        _all_answered(good, list(range(20)), timeout=60)


def test_a_task_killing_its_worker_inside_a_batch_fails_alone(make_endpoint):
    """Tasks waiting for a slot travel to parsl in batches; a batch's lost worker fails only the killer."""
    from gce.sdk import TaskFailed

    ep = make_endpoint(engine="htex")  # 2 workers, so 4 parsl slots
    ep.start()
    with ep.executor() as ex:
        blockers = [ex.submit(time.sleep, 1) for _ in range(4)]
        batch = [ex.submit(nap, i) for i in range(5)] + [ex.submit(kill_my_worker)] + \
            [ex.submit(nap, i) for i in range(5, 10)]
        with pytest.raises(TaskFailed) as info:
            batch[5].result(timeout=60)
        assert info.value.code == "WORKER_LOST"
        _all_answered(blockers, [None] * 4, timeout=60)
        _all_answered(batch[:5] + batch[6:], list(range(10)), timeout=60)
    assert "sending them again one by one" in (ep.paths.uep_log_dir / "default.log").read_text()


def test_malformed_messages_are_answered_where_possible_and_good_ones_still_run(make_endpoint):
    ep = make_endpoint(engine="thread")
    ep.start()
    raw = RawClient(ep.user_url, ep.endpoint_id)
    good, expected = [], {}
    for i in range(100):
        tid, headers, body = raw.task(nap, (i,))
        kind = i % 5
        if kind == 0:
            raw.publish(os.urandom(200), tid, headers)  # garbage body
        elif kind == 1:
            raw.publish(body, tid, None)  # no headers at all
        elif kind == 2:
            raw.publish(body, tid, {**headers, "user-endpoint-config": '{"x": "' + "y" * 100_000 + '"}'})  # oversized
        elif kind == 3:
            raw.publish(body, tid, headers, user_id=None)  # no user_id: never trusted, never answered
        else:
            raw.publish(body, "not-a-uuid-" + str(i), headers)  # bad message_id
        if kind != 3:
            expected[tid if kind != 4 else "not-a-uuid-" + str(i)] = "PAYLOAD_TOO_LARGE" if kind == 2 else "BAD_MESSAGE"
        if i % 10 == 0:
            tid, headers, body = raw.task(nap, (i,))
            raw.publish(body, tid, headers)
            good.append(tid)
    results = raw.results(len(good) + len(expected))
    raw.close()
    assert all(results[t].status == "success" for t in good)
    bad = {t: r for t, r in results.items() if t not in good}
    assert len(bad) == len(expected) == 80
    assert {t: r.error_code for t, r in bad.items()} == expected
    assert all(r.error_message for r in bad.values())
    status = control.request(ep.paths, "status")
    assert status["state"] == "running" and status["tasks"]["malformed"] >= 60


def test_broker_down_at_start_detach_fails_with_the_reason(make_endpoint, free_port):
    ep = make_endpoint(engine="thread")
    ep.set(broker={"url": f"amqp://alice:pw@127.0.0.1:{free_port}/gce"})
    with pytest.raises(Unavailable) as info:
        ep.start(timeout=60)
    assert (f"cannot connect to the broker at amqp://alice:***@127.0.0.1:{free_port}/gce: connection refused"
            in str(info.value))
    assert "pw@" not in str(info.value)
    assert pidfile.probe(ep.paths).state == "failed"


def garble_my_own_result():
    from gce.transport import payload

    payload.pack = lambda parts: b"not a result payload"  # what the worker sends back
    return 1


def test_a_task_whose_outcome_cannot_be_read_is_answered_not_left_hanging(make_endpoint):
    ep = make_endpoint(engine="process")
    ep.start()
    with ep.executor() as ex:
        with pytest.raises(TaskFailed) as info:
            ex.submit(garble_my_own_result).result(timeout=60)
        assert info.value.code == "ENDPOINT_FAILED" and "outcome could not be read" in info.value.message
    assert control.request(ep.paths, "status")["user_endpoints"][0]["state"] == "running"


def test_a_broker_url_without_a_password_fails_the_start_with_a_sentence(make_endpoint, free_port):
    ep = make_endpoint(engine="thread")
    ep.set(broker={"url": f"amqp://alice@127.0.0.1:{free_port}/gce"})
    with pytest.raises(Unavailable) as info:
        ep.start(timeout=60)
    assert (f"the broker URL amqp://alice@127.0.0.1:{free_port}/gce cannot be used: it names a user but no "
            "password" in str(info.value)), str(info.value)
    assert "NoneType" not in str(info.value)


def test_broker_down_at_start_foreground_retries_with_backoff_and_says_so(make_endpoint, free_port):
    ep = make_endpoint(engine="thread")
    ep.set(broker={"url": f"amqp://alice:pw@127.0.0.1:{free_port}/gce"})
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gce"), "start", ep.name],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum("retrying in" in ln for ln in lines) < 3:
            lines.append(proc.stderr.readline())
        retries = [ln for ln in lines if "retrying in" in ln]
        assert len(retries) >= 3, "".join(lines)
        assert "connection refused" in retries[0].lower() or "cannot connect" in retries[0]
        assert "(attempt 1)" in retries[0] and "(attempt 3)" in retries[2]
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def big(n):
    return b"r" * n


def echo_len(data):
    return len(data)


def test_payloads_up_to_the_limit_work_and_over_it_fail_naming_the_limit(make_endpoint):
    from gce.sdk import PayloadTooLarge, TaskFailed

    ep = make_endpoint(engine="thread")
    ep.start()
    limit = 10 * 1024 * 1024
    with ep.executor() as ex:
        assert ex.submit(echo_len, b"a" * (limit - 1024)).result(timeout=120) == limit - 1024
        assert len(ex.submit(big, limit - 1024).result(timeout=120)) == limit - 1024
        with pytest.raises(PayloadTooLarge, match="10,485,760|10 MiB|10485760"):
            ex.submit(echo_len, b"a" * (limit + 1))
        with pytest.raises(TaskFailed) as info:
            ex.submit(big, limit + 1).result(timeout=120)
        assert info.value.code == "RESULT_TOO_LARGE" and "10,485,760 bytes" in str(info.value)
