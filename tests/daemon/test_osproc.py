"""The real OS seam, for real: an exit is learnt from its pidfd as it happens (no polling), the
process is reaped then, and a timeout leaves a running process alone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

from gce.daemon import osproc, proctree
from gce.daemon.osproc import RealOs


def test_wait_exit_returns_as_the_process_exits_and_reaps_it():
    async def main():
        proc = subprocess.Popen(["sleep", "0.3"])
        started = time.monotonic()
        rc = await RealOs().wait_exit(proc, 10)
        return rc, time.monotonic() - started, proc

    rc, took, proc = asyncio.run(main())
    assert rc == 0 and proc.returncode == 0
    # on its exit, not at the 10 s time limit (the slack is for a loaded machine)
    assert 0.25 < took < 5
    assert not os.path.exists(f"/proc/{proc.pid}") or open(f"/proc/{proc.pid}/stat").read().split()[2] != "Z"


def test_wait_exit_times_out_on_a_running_process_and_leaves_it_running():
    async def main():
        proc = subprocess.Popen(["sleep", "30"])
        try:
            assert await RealOs().wait_exit(proc, 0.1) is None
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert await RealOs().wait_exit(proc, 5) == -signal.SIGTERM
        finally:
            proc.kill()
            proc.wait()

    asyncio.run(main())


def test_on_exit_calls_back_without_reaping_so_the_pid_stays_ours():
    async def main():
        proc = subprocess.Popen(["sleep", "0.1"])
        exited = asyncio.Event()
        RealOs().on_exit(proc, exited.set)
        await asyncio.wait_for(exited.wait(), 5)
        assert open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0] == "Z"  # exited, not yet reaped
        assert proc.returncode is None
        assert await RealOs().wait_exit(proc, 1) == 0

    asyncio.run(main())


def test_wait_gone_sees_a_whole_session_go():
    async def main():
        marker = proctree.new_marker()
        proc = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True,
                                env={**os.environ, proctree.MARKER: marker})
        real = RealOs()
        tree = real.tree_of(proc.pid, os.getuid(), marker)
        try:
            deadline = time.monotonic() + 5
            while len(tree.members(False)) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert not await real.wait_gone(tree, False, 0.1)
            tree.signal(signal.SIGKILL, marked=False)
            assert await real.wait_gone(tree, False, 5)
            assert await real.wait_exit(proc, 5) == -signal.SIGKILL
        finally:
            tree.signal(signal.SIGKILL)
            proc.kill()
            proc.wait()

    asyncio.run(main())


def test_without_pidfds_an_exit_is_learnt_by_a_slow_look():
    """Linux < 5.3 has no pidfd_open: the loop looks every FALLBACK_PERIOD seconds instead."""
    async def main():
        loop = asyncio.get_running_loop()
        proc = subprocess.Popen(["sleep", "0.1"])
        learnt = asyncio.Event()
        started = loop.time()
        osproc._poll_until(loop, lambda: osproc._exited(proc), learnt.set)
        await asyncio.wait_for(learnt.wait(), 5)
        took = loop.time() - started
        assert proc.returncode is None  # learnt without reaping it
        assert await RealOs().wait_exit(proc, 1) == 0
        cancel = osproc._poll_until(loop, lambda: False, learnt.clear)
        cancel()  # a cancelled look never calls back
        await asyncio.sleep(osproc.FALLBACK_PERIOD * 2)
        assert learnt.is_set()
        return took

    assert 0.1 <= asyncio.run(main()) < 1.0
