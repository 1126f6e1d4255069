"""Where a task is, and cancelling it, end to end: the SDK, a real broker, a real manager and its
user endpoint with one worker (a ProcessPoolEngine of max_workers 1, so a task held on a gate
blocks the ones behind it). Control messages: gce.transport.control; the manager's side:
gce.daemon.cancel; the user endpoint's: gce.uep.cancel."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from gce.sdk import Client
from gce.sdk.errors import TaskFailed
from tests.endpoint import Endpoint, processes_under, wait_until

pytestmark = pytest.mark.broker


def gated(path, value):
    """Wait until PATH exists, then return VALUE: a task that runs exactly as long as a test wants."""
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.05)
    return value


def marked(path):
    with open(path, "w") as f:
        f.write("ran")
    return "ran"


def double(x):
    return 2 * x


def nap(seconds):
    import time

    time.sleep(seconds)
    return "woke"


def spin(seconds):
    """Pure Python, so a thread running it can be interrupted between bytecodes."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))
    return "spun"


@pytest.fixture(scope="module")
def home(broker, tmp_path_factory):
    home = tmp_path_factory.mktemp("cancel") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GCE_HOME", str(home))
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        yield home


@pytest.fixture(scope="module")
def ep(broker, home):
    """One endpoint for the module, stopped after its first start made its task queue: the first test
    sees tasks queued on the broker before it starts again."""
    endpoint = Endpoint(broker, home, name="cancel", engine="process", others=("bob",))
    endpoint.set(engine={"type": "ProcessPoolEngine", "max_workers": 1})
    endpoint.start()
    endpoint.stop()
    yield endpoint
    endpoint.stop()
    wait_until(lambda: not processes_under(home), timeout=30)


@pytest.fixture(scope="module")
def alice(ep):
    with Client(ep.user_url) as client:
        yield client


@pytest.fixture
def gate(tmp_path):
    """Gates to open; every one is opened at the end, so no test leaves the one worker blocked."""
    made: list[Path] = []

    def make() -> Path:
        made.append(tmp_path / f"gate{len(made)}")
        return made[-1]

    yield make
    for path in made:
        path.touch()


def _run(client, ep, fn, *args):
    return client.run(*args, endpoint_id=ep.endpoint_id, function_id=client.register_function(fn))


def _state(client, task_id, **kw):
    return client.get_task(task_id, **kw)["state"]


def _failure(client, task_id, timeout=20.0) -> TaskFailed:
    def answered():
        try:
            client.get_result(task_id)
        except TaskFailed as e:
            return e
        except Exception:
            return None
        raise AssertionError("the task succeeded")

    return wait_until(answered, timeout=timeout)


def test_states_are_queued_then_waiting_then_running_then_done(ep, alice, gate):
    first, second = gate(), gate()
    blocker = _run(alice, ep, gated, str(first), "first")
    task = _run(alice, ep, gated, str(second), "second")
    # Not started: nothing takes the question off the broker.
    said = alice.get_task(task, timeout=1)
    assert (said["state"], said["status"], said["pending"]) == ("queued", "queued", True)
    assert "did not take the question off the broker within 1 s" in said["reason"]

    ep.start()
    assert wait_until(lambda: _state(alice, task) == "waiting")  # behind the blocker on the one worker
    # "running" is the user endpoint's word, which a busy one may give later than the manager waits for it.
    running = wait_until(lambda: (lambda t: t if t["state"] == "running" else None)(alice.get_task(blocker)))
    assert time.time() - 30 < running["since"] <= time.time()
    first.touch()
    assert wait_until(lambda: _state(alice, task) == "running")
    second.touch()
    done = wait_until(lambda: (lambda t: t if t["state"] == "done" else None)(alice.get_task(task)))
    assert (done["status"], done["pending"], done["result"]) == ("success", False, "second")


def test_a_cancel_waiting_on_the_broker_stops_its_task_when_the_endpoint_takes_them(ep, alice, gate):
    ep.stop()
    task = _run(alice, ep, gated, str(gate()), "never")
    said = alice.cancel(task, timeout=1)
    assert (said["cancelled"], said["state"]) == (False, "queued")
    assert "waits on the broker behind the task" in said["reason"]
    ep.start()
    failed = _failure(alice, task)
    assert failed.code == "CANCELLED" and "cancelled by its submitter" in str(failed)


def test_a_task_that_has_not_started_is_answered_cancelled_and_never_runs(ep, alice, gate, tmp_path):
    first = gate()
    blocker = _run(alice, ep, gated, str(first), "first")
    marker = tmp_path / "ran"
    task = _run(alice, ep, marked, str(marker))
    assert wait_until(lambda: _state(alice, blocker) == "running")
    said = alice.cancel(task, timeout=30)  # the answer comes when it comes: a busy broker may take 5 s
    assert (said["cancelled"], said["state"]) == (True, "waiting"), said
    began = time.monotonic()
    failed = _failure(alice, task)
    # At once, not when the blocker ends: it never does until the gate opens below.
    assert failed.code == "CANCELLED" and time.monotonic() - began < 30
    first.touch()
    assert alice.get_result(blocker) if wait_until(lambda: _state(alice, blocker) == "done") else False
    assert _run(alice, ep, double, 21) and not marker.exists()  # the worker went on to other work, not to it


