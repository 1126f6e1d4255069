"""A result carries what its function printed (up to limits.max_output_bytes of stdout and of
stderr) on top of its value: the manager's size checks allow for it, and for no more."""

from __future__ import annotations

import asyncio

import pytest

from gce.config.model import EndpointConfig
from gce.config.paths import endpoint_paths
from gce.daemon.dispatch import Dispatcher
from gce.daemon.routing import Router
from gce.daemon.spool import Spool
from gce.transport import frames
from gce.transport.message import TaskHeaders
from tests.daemon.fake_os import raise_on_refused_transitions
from tests.daemon.test_children_lifecycle import settle
from tests.daemon.test_dispatch import Rig

RESULT_LIMIT, OUTPUT_LIMIT = 1000, 1 << 20


class OutputRig(Rig):
    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path)
        self.spool.close()
        config = EndpointConfig(name="ep", endpoint_id="e-1", broker_url="amqp://ep:pw@127.0.0.1/gce",
                                engine={"type": "ThreadPoolEngine"}, max_result_bytes=RESULT_LIMIT,
                                max_output_bytes=OUTPUT_LIMIT)
        self.spool = Spool(tmp_path / "spool2")
        self.d = Dispatcher(config, Router(endpoint_paths("ep"), config), self.spool, asyncio.Event(),
                            lambda rh, body: self.on_answer(rh, body), self.counts, os_=self.os)


@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path / "home"))
    remove = raise_on_refused_transitions()
    r = OutputRig(tmp_path)
    try:
        yield r
    finally:
        r.spool.close()
        remove()


def _answer(rig, size: int):
    """The answers and the violations count after the UEP sends a result body of SIZE bytes."""
    async def main():
        uep, proc = await rig.running(TaskHeaders("t-1", "alice", "gce.results.alice.1", "f" * 64))
        def send() -> None:
            try:
                proc.say(frames.RESULT, {"task_id": "t-1", "status": "success"}, b"r" * size)
            except OSError:  # the manager refused the frame half-way and killed the UEP
                pass

        await asyncio.to_thread(send)  # a thread: the frame is larger than the socket's buffer
        await settle(lambda: rig.answers or rig.counts["violations"], timeout=10)
        proc.exit(0)
        await uep.stop()

    asyncio.run(main())
    return rig.answers, rig.counts["violations"]


def test_a_result_with_both_outputs_full_is_taken(rig):
    size = RESULT_LIMIT + 2 * OUTPUT_LIMIT + 1000  # its value, stdout, stderr and the container's lengths
    answers, violations = _answer(rig, size)
    assert violations == 0 and len(answers) == 1 and len(answers[0][1]) == size


def test_a_result_over_the_limits_with_output_is_still_a_violation(rig):
    answers, violations = _answer(rig, RESULT_LIMIT + 2 * OUTPUT_LIMIT + (64 << 10) + 1)
    assert violations == 1
