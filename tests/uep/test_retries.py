"""A task whose worker died is run again, up to max_retries_on_system_failure more times
(gce/uep/retries.py): on a real user endpoint with a process pool, whose tasks kill their own
worker with SIGKILL; and from the SDK through a real endpoint, the Executor's value in the task's
headers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from gce.transport import frames
from gce.transport.message import TaskHeaders
from gce.transport.payload import KIND_SOURCE, function_id_of, pack_task, unpack_result
from gce.uep.retries import MAX_RETRIES, Retries
from tests.uep.uep_process import UepProcess

DIE_ONCE = ("def die_once(marker):\n"
            "    import os, signal\n"
            "    if not os.path.exists(marker):\n"
            "        open(marker, 'w').close()\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return 'second time lucky'\n")
ALWAYS_DIE = ("def always_die(counter):\n"
              "    import os, signal\n"
              "    with open(counter, 'a') as f:\n"
              "        f.write('x')\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
RAISE = ("def fail(counter):\n"
         "    with open(counter, 'a') as f:\n"
         "        f.write('x')\n"
         "    raise RuntimeError('a user error')\n")


def submit(uep: UepProcess, source: str, name: str, *args: Any, retries: int | None = None) -> str:
    blob = f"{name}\n{source}".encode()
    task_id = str(uuid.uuid4())
    th = TaskHeaders(task_id=task_id, user_id="alice", reply_to="r", function_id=function_id_of(KIND_SOURCE, blob),
                     serializer="source", max_retries_on_system_failure=retries)
    uep.send(frames.TASK, {"task": th.to_dict()}, pack_task(KIND_SOURCE, blob, cloudpickle.dumps((args, {}))))
    return task_id


def answer(uep: UepProcess, task_id: str) -> tuple[dict, bytes]:
    _, header, body = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task_id, 60)
    return header, body


@pytest.fixture
def pool(tmp_path: Path):
    started: list[UepProcess] = []

    def start(**engine: Any) -> UepProcess:
        uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 1, **engine}, tmp_path)
        started.append(uep)
        return uep

    yield start
    for uep in started:
        uep.close()


def test_a_task_that_killed_its_worker_once_succeeds_on_its_second_attempt(pool, tmp_path: Path) -> None:
    uep = pool()
    header, body = answer(uep, submit(uep, DIE_ONCE, "die_once", str(tmp_path / "marker"), retries=1))
    assert header["status"] == "success", header
    assert cloudpickle.loads(unpack_result(body).value) == "second time lucky"
    assert "running it again (attempt 2 of at most 2)" in uep.log.read_text()


def test_a_task_that_always_kills_its_worker_fails_after_n_plus_one_attempts(pool, tmp_path: Path) -> None:
    uep = pool()
    counter = tmp_path / "count"
    header, _ = answer(uep, submit(uep, ALWAYS_DIE, "always_die", str(counter), retries=2))
    assert (header["status"], header["error_code"]) == ("failed", "WORKER_LOST"), header
    assert counter.read_text() == "xxx"
    assert "died abruptly" in header["error_message"], header
    assert header["error_message"].endswith("; 3 attempts (max_retries_on_system_failure was 2)"), header


def test_without_retries_a_lost_worker_is_answered_at_once_and_says_so(pool, tmp_path: Path) -> None:
    uep = pool()
    counter = tmp_path / "count"
    header, _ = answer(uep, submit(uep, ALWAYS_DIE, "always_die", str(counter)))
    assert header["error_code"] == "WORKER_LOST" and counter.read_text() == "x"
    assert header["error_message"].endswith("; 1 attempt (max_retries_on_system_failure was 0)"), header


def test_user_exceptions_are_never_retried(pool, tmp_path: Path) -> None:
    uep = pool(max_retries_on_system_failure=3)
    counter = tmp_path / "count"
    header, _ = answer(uep, submit(uep, RAISE, "fail", str(counter), retries=3))
    assert (header["error_code"], counter.read_text()) == ("TASK_EXCEPTION", "x"), header


def test_the_engines_value_is_the_default_and_the_tasks_own_wins(pool, tmp_path: Path) -> None:
    uep = pool(max_retries_on_system_failure=1)
    by_default, told_none = tmp_path / "default", tmp_path / "none"
    header, _ = answer(uep, submit(uep, ALWAYS_DIE, "always_die", str(by_default)))
    assert header["error_message"].endswith("; 2 attempts (max_retries_on_system_failure was 1)"), header
    header, _ = answer(uep, submit(uep, ALWAYS_DIE, "always_die", str(told_none), retries=0))
    assert (by_default.read_text(), told_none.read_text()) == ("xx", "x")


def die_once(marker):
    import os
    import signal

    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "second time lucky"


def always_die(counter):
    import os
    import signal

    with open(counter, "a") as f:
        f.write("x")
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.broker
def test_through_a_real_endpoint_the_executors_value_wins_over_the_engines(make_endpoint, tmp_path: Path) -> None:
    from gce.sdk.errors import TaskFailed

    ep = make_endpoint(engine="process")
    ep.set(engine={"type": "ProcessPoolEngine", "max_workers": 1, "max_retries_on_system_failure": 1})
    ep.start()
    tmp_path.chmod(0o755)
    with ep.executor(max_retries_on_system_failure=2) as ex:
        assert ex.submit(die_once, str(tmp_path / "marker")).result(timeout=60) == "second time lucky"
        with pytest.raises(TaskFailed) as info:
            ex.submit(always_die, str(tmp_path / "count")).result(timeout=60)
    assert info.value.code == "WORKER_LOST" and "3 attempts (max_retries_on_system_failure was 2)" in str(info.value)
    assert (tmp_path / "count").read_text() == "xxx"
    with ep.executor() as ex, pytest.raises(TaskFailed) as info:
        ex.submit(always_die, str(tmp_path / "default")).result(timeout=60)
    assert "2 attempts (max_retries_on_system_failure was 1)" in str(info.value)


def test_a_tasks_value_is_capped() -> None:
    th = TaskHeaders(task_id="t", user_id="u", reply_to="r", function_id="f", max_retries_on_system_failure=10**6)
    retries = Retries()
    assert retries.allowed(th) == MAX_RETRIES
    retries.keep(TaskHeaders(task_id="u", user_id="u", reply_to="r", function_id="f"), b"payload")
    assert retries.settle(th).attempts == 1  # nothing was kept of a task that may not run again
    assert retries.take({"type": "ThreadPoolEngine", "max_retries_on_system_failure": 4}) == {"type": "ThreadPoolEngine"}
    assert retries.default == 4
