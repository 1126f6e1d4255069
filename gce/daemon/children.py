"""A user endpoint as the manager sees it: a child with a state machine (gce.daemon.states).

Its state changes only in ``transition``, which logs each change with its reason; what it does
to the OS goes through an injected gce.daemon.osproc.Os.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import Callable

from gce.config.uep import UepConfig
from gce.daemon import teardown
from gce.daemon.osproc import ChildProcess, Os, ProcessTree, RealOs
from gce.daemon.privileges import LocalUser
from gce.daemon.states import ACCEPTS_FRAMES, UepState, allowed
from gce.logfiles import tail
from gce.transport import frames

log = logging.getLogger(__name__)

MAX_QUICK_FAILURES = 3
FATAL_COOLDOWN = 60.0  # after this, the next task tries a fresh start
START_TIMEOUT = 300.0  # an engine that is not up by then is killed and counts as a failed start
EXIT_GRACE = 2.0  # seconds the channel stays open after the UEP exited, for its last frames
EXIT_WAIT = 5.0  # seconds a UEP that closed its channel has to exit before it is killed
MAX_BACKOFF = 30.0  # seconds, the longest wait before a restart
_LOUD = (UepState.BACKOFF, UepState.FATAL, UepState.COMPROMISED)


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
    def __init__(self, key: str, conf: UepConfig, log_path: Path,
                 on_frame: Callable[["UepChild", bytes, dict, bytes], None],
                 on_exit: Callable[["UepChild", str], None], *, target: LocalUser | None = None,
                 environment_file: str | None = None, os_: Os | None = None) -> None:
        self.key = key
        self.target = target  # None: run as the manager's own account, environment as today
        self.environment_file = environment_file
        self.conf = conf
        self.log_path = log_path
        self.on_frame = on_frame
        self.on_exit = on_exit
        self.os: Os = os_ if os_ is not None else RealOs()
        self.state = UepState.STOPPED
        self.proc: ChildProcess | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()
        self.failures: deque[float] = deque(maxlen=MAX_QUICK_FAILURES)
        self.reason = ""
        self.fatal_code = ""  # the error code a FATAL frame gave for the tasks, if any
        self.engine_status: dict = {}
        self.config_digest: str | None = None  # of the config it was made from (gce.daemon.freshness)
        self.python = ""
        self.in_flight: dict[str, int] = {}  # task_id -> attempts so far
        self.queued: deque[str] = deque()  # tasks for it, waiting for it to run or for room in its window
        self.window = 1  # tasks it may hold at once (gce.daemon.dispatch): its READY frame says
        self.active_at = time.monotonic()  # last time a task was given to it or answered by it
        self.started_at = 0.0
        self.fatal_at = 0.0
        self.violation = ""  # how it broke the channel protocol, once it did
        self._state_at_violation = UepState.STOPPED
        self.tree: ProcessTree | None = None
        self._reader: asyncio.Task | None = None

    def transition(self, new: UepState, reason: str) -> bool:
        """Move to state NEW because of REASON, if the transition table allows it.

        A move the table does not allow is a bug of the manager's: it is logged as an error and
        refused (the state stays), rather than raised. The callers run on the manager's loop,
        in a UEP's reader or a timer: an exception there would leave this UEP's tasks without
        an answer and its processes unreaped, which is worse than one wrong state. The tests
        make that error raise (tests/daemon/fake_os.py)."""
        old = self.state
        if not allowed(old, new):
            log.error("user endpoint %s: refused the state change %s -> %s (%s): not in the transition table",
                      self.key, old, new, reason, stack_info=True)
            return False
        self.state = new
        log.log(logging.WARNING if new in _LOUD else logging.INFO, "user endpoint %s: %s -> %s: %s",
                self.key, old, new, reason)
        return True

    def idle_for(self) -> float:
        """Seconds since this UEP last had work, 0 while it has some."""
        if self.in_flight or self.queued:
            return 0.0
        return time.monotonic() - self.active_at

    def may_retry(self) -> bool:
        return self.state is UepState.FATAL and time.time() - self.fatal_at > FATAL_COOLDOWN

    def backoff_delay(self) -> float:
        """Seconds to wait before restarting it from backoff: doubling with each quick failure."""
        return min(MAX_BACKOFF, 2.0 ** len(self.failures))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        if not self.transition(UepState.STARTING, "starting the user endpoint process"):
            return
        self.reason, self.fatal_code, self.violation = "", "", ""
        self._engine_reported({})  # a fresh engine: what the last one said no longer holds
        self.ready.clear()
        self.started_at = time.time()
        self.active_at = time.monotonic()
        marker = self.os.new_marker()
        try:
            self.proc, sock = self.os.spawn_uep(self.conf, self.log_path, self.target, self.environment_file, marker)
        except OSError as e:  # e.g. the account's groups or the interpreter are unusable
            self.reason, self.fatal_at = f"cannot start the user endpoint: {e}", time.time()
            self.transition(UepState.FATAL, self.reason)
            self.ready.set()
            self.on_exit(self, self.reason)
            return
        uid = self.target.uid if self.target is not None else os.getuid()
        # Not reaped before _reap: the pid is this process's child until then, never another's.
        proc = self.proc
        self.tree = self.os.tree_of(proc.pid, uid, marker)
        reader, self.writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 24)
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read(reader))
        # Close the channel soon after the UEP exits even if a copy of it outlives the UEP (a
        # task may take one with pidfd_getfd): the reader then sees its end, and the UEP is reaped.
        self.os.on_exit(proc, lambda: self._exited(loop, proc))
        loop.call_later(START_TIMEOUT, self._start_timed_out, proc)
        log.info("started user endpoint %s (pid %d)", self.key, proc.pid)

    def _exited(self, loop: asyncio.AbstractEventLoop, proc: ChildProcess) -> None:
        loop.call_later(EXIT_GRACE, self._close_channel, proc)

    def _close_channel(self, proc: ChildProcess) -> None:
        if self.proc is proc and self.writer is not None and self._reader is not None and not self._reader.done():
            log.warning("user endpoint %s exited but its channel is still open elsewhere: closing it", self.key)
            self.writer.close()

    def _start_timed_out(self, proc: ChildProcess) -> None:
        if self.proc is proc and self.state is UepState.STARTING and proc.poll() is None:
            log.error("user endpoint %s did not become ready within %.0f s: killing it", self.key, START_TIMEOUT)
            proc.kill()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        # The largest frame an honest UEP sends is a result (its value, and what the function printed
        # to stdout and stderr): a user's code cannot make root buffer more.
        limit = self.conf.max_result_bytes + 2 * self.conf.max_output_bytes + frames.MAX_HEADER + (64 << 10) + 9
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
            self.python = str(header.get("python", ""))
            self._engine_reported(header.get("status", {}))
            if self.state is UepState.STARTING:  # told to stop meanwhile: it stays stopping
                self.transition(UepState.RUNNING, "its engine is up")
            self.ready.set()
        elif kind == frames.FATAL:
            fatal = str(header.get("reason", ""))
            self.fatal_code = str(header.get("code") or "")
        elif kind == frames.STATUS:
            self._engine_reported(header.get("engine", {}))
        self.on_frame(self, kind, header, body)
        return fatal

    @property
    def breaker(self) -> dict | None:
        """Its engine's open breaker (its blocks kept failing: it answers every task itself), or None."""
        status = self.engine_status if isinstance(self.engine_status, dict) else {}
        breaker = status.get("breaker")
        return breaker if isinstance(breaker, dict) else None

    @property
    def blocks_failing(self) -> bool:
        """Whether its breaker is open. Its last status says so before its first BLOCKS_FAILING
        answer: a user endpoint reports its status first (gce.uep.main)."""
        return self.breaker is not None

    def _engine_reported(self, status: dict) -> None:
        """Take the engine's STATUS; say in the log once when its breaker opens and once when it closes."""
        was = self.blocks_failing
        self.engine_status = status
        breaker = self.breaker
        if breaker is not None and not was:
            reason = breaker.get("reason")
            log.warning("user endpoint %s: blocks failing, it submits no more and answers its tasks BLOCKS_FAILING: "
                        "%s", self.key, reason if isinstance(reason, str) and reason else "no reason given")
        elif breaker is None and was:
            log.info("user endpoint %s: blocks no longer failing, it submits blocks again", self.key)

    def kill_compromised(self, reason: str) -> None:
        """Treat this UEP as compromised: it broke the channel protocol (REASON says how, for the
        admin's log). It is killed now and nothing more it sends is read; the rest of its tree goes
        and its in-flight tasks are answered when it is reaped (on_exit)."""
        if self.violation or self.proc is None:
            return
        log.error("user endpoint %s broke the channel protocol: %s", self.key, reason)
        self.violation = reason
        # Not running from now on: the manager queues new tasks for its successor instead.
        before = self.state
        if self.transition(UepState.COMPROMISED, "it broke the channel protocol"):
            self._state_at_violation = before
        if self.proc.poll() is None:
            self.proc.kill()
        if self.tree is not None:
            self.tree.signal(signal.SIGKILL, marked=False)  # the rest once its batch jobs are cancelled
        if self.writer is not None:
            self.writer.close()  # the reader sees the end of the channel even if a thief holds a copy

    async def _reap(self, fatal: str) -> None:
        proc = self.proc
        assert proc is not None
        rc = await self.os.wait_exit(proc, EXIT_WAIT)
        if rc is None:  # it closed its channel but lives on: it can no longer be told to stop
            proc.kill()
            rc = await self.os.wait_exit(proc, None)
        if self.writer is not None:
            self.writer.close()
        await teardown.take_down(self)
        was = self._state_at_violation if self.state is UepState.COMPROMISED else self.state
        if was is UepState.STOPPING:
            self.transition(UepState.STOPPED, f"stopped on request (the user endpoint process {describe_exit(rc)})")
            self.ready.set()
            self.on_exit(self, "stopped")
            return
        how = describe_exit(rc)
        if self.violation:
            self.reason = "the user endpoint violated its channel protocol and was stopped"
        if was is UepState.STARTING:
            self.failures.append(time.time())
            detail = self.reason or fatal or f"it {how} before it was ready"
            last = tail(self.log_path, 8)
            self.reason = detail + (f"; last lines of {self.log_path}:\n{last}" if last and not fatal else "")
            quick = len(self.failures) == MAX_QUICK_FAILURES and self.failures[-1] - self.failures[0] < 300
            if quick or fatal:
                self.fatal_at = time.time()
                self.failures.clear()
                self.transition(UepState.FATAL, self.reason)
            else:
                self.transition(UepState.BACKOFF, self.reason)
        else:
            self.reason = self.reason or f"the user endpoint process {how}"
            self.transition(UepState.BACKOFF, self.reason)
        self.ready.set()
        self.on_exit(self, self.reason)

    def send_frame(self, kind: bytes, header: dict, body: bytes = b"") -> bool:
        """Write one frame to the UEP, if it reads its channel and was not told to stop."""
        if self.writer is None or self.writer.is_closing() or self.state not in ACCEPTS_FRAMES:
            return False
        self.writer.write(frames.encode(kind, header, body))
        return True

    async def stop(self, timeout: float = 10.0) -> None:
        """STOP, then SIGTERM, then SIGKILL the UEP and every process of its tree
        (gce.daemon.proctree); return once it is reaped and its batch jobs are cancelled."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            await self._reaped(timeout)
            if self.state in (UepState.BACKOFF, UepState.FATAL):
                self.transition(UepState.STOPPED, "stopped on request")
            return
        self.send_frame(frames.STOP, {})
        if self.state is not UepState.STOPPING:
            self.transition(UepState.STOPPING, "stopping on request")
        await self.os.wait_exit(proc, timeout * 0.6)
        tree = self.tree
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is None:
                proc.send_signal(sig)
            if tree is not None:
                tree.signal(sig, marked=False)  # the rest once its batch jobs are cancelled (teardown)
            started = time.monotonic()
            await self.os.wait_exit(proc, timeout * 0.2)
            left = timeout * 0.2 - (time.monotonic() - started)
            gone = tree is None or await self.os.wait_gone(tree, False, max(0.0, left))
            if proc.poll() is not None and gone:
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
