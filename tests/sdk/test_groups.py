"""Task groups: a new process reattaches to a killed Executor's tasks with reload_tasks()."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pika
import pytest

from gce.sdk import Executor
from gce.sdk import TaskGroupInUse
from gce.sdk.groups import GroupLog, group_queue, read_log

SUBMIT = textwrap.dedent("""
    import json, sys, time
    from gce.sdk import Executor

    def slow_square(i):
        import time
        time.sleep(1 if i < 4 else 3)  # four finish while nobody reads, eight still run
        return i * i

    ex = Executor(endpoint_id=sys.argv[1], task_group_id=sys.argv[2])
    futs = [ex.submit(slow_square, i) for i in range(int(sys.argv[3]))]
    assert ex._link.wait_published(30)
    print(json.dumps({f.task_id: i for i, f in enumerate(futs)}), flush=True)
    time.sleep(120)  # killed before any result is read
""")

RELOAD = textwrap.dedent("""
    import json, sys
    from concurrent.futures import wait
    from gce.sdk import Executor

    with Executor(endpoint_id=sys.argv[1], task_group_id=sys.argv[2]) as ex:
        futs = list(ex.reload_tasks())
        running = [f for f in futs if not f.done()]
        state = running[0].state()["state"] if running else "none left"  # asked of the endpoint
        done, not_done = wait(futs, timeout=60)
        got = [[f.task_id, f.result()] for f in futs]
    with Executor(task_group_id=sys.argv[2]) as again:  # every result was taken: nothing is left
        left = len(list(again.reload_tasks()))
    print(json.dumps({"results": got, "not_done": len(not_done), "left": left, "state": state}), flush=True)
""")


def _queue_depth(sdk_broker, queue: str) -> int:
    """Messages ready in QUEUE, -1 when there is no such queue (read as the broker administrator)."""
    conn = pika.BlockingConnection(pika.URLParameters(sdk_broker.admin_url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return -1
    finally:
        if conn.is_open:
            conn.close()


@pytest.mark.broker
def test_a_new_process_gets_every_result_of_a_killed_executor_exactly_once(sdk_broker, gce_home, monkeypatch):
    monkeypatch.setenv("GCE_BROKER_URL", sdk_broker.user_url)
    group, n = str(uuid.uuid4()), 12
    child = subprocess.Popen([sys.executable, "-c", SUBMIT, sdk_broker.endpoint_id, group, str(n)],
                             stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        submitted = json.loads(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert len(submitted) == n
    # Some results wait in the group's queue (finished, unread), the rest are still running.
    queue = group_queue(_user(sdk_broker.user_url), group)
    deadline, waiting = time.monotonic() + 30, 0
    while waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        waiting = _queue_depth(sdk_broker, queue)
    assert 1 <= waiting < n

    out = subprocess.run([sys.executable, "-c", RELOAD, sdk_broker.endpoint_id, group], capture_output=True,
                         text=True, env=os.environ, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["not_done"] == 0 and report["left"] == 0
    assert report["state"] in ("running", "waiting", "done", "none left")  # a reloaded future can be asked
    got = dict(report["results"])
    assert len(report["results"]) == n and set(got) == set(submitted)  # each once, none missing
    assert got == {task_id: i * i for task_id, i in submitted.items()}
    assert _queue_depth(sdk_broker, queue) == -1  # deleted once nothing was outstanding
    assert not list((gce_home / "sdk" / "groups").iterdir())


def _user(url: str) -> str:
    from gce.sdk.settings import broker_user

    return broker_user(url)


@pytest.mark.broker
def test_an_executor_has_a_task_group_id_and_one_executor_at_a_time_holds_it(sdk_broker, gce_home):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        assert str(uuid.UUID(ex.task_group_id)) == ex.task_group_id
        assert ex.result_queue == group_queue(ex.broker_user, ex.task_group_id)
        assert ex.submit(pow, 2, 5).result(timeout=20) == 32
        assert list(ex.reload_tasks()) == []
        with pytest.raises(TaskGroupInUse, match="in use"):
            Executor(broker_url=sdk_broker.user_url, task_group_id=ex.task_group_id)
        with pytest.raises(ValueError, match="task_group_id"):
            ex.reload_tasks(str(uuid.uuid4()))
    with pytest.raises(ValueError, match="UUID"):
        Executor(broker_url=sdk_broker.user_url, task_group_id="not-a-uuid")


def test_the_log_lists_published_tasks_until_taken_and_survives_a_torn_line(tmp_path):
    group = str(uuid.uuid4())
    log = GroupLog(group, 2, directory=tmp_path)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    log.published([(ids[0], "ep-a"), (ids[1], "ep-a"), (ids[2], "ep-b")])
    log.taken(ids[1], dict)
    log.published([(ids[3], "ep-b")])
    with pytest.raises(TaskGroupInUse):
        GroupLog(group, directory=tmp_path)  # even in the same process
    os.write(log._fd, b"d " + ids[0][:10].encode())  # a crash in the middle of a line
    log.close(remove=False)
    again = GroupLog(group, 30, directory=tmp_path)  # the expiry it started with is kept
    assert again.expires_ms == 2 * 24 * 3600 * 1000
    assert again.outstanding == {ids[0]: "ep-a", ids[2]: "ep-b", ids[3]: "ep-b"}
    again.close(remove=True)
    assert list(tmp_path.iterdir()) == []


def test_the_log_is_rewritten_with_only_what_is_outstanding(tmp_path, monkeypatch):
    from gce.sdk import groups

    monkeypatch.setattr(groups, "COMPACT_AT", 50)
    log = GroupLog(str(uuid.uuid4()), directory=tmp_path)
    log._compact_at = 50
    ids = [str(uuid.uuid4()) for _ in range(40)]
    log.published([(t, "ep") for t in ids])
    left = {t: "ep" for t in ids}
    for t in ids[:30]:
        del left[t]
        log.taken(t, lambda: dict(left))
    text = log.path.read_text()
    assert text.count("\nt ") == 32 and text.count("\nd ") == 22  # rewritten once, at the 50th record
    assert read_log(log.path.read_text())[1] == {t: "ep" for t in ids[30:]}
    log.close(remove=False)


@pytest.mark.broker
def test_a_script_that_never_shuts_down_leaves_no_group_behind_once_its_results_came(sdk_broker, gce_home, monkeypatch):
    monkeypatch.setenv("GCE_BROKER_URL", sdk_broker.user_url)
    script = textwrap.dedent("""
        import sys
        from gce.sdk import Executor
        ex = Executor(endpoint_id=sys.argv[1])
        assert ex.submit(pow, 3, 2).result(timeout=30) == 9
        print(ex.result_queue, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script, sdk_broker.endpoint_id], capture_output=True, text=True,
                         env=os.environ, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _queue_depth(sdk_broker, out.stdout.strip()) == -1
    assert not list((gce_home / "sdk" / "groups").iterdir())


@pytest.mark.broker
def test_without_a_writable_gce_home_an_executor_still_runs_but_a_named_group_is_refused(sdk_broker, monkeypatch):
    monkeypatch.setenv("GCE_HOME", "/dev/null/gce")  # mkdir fails there, even for root
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        assert ex.submit(pow, 2, 3).result(timeout=20) == 8
        assert list(ex.reload_tasks()) == []
    with pytest.raises(OSError, match=r"error: cannot keep the task list of task group .*\nhint: .*GCE_HOME"):
        Executor(broker_url=sdk_broker.user_url, task_group_id=str(uuid.uuid4()))