def test_a_running_task_is_stopped_well_before_its_end_and_the_pool_carries_on(ep, alice):
    task = _run(alice, ep, nap, 60)
    assert wait_until(lambda: _state(alice, task) == "running")
    began = time.monotonic()
    said = alice.cancel(task, timeout=30)
    # Running, as it was just seen; "waiting" is what the manager says of a task at a user endpoint
    # that did not answer within its wait for the state, and the cancel reaches that endpoint all the same.
    assert said["cancelled"] is True and said["state"] in ("running", "waiting"), said
    assert said["reason"].startswith("its user endpoint stops it"), said
    failed = _failure(alice, task)
    assert failed.code == "CANCELLED" and "worker process was killed" in str(failed)
    assert time.monotonic() - began < 10
    again = _run(alice, ep, double, 4)
    assert wait_until(lambda: alice.get_task(again).get("result") == 8)


def test_unknown_and_finished_tasks_get_a_clear_answer(ep, alice):
    nobody = str(uuid.uuid4())
    said = alice.cancel(nobody, endpoint_id=ep.endpoint_id)
    assert (said["cancelled"], said["state"]) == (False, "unknown")
    assert f"knows no task {nobody} of alice" in said["reason"]
    assert alice.get_task(nobody, endpoint_id=ep.endpoint_id)["state"] == "unknown"
    task = _run(alice, ep, double, 5)
    assert wait_until(lambda: alice.get_task(task).get("result") == 10)
    said = alice.cancel(task)
    assert (said["cancelled"], said["state"], said["reason"]) == (False, "done", "it had finished: its result stands")


def test_a_cancel_that_comes_before_its_task_answers_the_task_when_it_comes(ep, alice, tmp_path):
    import pika

    from gce.sdk.tasks import task_message
    from gce.sdk.serialize import function_id_of, serialize_function
    from gce.transport import names

    kind, blob = serialize_function(marked)
    _, body, props = task_message(kind, blob, function_id_of(kind, blob), (str(tmp_path / "ran"),), {},
                                  user=alice.broker_user, reply_to=alice.result_queue, user_endpoint_config={},
                                  resource_specification={}, max_payload_bytes=1 << 20)
    task = props.message_id = str(uuid.uuid4())  # an id the endpoint has not seen yet
    said = alice.cancel(task, endpoint_id=ep.endpoint_id)
    assert (said["cancelled"], said["state"]) == (False, "unknown")
    assert "should it come, it is answered CANCELLED and never runs" in said["reason"]
    conn = pika.BlockingConnection(pika.URLParameters(ep.user_url))
    conn.channel().basic_publish(names.TASKS_EXCHANGE, ep.endpoint_id, body, props)
    conn.close()
    failed = _failure(alice, task)
    assert failed.code == "CANCELLED" and "before it reached the endpoint" in str(failed)
    assert not (tmp_path / "ran").exists()


def test_a_malformed_control_message_is_answered_with_why_and_harms_nothing_else(ep, alice):
    import pika

    from gce.transport import control, names

    conn = pika.BlockingConnection(pika.URLParameters(ep.user_url))
    ch = conn.channel()
    reply_to = names.result_queue(alice.broker_user, "controltest")
    ch.queue_declare(reply_to, exclusive=True)
    ch.queue_bind(reply_to, names.RESULTS_EXCHANGE, routing_key=reply_to)
    request = str(uuid.uuid4())
    headers = {"gce-protocol": 1, "gce-control": "state", "task-ids": '["not-a-task"]'}
    ch.basic_publish(names.TASKS_EXCHANGE, ep.endpoint_id, b"", pika.BasicProperties(
        message_id=request, user_id=alice.broker_user, reply_to=reply_to, headers=headers))
    method, props, body = next(ch.consume(reply_to, inactivity_timeout=10))
    conn.close()
    assert method is not None and props.correlation_id == request
    answer = control.parse_answer(body)
    assert answer["tasks"] == {} and answer["error"].startswith("the request was refused: the task id 'not-a-task'")
    task = _run(alice, ep, double, 8)
    assert wait_until(lambda: alice.get_task(task).get("result") == 16)


def test_only_the_submitter_may_see_or_cancel_a_task(ep, alice, gate):
    release = gate()
    task = _run(alice, ep, gated, str(release), "alice's")
    assert wait_until(lambda: _state(alice, task) == "running")
    with Client(ep.urls["bob"]) as bob:
        said = bob.cancel(task, endpoint_id=ep.endpoint_id)
        assert (said["cancelled"], said["state"]) == (False, "unknown")
        assert f"knows no task {task} of bob" in said["reason"]
        assert bob.get_task(task, endpoint_id=ep.endpoint_id)["state"] == "unknown"
    assert wait_until(lambda: _state(alice, task) == "running")  # still: bob's cancel did not stop it
    release.touch()
    assert wait_until(lambda: alice.get_task(task).get("result") == "alice's")


def test_a_future_s_cancel_stops_its_running_task_and_its_state_is_asked_of_the_endpoint(ep):
    with ep.executor() as ex:
        fut = ex.submit(nap, 60)
        assert wait_until(lambda: fut.state()["state"] == "running")
        assert fut.cancel() and fut.cancelled()
        assert fut.state()["status"] == "cancelled"
        began = time.monotonic()
        assert ex.submit(double, 3).result(timeout=20) == 6  # the one worker was freed
        assert time.monotonic() - began < 15


def test_shutdown_with_cancel_futures_cancels_the_tasks_at_the_endpoint_too(ep, alice, tmp_path):
    ex = ep.executor()
    running, waiting = ex.submit(nap, 60), ex.submit(marked, str(tmp_path / "ran"))
    assert wait_until(lambda: running.state()["state"] == "running")
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.cancelled() and waiting.cancelled()
    began = time.monotonic()
    task = _run(alice, ep, double, 7)  # the one worker is free: nap was stopped, marked never runs
    assert wait_until(lambda: alice.get_task(task).get("result") == 14) and time.monotonic() - began < 15
    assert not (tmp_path / "ran").exists()
