"""A user endpoint that breaks the channel protocol is stopped as compromised, and costs nobody else.

The frames come from inside a real user endpoint: a ThreadPoolEngine runs the task in the UEP's
own process, where the task finds the channel's fd and writes what no honest UEP sends (what a
user's code could do there, or with pidfd_getfd from a worker). The manager must not lose its
reader over it, nor leave the UEP running unread: it logs the violation, kills the UEP, answers
the task, and serves the next one from a fresh UEP.
"""

from __future__ import annotations

import struct

import psutil
import pytest

from gce.daemon import control
from gce.sdk import TaskFailed
from gce.transport import frames
from tests.endpoint import wait_until

pytestmark = pytest.mark.broker


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def send_on_the_channel(frame: bytes):
    """Write FRAME on the UEP's channel to its manager, then wait to be killed."""
    import os
    import time

    argv = open("/proc/self/cmdline", "rb").read().split(b"\0")
    os.write(int(argv[argv.index(b"--fd") + 1]), frame)
    time.sleep(60)


def square(x):
    return x * x


def deep(levels: int) -> bytes:
    header = b"[" * levels + b"]" * levels
    return struct.pack("!IcI", 5 + len(header), frames.STATUS, len(header)) + header


HOSTILE = {
    "a length below the minimum": struct.pack("!IcI", 3, frames.STATUS, 0),
    "a header that is not an object": frames.encode(frames.STATUS, [1]),  # type: ignore[arg-type]
    "a header nested 100,000 deep": deep(100_000),
    "a frame announcing a gigabyte": struct.pack("!IcI", 1 << 30, frames.RESULT, 2) + b"{}",
    "a result with fields no result has": frames.encode(frames.RESULT, {"task_id": "x", "bogus": 1}),
}


def test_a_user_endpoint_breaking_the_protocol_is_stopped_and_the_next_task_runs(make_endpoint):
    ep = make_endpoint(engine="thread", limits={"task_attempts": 1})
    ep.start()
    with ep.executor() as ex:
        for what, frame in HOSTILE.items():
            [uep] = control.request(ep.paths, "status")["user_endpoints"]
            with pytest.raises(TaskFailed) as e:
                ex.submit(send_on_the_channel, frame).result(timeout=30)
            assert "channel protocol" in str(e.value), what
            assert e.value.code in ("WORKER_LOST", "ENDPOINT_FAILED"), what
            # The answer may come before the kill lands (a RESULT-frame violation answers at once).
            wait_until(lambda: gone(uep["pid"]), timeout=10)
            assert ex.submit(square, 5).result(timeout=30) == 25, what
    log = ep.log()
    assert log.count("user endpoint default broke the channel protocol: ") == len(HOSTILE)
    assert "FrameError: bad frame length 1073741824" in log
    assert control.request(ep.paths, "status")["state"] == "running"
