"""What a user endpoint's lifecycle does to the operating system, behind one small interface.

gce.daemon.children drives a UEP through its states; everything it asks of the OS (start a
process, signal it, learn that it exited and reap it, find and kill the processes it left)
goes through an ``Os``. ``RealOs`` is the one the manager runs with; the tests drive the same
lifecycle with a fake one (tests/daemon/fake_os.py), as supervisor's tests do, without
processes, and prove it once more with real ones.

Exits are learnt from a pidfd (readable once the process has exited, pidfd_open(2), Linux 5.3+)
on the manager's loop, then reaped with a non-blocking waitpid: no polling. Without pidfds the
loop looks every FALLBACK_PERIOD seconds instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any, Callable, Protocol

from gce.config.uep import UepConfig
from gce.daemon import proctree
from gce.daemon.privileges import LocalUser

FALLBACK_PERIOD = 0.25  # seconds between looks at a process when the kernel has no pidfds


class ChildProcess(Protocol):
    """A started process (subprocess.Popen is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None:
        """Reap it if it has exited (never blocks): its exit status, else None."""

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class ProcessTree(Protocol):
    """The processes a UEP started (gce.daemon.proctree.Tree is one)."""

    @property
    def uid(self) -> int: ...

    def members(self, marked: bool = True) -> list[int]: ...

    def signal(self, sig: int, marked: bool = True) -> int: ...


class Os(Protocol):
    def new_marker(self) -> str: ...

    def spawn_uep(self, conf: UepConfig, log_path: Path, target: LocalUser | None,
                  environment_file: str | None, marker: str) -> tuple[ChildProcess, socket.socket]: ...

    def spawn_block_cancel(self, conf: dict[str, Any], log_path: Path, target: LocalUser | None,
                           environment_file: str | None, marker: str) -> ChildProcess: ...

    def tree_of(self, pid: int, uid: int, marker: str) -> ProcessTree:
        """The tree of the just started, not yet reaped child PID, running as UID."""

    def on_exit(self, proc: ChildProcess, callback: Callable[[], None]) -> Callable[[], None]:
        """Call CALLBACK on the loop once PROC has exited (without reaping it); returns a
        function that cancels this."""

    async def wait_exit(self, proc: ChildProcess, timeout: float | None) -> int | None:
        """Wait (at most TIMEOUT seconds, None: for ever) for PROC to exit, reap it and return
        its exit status; None if it still runs after TIMEOUT."""

    async def wait_gone(self, tree: ProcessTree, marked: bool, timeout: float) -> bool:
        """Wait (at most TIMEOUT seconds) until TREE has no live members; whether it has none."""


class RealOs:
    """The operating system itself: subprocess, pidfds, /proc."""

    def new_marker(self) -> str:
        return proctree.new_marker()

    def spawn_uep(self, conf: UepConfig, log_path: Path, target: LocalUser | None,
                  environment_file: str | None, marker: str) -> tuple[ChildProcess, socket.socket]:
        from gce.daemon.spawn import spawn_uep

        return spawn_uep(conf, log_path, target, environment_file, marker)

    def spawn_block_cancel(self, conf: dict[str, Any], log_path: Path, target: LocalUser | None,
                           environment_file: str | None, marker: str) -> ChildProcess:
        from gce.daemon.spawn import spawn_block_cancel

        return spawn_block_cancel(conf, log_path, target, environment_file, marker)

    def tree_of(self, pid: int, uid: int, marker: str) -> ProcessTree:
        # Gone already (it failed at once): its session id is still its pid until it is reaped.
        return proctree.Tree.of(pid, uid, marker) or proctree.Tree(pid, uid, 0, marker)

    def on_exit(self, proc: ChildProcess, callback: Callable[[], None]) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        if proc.returncode is not None:  # reaped: its pid may be another process's by now
            handle = loop.call_soon(callback)
            return handle.cancel
        return _when_gone(loop, proc.pid, callback, lambda: _exited(proc))

    async def wait_exit(self, proc: ChildProcess, timeout: float | None) -> int | None:
        if proc.poll() is not None:
            return proc.returncode
        exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        cancel = self.on_exit(proc, _resolver(exited))
        try:
            await asyncio.wait_for(exited, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            cancel()
        return proc.poll()

    async def wait_gone(self, tree: ProcessTree, marked: bool, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            members = tree.members(marked)
            left = deadline - loop.time()
            if not members or left <= 0:
                return not members
            # Wait for these to go; what they forked meanwhile is found on the next look.
            futures: list[asyncio.Future[None]] = []
            cancels = []
            for pid in members:
                gone: asyncio.Future[None] = loop.create_future()
                futures.append(gone)
                cancels.append(_when_gone(loop, pid, _resolver(gone), _not_alive(pid)))
            try:
                await asyncio.wait_for(asyncio.gather(*futures), left)
            except asyncio.TimeoutError:
                pass
            finally:
                for cancel in cancels:
                    cancel()


def _resolver(future: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)
    return resolve


def _not_alive(pid: int) -> Callable[[], bool]:
    return lambda: not _alive(pid)


def _exited(proc: ChildProcess) -> bool:
    """Whether child PROC has exited, leaving it unreaped (its pid stays its own till _reap)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return False
    return text[text.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def _when_gone(loop: asyncio.AbstractEventLoop, pid: int, callback: Callable[[], None],
               gone: Callable[[], bool]) -> Callable[[], None]:
    """Call CALLBACK once process PID has exited: its pidfd becomes readable then. Without pidfds
    (Linux < 5.3), GONE() is asked every FALLBACK_PERIOD seconds instead."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        handle = loop.call_soon(callback)
        return handle.cancel
    except (OSError, AttributeError):
        return _poll_until(loop, gone, callback)
    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            loop.remove_reader(fd)
            os.close(fd)

    def readable() -> None:
        close()
        callback()

    loop.add_reader(fd, readable)
    return close


def _poll_until(loop: asyncio.AbstractEventLoop, gone: Callable[[], bool],
                callback: Callable[[], None]) -> Callable[[], None]:
    handle: asyncio.Handle | None = None

    def look() -> None:
        nonlocal handle
        if gone():
            callback()
        else:
            handle = loop.call_later(FALLBACK_PERIOD, look)

    handle = loop.call_soon(look)

    def cancel() -> None:
        if handle is not None:
            handle.cancel()

    return cancel
