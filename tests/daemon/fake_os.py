"""A fake operating system for a user endpoint's lifecycle (gce.daemon.osproc.Os), after
supervisor's tests/base.py: no processes, only what the lifecycle asked of the OS and what the
test makes the "process" do. The channel is a real socketpair: the test speaks the UEP's end.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path
from typing import Any, Callable

from gce.transport import frames


class FakeProcess:
    """A started process that does nothing until the test (or a signal) makes it exit."""

    def __init__(self, pid: int, channel: socket.socket | None, exits_on: tuple[int, ...]) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.channel = channel  # the UEP's end
        self.exits_on = exits_on  # the signals it dies of
        self._callbacks: list[Callable[[], None]] = []
        self._exited: asyncio.Event | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig in self.exits_on:
            self.exit(-sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def exit(self, returncode: int) -> None:
        """It exits: its end of the channel closes, whoever watches it learns of it."""
        if self.returncode is not None:
            return
        self.returncode = returncode
        if self.channel is not None:
            self.channel.close()
        for callback in self._callbacks:
            callback()
        self._exited_event().set()

    def say(self, kind: bytes, header: dict, body: bytes = b"") -> None:
        self.write(frames.encode(kind, header, body))

    def write(self, data: bytes) -> None:
        assert self.channel is not None
        self.channel.sendall(data)

    def heard(self) -> list[tuple[bytes, dict]]:
        """The frames the manager sent it so far."""
        assert self.channel is not None
        self.channel.setblocking(False)
        data = b""
        try:
            while chunk := self.channel.recv(1 << 16):
                data += chunk
        except BlockingIOError:
            pass
        return [(kind, header) for kind, header, _body in frames.Decoder().feed(data)]

    def _exited_event(self) -> asyncio.Event:
        if self._exited is None:
            self._exited = asyncio.Event()
        return self._exited


class FakeTree:
    def __init__(self, uid: int, members: list[int]) -> None:
        self.uid = uid
        self.alive = members
        self.signals: list[tuple[int, bool]] = []

    def members(self, marked: bool = True) -> list[int]:
        return list(self.alive)

    def signal(self, sig: int, marked: bool = True) -> int:
        self.signals.append((sig, marked))
        killed, self.alive = len(self.alive), []
        return killed


class FakeOs:
    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.trees: list[FakeTree] = []
        self.spawn_error: OSError | None = None
        self.exits_on: tuple[int, ...] = (signal.SIGTERM, signal.SIGKILL)
        self.leftovers: list[int] = []  # the pids the next tree has besides its UEP
        self.block_cancels: list[dict[str, Any]] = []

    def new_marker(self) -> str:
        return f"marker-{len(self.processes)}"

    def spawn_uep(self, conf: Any, log_path: Path, target: Any, environment_file: str | None,
                  marker: str) -> tuple[FakeProcess, socket.socket]:
        if self.spawn_error is not None:
            raise self.spawn_error
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        proc = FakeProcess(1000 + len(self.processes), theirs, self.exits_on)
        self.processes.append(proc)
        return proc, mine

    def spawn_block_cancel(self, conf: dict[str, Any], log_path: Path, target: Any, environment_file: str | None,
                           marker: str) -> FakeProcess:
        self.block_cancels.append(conf)
        proc = FakeProcess(2000 + len(self.block_cancels), None, self.exits_on)
        proc.exit(0)
        return proc

    def tree_of(self, pid: int, uid: int, marker: str) -> FakeTree:
        tree = FakeTree(uid, [pid, *self.leftovers])
        self.trees.append(tree)
        return tree

    def on_exit(self, proc: FakeProcess, callback: Callable[[], None]) -> Callable[[], None]:
        if proc.returncode is not None:
            handle = asyncio.get_running_loop().call_soon(callback)
            return handle.cancel
        proc._callbacks.append(callback)
        return lambda: callback in proc._callbacks and proc._callbacks.remove(callback)  # type: ignore[func-returns-value]

    async def wait_exit(self, proc: FakeProcess, timeout: float | None) -> int | None:
        try:
            await asyncio.wait_for(proc._exited_event().wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return proc.returncode

    async def wait_gone(self, tree: FakeTree, marked: bool, timeout: float) -> bool:
        return not tree.members(marked)


class _Refusals(logging.Handler):
    """Makes a refused state change raise where it happens, as its error is logged."""

    def emit(self, record: logging.LogRecord) -> None:
        if "refused the state change" in record.getMessage():
            raise AssertionError(record.getMessage())


def raise_on_refused_transitions() -> Callable[[], None]:
    """Install the handler on gce.daemon.children's logger; returns what removes it."""
    handler = _Refusals(logging.ERROR)
    logger = logging.getLogger("gce.daemon.children")
    logger.addHandler(handler)
    return lambda: logger.removeHandler(handler)
