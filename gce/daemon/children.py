"""A user endpoint as the manager sees it: a child with a state machine.

  starting --READY--> running --exit--> backoff --start--> starting ...
  starting --FATAL/exit, N times quickly--> fatal   (tasks get the reason, no restart loop)
  any --stop()--> stopping --> stopped
  starting/running --protocol violation--> compromised --reaped--> backoff (or fatal) as after an exit
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from gce.daemon import proctree, teardown
from gce.daemon.privileges import LocalUser
from gce.daemon.spawn import spawn_uep
from gce.logfiles import tail
from gce.transport import frames

log = logging.getLogger(__name__)

MAX_QUICK_FAILURES = 3
FATAL_COOLDOWN = 60.0  # after this, the next task tries a fresh start
START_TIMEOUT = 300.0  # an engine that is not up by then is killed and counts as a failed start
EXIT_GRACE = 2.0  # seconds the channel stays open after the UEP exited, for its last frames


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class UepChild:
    def __init__(self, key: str, conf: dict, log_path: Path,
                 on_frame: Callable[["UepChild", bytes, dict, bytes], None],
                 on_exit: Callable[["UepChild", str], None], *, target: LocalUser | None = None,
                 environment_file: str | None = None) -> None:
        self.key = key
        self.target = target  # None: run as the manager's own account, environment as today
        self.environment_file = environment_file
        self.conf = conf
        self.log_path = log_path
        self.on_frame = on_frame
        self.on_exit = on_exit
        self.state = "stopped"
        self.proc: Any = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()
        self.failures: deque[float] = deque(maxlen=MAX_QUICK_FAILURES)
        self.reason = ""
        self.fatal_code = ""  # the error code a FATAL frame gave for the tasks, if any
        self.engine_status: dict = {}
        self.python = ""
        self.in_flight: dict[str, int] = {}  # task_id -> attempts so far
        self.queued: list[str] = []  # tasks waiting for this UEP to be running
        self.active_at = time.monotonic()  # last time a task was given to it or answered by it
        self.started_at = 0.0
        self.fatal_at = 0.0
        self.violation = ""  # how it broke the channel protocol, once it did
        self._state_at_violation = ""
        self.tree: proctree.Tree | None = None
        self._reader: asyncio.Task | None = None

    def idle_for(self) -> float:
        """Seconds since this UEP last had work, 0 while it has some."""
        if self.in_flight or self.queued:
            return 0.0
        return time.monotonic() - self.active_at

    def may_retry(self) -> bool:
        return self.state == "fatal" and time.time() - self.fatal_at > FATAL_COOLDOWN

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        self.state, self.reason, self.fatal_code, self.violation = "starting", "", "", ""
        self.ready.clear()
        self.started_at = time.time()
        self.active_at = time.monotonic()
        marker = proctree.new_marker()
        try:
            self.proc, sock = spawn_uep(self.conf, self.log_path, self.target, self.environment_file, marker)
        except OSError as e:  # e.g. the account's groups or the interpreter are unusable
            self.state, self.reason, self.fatal_at = "fatal", f"cannot start the user endpoint: {e}", time.time()
            log.error("user endpoint %s: %s", self.key, self.reason)
            self.ready.set()
            self.on_exit(self, self.reason)
            return
        uid = self.target.uid if self.target is not None else os.getuid()
        # Not reaped before _reap: the pid is this process's child until then, never another's.
        self.tree = proctree.Tree.of(self.proc.pid, uid, marker) or proctree.Tree(self.proc.pid, uid, 0, marker)
        reader, self.writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 24)
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read(reader))
        proc = self.proc
        self._watch_exit(loop, proc)
        loop.call_later(START_TIMEOUT, self._start_timed_out, proc)
        log.info("started user endpoint %s (pid %d)", self.key, self.proc.pid)

    def _watch_exit(self, loop: asyncio.AbstractEventLoop, proc: Any) -> None:
        """Close the channel soon after the UEP exits even if a copy of it outlives the UEP (a task
        may take one with pidfd_getfd): the reader then sees its end, and the UEP is reaped."""
        try:
            fd = os.pidfd_open(proc.pid)
        except (OSError, AttributeError):  # no pidfds (Linux < 5.3): the channel's end alone tells
            return

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            loop.call_later(EXIT_GRACE, self._close_channel, proc)

        loop.add_reader(fd, exited)

    def _close_channel(self, proc: Any) -> None:
        if self.proc is proc and self.writer is not None and self._reader is not None and not self._reader.done():
            log.warning("user endpoint %s exited but its channel is still open elsewhere: closing it", self.key)
            self.writer.close()

    def _start_timed_out(self, proc: Any) -> None:
        if self.proc is proc and self.state == "starting" and proc.poll() is None:
            log.error("user endpoint %s did not become ready within %.0f s: killing it", self.key, START_TIMEOUT)
            proc.kill()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        # The largest frame an honest UEP sends is a result: a user's code cannot make root buffer more.
        limit = int(self.conf.get("max_result_bytes") or 0) + frames.MAX_HEADER + (64 << 10) + 9
        decoder = frames.Decoder(max_frame=min(limit, frames.MAX_FRAME))
        fatal = ""
        while not self.violation:
            try:
                data = await reader.read(1 << 20)
            except ConnectionError as e:
                log.warning("user endpoint %s channel error: %s", self.key, e)
                break
            if not data:
                break
            try:
                for kind, header, body in decoder.feed(data):
                    fatal = self._frame(kind, header, body) or fatal
                    if self.violation:  # nothing more it sends is taken
                        break
            except Exception as e:  # whatever a frame made us raise: it no longer speaks the protocol
                self.kill_compromised(f"{type(e).__name__}: {e}"[:500])
        await self._reap(fatal)

    def _frame(self, kind: bytes, header: dict, body: bytes) -> str:
        """Take one frame; the reason a FATAL frame gives, else ""."""
        fatal = ""
        if kind == frames.READY:
            self.state, self.python = "running", str(header.get("python", ""))
            self.engine_status = header.get("status", {})
            self.ready.set()
        elif kind == frames.FATAL:
            fatal = str(header.get("reason", ""))
            self.fatal_code = str(header.get("code") or "")
        elif kind == frames.STATUS:
            self.engine_status = header.get("engine", {})
        self.on_frame(self, kind, header, body)
        return fatal

    def kill_compromised(self, reason: str) -> None:
        """Treat this UEP as compromised: it broke the channel protocol (REASON says how, for the
        admin's log). It is killed now and nothing more it sends is read; the rest of its tree goes
        and its in-flight tasks are answered when it is reaped (on_exit)."""
        if self.violation or self.proc is None:
            return
        log.error("user endpoint %s broke the channel protocol: %s", self.key, reason)
        self.violation = reason
        # Not "running" from now on: the manager queues new tasks for its successor instead.
        self._state_at_violation, self.state = self.state, "compromised"
        if self.proc.poll() is None:
            self.proc.kill()
        if self.tree is not None:
            self.tree.signal(signal.SIGKILL, marked=False)  # the rest once its batch jobs are cancelled
        if self.writer is not None:
            self.writer.close()  # the reader sees the end of the channel even if a thief holds a copy

    async def _reap(self, fatal: str) -> None:
        proc = self.proc
        rc = None
        for _ in range(100):
            rc = proc.poll()
            if rc is not None:
                break
            await asyncio.sleep(0.05)
        if rc is None:  # it closed its channel but lives on: it can no longer be told to stop
            proc.kill()
            rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        if self.writer is not None:
            self.writer.close()
        await teardown.take_down(self)
        if self.state == "compromised":
            self.state = self._state_at_violation
        if self.state == "stopping":
            self.state = "stopped"
            self.ready.set()
            self.on_exit(self, "stopped")
            return
        how = describe_exit(rc)
        if self.violation:
            self.reason = "the user endpoint violated its channel protocol and was stopped"
        if self.state == "starting":
            self.failures.append(time.time())
            detail = self.reason or fatal or f"it {how} before it was ready"
            last = tail(self.log_path, 8)
            self.reason = detail + (f"; last lines of {self.log_path}:\n{last}" if last and not fatal else "")
            quick = len(self.failures) == MAX_QUICK_FAILURES and self.failures[-1] - self.failures[0] < 300
            self.state = "fatal" if (quick or fatal) else "backoff"
            if self.state == "fatal":
                self.fatal_at = time.time()
                self.failures.clear()
        else:
            self.reason = self.reason or f"the user endpoint process {how}"
            self.state = "backoff"
        log.warning("user endpoint %s: %s", self.key, self.reason)
        self.ready.set()
        self.on_exit(self, self.reason)

    def send(self, kind: bytes, header: dict, body: bytes = b"") -> bool:
        if self.writer is None or self.writer.is_closing() or self.state not in ("starting", "running"):
            return False
        self.writer.write(frames.encode(kind, header, body))
        return True

    async def stop(self, timeout: float = 10.0) -> None:
        """STOP, then SIGTERM, then SIGKILL the UEP and every process of its tree
        (gce.daemon.proctree); return once it is reaped and its batch jobs are cancelled."""
        if self.proc is None or self.proc.poll() is not None:
            await self._reaped(timeout)
            self.state = "stopped"
            return
        self.send(frames.STOP, {})
        self.state = "stopping"
        deadline = time.monotonic() + timeout * 0.6
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        tree = self.tree
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            if tree is not None:
                tree.signal(sig, marked=False)  # the rest once its batch jobs are cancelled (teardown)
            gone_by = time.monotonic() + timeout * 0.2
            while time.monotonic() < gone_by and (self.proc.poll() is None or (tree and tree.members(False))):
                await asyncio.sleep(0.05)
            if self.proc.poll() is not None and not (tree and tree.members(False)):
                break
        await self._reaped(timeout)

    async def _reaped(self, timeout: float) -> None:
        """Wait for the reader to have reaped the UEP (tree killed, batch jobs cancelled)."""
        reader = self._reader
        if reader is None or reader.done():
            return
        limit = timeout + teardown.CANCEL_TIMEOUT
        try:
            await asyncio.wait_for(asyncio.shield(reader), limit)
        except asyncio.TimeoutError:
            log.error("user endpoint %s: not reaped within %.0f s of its stop", self.key, limit)
