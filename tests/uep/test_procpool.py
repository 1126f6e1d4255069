"""The process pool of a ProcessPoolEngine (gce/uep/procpool.py), in a real user endpoint with real
worker processes: a worker that dies, or is killed to cancel its task, costs that task alone; the
task beside it on the other worker runs on to its own end, once, and the pool is whole again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import cloudpickle
import psutil

from gce.transport import frames
from gce.transport.payload import unpack_result
from tests.uep.uep_process import UepProcess

NAP = """def nap(seconds, folder):
    import os, time
    with open(os.path.join(folder, "pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    with open(os.path.join(folder, "runs"), "a") as f:
        f.write("x")
    return os.getpid()
"""


# A task that starts a process in a session of its own (as a ShellFunction's command is), then naps.
SPAWN = """def spawn(folder, seconds):
    import os, subprocess, time
    child = subprocess.Popen(["sleep", "3600"], start_new_session=True)
    with open(os.path.join(folder, "child"), "w") as f:
        f.write(str(child.pid))
    with open(os.path.join(folder, "pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return child.pid
"""


def _result(uep: UepProcess, task_id: str, timeout: float = 30) -> tuple[dict, bytes]:
    _, header, body = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task_id, timeout)
    return header, body


def _pid(folder: Path, timeout: float = 30, name: str = "pid") -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int((folder / name).read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError(f"no task wrote its {name} in {folder}")


def _kill_all(pids: list[int]) -> None:
    for pid in pids:  # had the test failed: no orphan left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _two_tasks(uep: UepProcess, tmp_path: Path) -> tuple[str, Path, str, Path]:
    beside, victim = tmp_path / "beside", tmp_path / "victim"
    beside.mkdir()
    victim.mkdir()
    first = uep.submit(NAP, "nap", 3, str(beside))
    second = uep.submit(NAP, "nap", 60, str(victim))
    return first, beside, second, victim


def _beside_ran_once(uep: UepProcess, task_id: str, folder: Path) -> None:
    header, body = _result(uep, task_id)
    assert header["status"] == "success", header
    assert cloudpickle.loads(unpack_result(body).value) == _pid(folder)
    assert (folder / "runs").read_text() == "x"  # run once: never sent again


def _pool_carries_on(uep: UepProcess, tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()
    header, _ = _result(uep, uep.submit(NAP, "nap", 0, str(again)))
    assert header["status"] == "success", header
    uep.status(lambda e: e.get("workers_total") == 2 and e.get("outstanding") == 0)


def test_a_worker_killed_by_a_signal_costs_its_own_task_alone(tmp_path: Path) -> None:
    uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 2}, tmp_path)
    try:
        beside_id, beside, victim_id, victim = _two_tasks(uep, tmp_path)
        beside_pid, victim_pid = _pid(beside), _pid(victim)
        assert beside_pid != victim_pid
        os.kill(victim_pid, signal.SIGKILL)
        header, _ = _result(uep, victim_id)
        assert (header["status"], header["error_code"]) == ("failed", "WORKER_LOST"), header
        assert "died abruptly (killed by SIGKILL" in header["error_message"], header
        _beside_ran_once(uep, beside_id, beside)
        _pool_carries_on(uep, tmp_path)
    finally:
        uep.close()
    assert _gone(beside_pid), "a worker process outlived its user endpoint"


def test_a_cancelled_running_task_kills_its_own_worker_and_no_other(tmp_path: Path) -> None:
    uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 2}, tmp_path)
    try:
        beside_id, beside, victim_id, victim = _two_tasks(uep, tmp_path)
        beside_pid, victim_pid = _pid(beside), _pid(victim)
        began = time.monotonic()
        uep.send(frames.CANCEL_TASKS, {"task_ids": [victim_id]})
        header, _ = _result(uep, victim_id)
        assert time.monotonic() - began < 5
        assert (header["status"], header["error_code"]) == ("failed", "CANCELLED"), header
        assert "its worker process was killed" in header["error_message"], header
        assert _gone(victim_pid)
        assert psutil.pid_exists(beside_pid) and not _gone(beside_pid, timeout=0.2)
        _beside_ran_once(uep, beside_id, beside)
        assert not (victim / "runs").exists()  # not sent again
        _pool_carries_on(uep, tmp_path)
    finally:
        uep.close()
    assert _gone(beside_pid), "a worker process outlived its user endpoint"


def test_a_stop_leaves_no_worker_behind_even_a_busy_one(tmp_path: Path) -> None:
    uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 2}, tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    uep.submit(NAP, "nap", 60, str(busy))
    pid = _pid(busy)
    workers = [p.pid for p in psutil.Process(uep.proc.pid).children()]
    assert pid in workers and len(workers) >= 2
    began = time.monotonic()
    uep.close()
    assert time.monotonic() - began < 15
    assert all(_gone(p) for p in workers)


FORGETS_SHUTDOWN = """
from gce.uep.pools import ProcessPoolEngine

if __name__ == "__main__":
    engine = ProcessPoolEngine({"max_workers": 2}, RUN_DIR, 1 << 20)
    engine.start()
    print(*(w.process.pid for w in engine.pool._workers))
"""


def test_a_process_that_never_shuts_its_pool_down_still_exits_and_takes_its_workers(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "forgets.py"
    script.write_text(FORGETS_SHUTDOWN.replace("RUN_DIR", repr(str(tmp_path))))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 1 and all(_gone(p) for p in pids)  # one started at once; the others on demand


def test_workers_start_as_tasks_need_them_up_to_max_workers(tmp_path: Path) -> None:
    uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 3}, tmp_path)
    try:
        folders = [tmp_path / f"n{i}" for i in range(4)]
        for f in folders:
            f.mkdir()
        pids: list[int] = []
        uep.submit(NAP, "nap", 0, str(folders[0]))  # one task: the worker started at once runs it
        pids.append(_pid(folders[0]))
        for f in folders[1:]:  # three at once: two more start, the fourth task waits for one
            uep.submit(NAP, "nap", 3, str(f))
        pids += [_pid(f) for f in folders[1:]]
        assert len(set(pids)) == 3, pids  # the first worker again, and two more: never a fourth
    finally:
        uep.close()


def test_a_user_endpoint_killed_by_sigkill_takes_its_busy_workers_with_it(tmp_path: Path) -> None:
    # kill -9 of the user endpoint runs none of its shutdown: a worker busy with an hour-long task
    # would run on, an orphan whose result has nowhere to go, holding its core and memory.
    # Nor does what its task started in a session of its own.
    uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 2}, tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    child = 0
    try:
        uep.submit(SPAWN, "spawn", str(busy), 3600)
        pid, child = _pid(busy), _pid(busy, name="child")
        workers = [p.pid for p in psutil.Process(uep.proc.pid).children()]
        assert pid in workers
        os.kill(uep.proc.pid, signal.SIGKILL)
        uep.proc.wait(timeout=10)
        assert all(_gone(p, timeout=10) for p in workers), "a worker outlived its user endpoint's kill -9"
        assert _gone(child), "what a busy task started outlived its user endpoint's kill -9"
    finally:
        uep.close()
        try:
            os.killpg(uep.proc.pid, signal.SIGKILL)  # had the test failed: no orphan left behind
        except ProcessLookupError:
            pass
        _kill_all([child] if child else [])


def test_what_a_cancelled_task_started_dies_with_it_and_only_that(tmp_path: Path) -> None:
    # A cancelled (or timed-out) task's worker is killed; a command it started in a session of its
    # own would run on as an orphan, holding its core, until the endpoint stops. A process an
    # earlier task left behind on purpose, and that ended well, is that task's business: kept.
    uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 1}, tmp_path)
    kept, victim = tmp_path / "kept", tmp_path / "victim"
    kept.mkdir()
    victim.mkdir()
    started: list[int] = []
    try:
        header, _ = _result(uep, uep.submit(SPAWN, "spawn", str(kept), 0))
        assert header["status"] == "success", header
        started.append(_pid(kept, name="child"))
        victim_id = uep.submit(SPAWN, "spawn", str(victim), 3600)
        started.append(_pid(victim, name="child"))
        assert _pid(kept) == _pid(victim)  # one worker ran both
        uep.send(frames.CANCEL_TASKS, {"task_ids": [victim_id]})
        header, _ = _result(uep, victim_id)
        assert (header["status"], header["error_code"]) == ("failed", "CANCELLED"), header
        assert _gone(started[1]), "a process the cancelled task started outlived it"
        assert not _gone(started[0], timeout=0.5), "a process an earlier, finished task left was killed"
        _pool_carries_on_with_one(uep, tmp_path)
    finally:
        uep.close()
        _kill_all(started)


def _pool_carries_on_with_one(uep: UepProcess, tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()
    header, _ = _result(uep, uep.submit(NAP, "nap", 0, str(again)))
    assert header["status"] == "success", header


def test_looking_for_a_dead_tasks_processes_never_keeps_its_answer(monkeypatch, caplog) -> None:
    # The pool's reader answers a job whose worker died only after looking for what it left
    # running: an error there (no /proc, a line it cannot read) must not leave the task unanswered.
    from gce.daemon import proctree
    from gce.uep import poolworker

    def broken(entry: str, uid: int) -> int:
        raise ValueError("a /proc line it cannot read")

    monkeypatch.setattr(proctree, "kill_marked", broken)
    assert poolworker.kill_task_processes("0" * 32, "t-1") == 0
    assert "task t-1: could not look for the processes it left running: a /proc line" in caplog.text
