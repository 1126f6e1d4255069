"""A user endpoint child's lifecycle, driven through a fake OS (tests/daemon/fake_os.py): every path
of its state machine in milliseconds. tests/daemon/test_children.py and the fault tests prove
the same lifecycle once more with real processes."""

from __future__ import annotations

import asyncio
import logging
import signal
import struct
import time
from pathlib import Path

import pytest

from gce.config.uep import UepConfig
from gce.daemon.children import FATAL_COOLDOWN, UepChild
from gce.daemon.states import UepState
from gce.transport import frames
from tests.daemon.fake_os import FakeOs, raise_on_refused_transitions

S = UepState


@pytest.fixture(autouse=True)
def strict_transitions():
    remove = raise_on_refused_transitions()
    yield
    remove()


class Seen:
    """What the child told its manager."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.exits: list[str] = []

    def frame(self, uep, kind, header, body) -> None:
        self.frames.append(kind)

    def exit(self, uep, reason) -> None:
        self.exits.append(reason)


def make(tmp_path: Path, engine: dict | None = None) -> tuple[UepChild, FakeOs, Seen]:
    fake, seen = FakeOs(), Seen()
    conf = UepConfig(endpoint_id="e-1", engine=engine or {"type": "ThreadPoolEngine"}, run_dir=str(tmp_path),
                     max_result_bytes=1000)
    return UepChild("alice/1", conf, tmp_path / "uep.log", seen.frame, seen.exit, os_=fake), fake, seen


async def settle(until, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def moves(caplog) -> list[str]:
    return [r.getMessage().split(": ", 1)[1] for r in caplog.records
            if r.name == "gce.daemon.children" and " -> " in r.getMessage()]


def run(coro) -> None:
    asyncio.run(coro)


def test_ready_then_an_exit_goes_to_backoff_naming_the_exit(tmp_path, caplog):
    async def main():
        uep, fake, seen = make(tmp_path)
        await uep.start()
        assert uep.state is S.STARTING and uep.pid == 1000
        fake.processes[0].say(frames.READY, {"python": "3.11.2", "status": {"type": "ThreadPoolEngine"}})
        await settle(lambda: uep.state is S.RUNNING)
        assert uep.python == "3.11.2" and uep.ready.is_set() and seen.frames == [frames.READY]
        fake.processes[0].exit(1)
        await settle(lambda: seen.exits)
        assert uep.state is S.BACKOFF
        assert seen.exits == ["the user endpoint process exited with status 1"]
        assert uep.backoff_delay() == 1.0  # it had been running: no quick failure counted
        await uep.start()  # backoff -> starting: a fresh process
        assert uep.state is S.STARTING and uep.pid == 1001

    with caplog.at_level(logging.INFO, logger="gce.daemon.children"):
        run(main())
    assert moves(caplog) == [
        "stopped -> starting: starting the user endpoint process",
        "starting -> running: its engine is up",
        "running -> backoff: the user endpoint process exited with status 1",
        "backoff -> starting: starting the user endpoint process",
    ]
    assert "user endpoint alice/1: running -> backoff: the user endpoint process exited with status 1" in caplog.text


def test_quick_failures_back_off_longer_each_time_then_become_fatal(tmp_path, caplog):
    async def main():
        uep, fake, seen = make(tmp_path)
        (tmp_path / "uep.log").write_text("ImportError: no module named parsl\n")
        delays = []
        for n in range(3):
            await uep.start()
            fake.processes[n].exit(1)
            await settle(lambda: len(seen.exits) == n + 1)
            delays.append(uep.backoff_delay())
        assert uep.state is S.FATAL and not uep.failures and uep.fatal_at > 0
        assert delays[:2] == [2.0, 4.0]
        assert seen.exits[-1].startswith("it exited with status 1 before it was ready; last lines of ")
        assert seen.exits[-1].endswith("ImportError: no module named parsl")
        assert not uep.may_retry()  # not before the cool-down
        uep.fatal_at -= FATAL_COOLDOWN + 1
        assert uep.may_retry()
        await uep.start()  # fatal -> starting, for the next task after the cool-down
        assert uep.state is S.STARTING

    with caplog.at_level(logging.INFO, logger="gce.daemon.children"):
        run(main())
    assert [m.split(":")[0] for m in moves(caplog)] == [
        "stopped -> starting", "starting -> backoff", "backoff -> starting", "starting -> backoff",
        "backoff -> starting", "starting -> fatal", "fatal -> starting"]


def test_a_fatal_frame_makes_the_first_failed_start_fatal_with_its_reason_and_code(tmp_path):
    async def main():
        uep, fake, seen = make(tmp_path)
        await uep.start()
        fake.processes[0].say(frames.FATAL, {"reason": "worker_init failed: module: not found",
                                             "code": "ENGINE_START_FAILED"})
        fake.processes[0].exit(1)
        await settle(lambda: seen.exits)
        assert uep.state is S.FATAL
        assert uep.reason == "worker_init failed: module: not found" and uep.fatal_code == "ENGINE_START_FAILED"
        assert seen.exits == [uep.reason]

    run(main())


def test_a_process_that_cannot_be_started_is_fatal_at_once(tmp_path):
    async def main():
        uep, fake, seen = make(tmp_path)
        fake.spawn_error = PermissionError(13, "Permission denied")
        await uep.start()
        assert uep.state is S.FATAL and uep.ready.is_set()
        assert seen.exits == ["cannot start the user endpoint: [Errno 13] Permission denied"]
        await uep.stop()
        assert uep.state is S.STOPPED

    run(main())


def test_stop_during_start_stays_stopping_when_ready_comes_and_ends_stopped(tmp_path, caplog):
    async def main():
        uep, fake, seen = make(tmp_path)
        await uep.start()
        proc = fake.processes[0]
        stopping = asyncio.ensure_future(uep.stop(timeout=5))
        await settle(lambda: uep.state is S.STOPPING)
        await settle(lambda: proc.heard())
        proc.say(frames.READY, {"python": "3.11.2"})  # it was just coming up
        await asyncio.sleep(0.01)
        assert uep.state is S.STOPPING
        proc.exit(0)  # it obeyed STOP
        await stopping
        assert uep.state is S.STOPPED and seen.exits == ["stopped"]
        assert proc.signals == []  # no signal was needed

    with caplog.at_level(logging.INFO, logger="gce.daemon.children"):
        run(main())
    assert moves(caplog) == ["stopped -> starting: starting the user endpoint process",
                             "starting -> stopping: stopping on request",
                             "stopping -> stopped: stopped on request (the user endpoint process exited with status 0)"]


def test_a_stop_it_ignores_ends_with_term_then_kill_of_it_and_its_tree(tmp_path):
    async def main():
        uep, fake, seen = make(tmp_path)
        fake.exits_on = (signal.SIGKILL,)  # it ignores SIGTERM
        fake.leftovers = [4242]
        await uep.start()
        fake.processes[0].say(frames.READY, {})
        await settle(lambda: uep.state is S.RUNNING)
        await uep.stop(timeout=0.1)
        assert uep.state is S.STOPPED
        assert fake.processes[0].signals == [signal.SIGTERM, signal.SIGKILL]
        assert fake.trees[0].signals[0] == (signal.SIGTERM, False)  # the session first
        assert not fake.trees[0].members()

    run(main())


def test_a_protocol_violation_makes_it_compromised_then_reaped_into_backoff(tmp_path, caplog):
    async def main():
        uep, fake, seen = make(tmp_path)
        fake.exits_on = ()  # it would ignore every signal but the kill below
        await uep.start()
        proc = fake.processes[0]
        proc.say(frames.READY, {})
        await settle(lambda: uep.state is S.RUNNING)
        proc.write(struct.pack("!IcI", 3, frames.STATUS, 0))  # a length below the minimum
        await settle(lambda: uep.state is S.COMPROMISED)
        assert uep.violation.startswith("FrameError") and proc.signals == [signal.SIGKILL]
        assert not uep.send_frame(frames.TASK, {})  # nothing more goes to it
        proc.exit(-9)
        await settle(lambda: seen.exits)
        assert uep.state is S.BACKOFF
        assert seen.exits == ["the user endpoint violated its channel protocol and was stopped"]
        assert fake.trees[0].signals[0] == (signal.SIGKILL, False)

    with caplog.at_level(logging.INFO, logger="gce.daemon.children"):
        run(main())
    assert [m.split(":")[0] for m in moves(caplog)] == [
        "stopped -> starting", "starting -> running", "running -> compromised", "compromised -> backoff"]


def test_a_violation_while_stopping_ends_stopped(tmp_path):
    async def main():
        uep, fake, seen = make(tmp_path)
        fake.exits_on = ()
        await uep.start()
        proc = fake.processes[0]
        stopping = asyncio.ensure_future(uep.stop(timeout=5))
        await settle(lambda: uep.state is S.STOPPING)
        uep.kill_compromised("a result for a task it is not running")
        assert uep.state is S.COMPROMISED
        proc.exit(-9)
        await stopping
        assert uep.state is S.STOPPED and seen.exits == ["stopped"]

    run(main())


def test_a_reaped_batch_engine_has_its_jobs_cancelled_as_its_user(tmp_path):
    async def main():
        uep, fake, seen = make(tmp_path, {"type": "HighThroughputEngine", "provider": {"type": "SlurmProvider"}})
        await uep.start()
        fake.processes[0].exit(-9)
        await settle(lambda: seen.exits)
        assert fake.block_cancels == [{"run_dir": str(tmp_path), "identity": None}]
        assert uep.state is S.BACKOFF and seen.exits == ["it killed by signal SIGKILL before it was ready"]

    run(main())
