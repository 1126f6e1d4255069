"""A user endpoint as the manager sees it: a child with a state machine.

  starting --READY--> running --exit--> backoff --start--> starting ...
  starting --FATAL/exit, N times quickly--> fatal   (tasks get the reason, no restart loop)
  any --stop()--> stopping --> stopped
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

from gce.daemon.privileges import LocalUser
from gce.daemon.spawn import spawn_uep
from gce.transport import frames

log = logging.getLogger(__name__)

MAX_QUICK_FAILURES = 3
FATAL_COOLDOWN = 60.0  # after this, the next task tries a fresh start
START_TIMEOUT = 300.0  # an engine that is not up by then is killed and counts as a failed start


def tail(path: Path, lines: int = 10) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


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
        self.state, self.reason, self.fatal_code = "starting", "", ""
        self.ready.clear()
        self.started_at = time.time()
        self.active_at = time.monotonic()
        try:
            self.proc, sock = spawn_uep(self.conf, self.log_path, self.target, self.environment_file)
        except OSError as e:  # e.g. the account's groups or the interpreter are unusable
            self.state, self.reason, self.fatal_at = "fatal", f"cannot start the user endpoint: {e}", time.time()
            log.error("user endpoint %s: %s", self.key, self.reason)
            self.ready.set()
            self.on_exit(self, self.reason)
            return
        reader, self.writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 24)
        loop = asyncio.get_running_loop()
        loop.create_task(self._read(reader))
        proc = self.proc
        loop.call_later(START_TIMEOUT, self._start_timed_out, proc)
        log.info("started user endpoint %s (pid %d)", self.key, self.proc.pid)

    def _start_timed_out(self, proc: Any) -> None:
        if self.proc is proc and self.state == "starting" and proc.poll() is None:
            log.error("user endpoint %s did not become ready within %.0f s: killing it", self.key, START_TIMEOUT)
            proc.kill()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = frames.Decoder()
        fatal = ""
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    break
                for kind, header, body in decoder.feed(data):
                    if kind == frames.READY:
                        self.state, self.python = "running", header.get("python", "")
                        self.engine_status = header.get("status", {})
                        self.ready.set()
                    elif kind == frames.FATAL:
                        fatal = header.get("reason", "")
                        self.fatal_code = str(header.get("code") or "")
                    elif kind == frames.STATUS:
                        self.engine_status = header.get("engine", {})
                    self.on_frame(self, kind, header, body)
        except (ConnectionError, frames.FrameError) as e:
            log.warning("user endpoint %s channel error: %s", self.key, e)
        await self._reap(fatal)

    async def _reap(self, fatal: str) -> None:
        proc = self.proc
        rc = None
        for _ in range(100):
            rc = proc.poll()
            if rc is not None:
                break
            await asyncio.sleep(0.05)
        if self.writer is not None:
            self.writer.close()
        if self.state == "stopping":
            self.state = "stopped"
            self.ready.set()
            self.on_exit(self, "stopped")
            return
        how = describe_exit(rc)
        if self.state == "starting":
            self.failures.append(time.time())
            detail = fatal or f"it {how} before it was ready"
            last = tail(self.log_path, 8)
            self.reason = detail + (f"; last lines of {self.log_path}:\n{last}" if last and not fatal else "")
            quick = len(self.failures) == MAX_QUICK_FAILURES and self.failures[-1] - self.failures[0] < 300
            self.state = "fatal" if (quick or fatal) else "backoff"
            if self.state == "fatal":
                self.fatal_at = time.time()
                self.failures.clear()
        else:
            self.reason = f"the user endpoint process {how}"
            self.state = "backoff"
        log.warning("user endpoint %s: %s", self.key, self.reason)
        self.ready.set()
        self.on_exit(self, self.reason)

    def send(self, kind: bytes, header: dict, body: bytes = b"") -> bool:
        if self.writer is None or self.writer.is_closing() or self.state not in ("starting", "running"):
            return False
        self.writer.write(frames.encode(kind, header, body))
        return True

    def descendants(self) -> list:
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except Exception:
            return []

    async def stop(self, timeout: float = 10.0) -> None:
        """STOP, then SIGTERM, then SIGKILL the UEP, every process below it and its process group.

        A process a task double-forked has left the tree (its parent exited, init adopted it)
        but not the group: the UEP leads its own session and group (start_new_session), and
        only setsid or setpgid takes a process out of it.
        """
        if self.proc is None or self.proc.poll() is not None:
            self.state = "stopped"
            return
        group = self.proc.pid
        tree = self.descendants()
        self.send(frames.STOP, {})
        self.state = "stopping"
        deadline = time.monotonic() + timeout * 0.6
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        procs = {p.pid: p for p in tree + self.descendants() + _group_members(group)}.values()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is None:
                os.kill(self.proc.pid, sig)
            _killpg(group, sig)
            for p in procs:
                _signal(p, sig)
            gone_by = time.monotonic() + timeout * 0.2
            while time.monotonic() < gone_by and (self.proc.poll() is None or any(map(_alive, procs))):
                await asyncio.sleep(0.05)
            if self.proc.poll() is not None and not any(map(_alive, procs)):
                break
        # Whatever joined the group after we looked. The group's number is not reused while any
        # member lives, and a free one only after the kernel's pids wrap around.
        _killpg(group, signal.SIGKILL)
        self.proc.wait(timeout=1)


def _alive(p: Any) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(pgid: int) -> list:
    import psutil

    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                members.append(p)
        except (OSError, psutil.Error):
            continue
    return members


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(p: Any, sig: int) -> None:
    import psutil

    try:
        p.send_signal(sig)
    except psutil.Error:
        pass
