"""Liveness: a lock held by the live manager plus a state file (pid, start time, host).

Liveness is never judged from a pid alone (STYLE.md 11): the manager holds an exclusive
``flock`` on ``manager.lock`` for its whole life, so a crashed manager's lock is gone
with it, and the state file says why it stopped when it stopped on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from gce.config.paths import EndpointPaths, unreadable
from gce.errors import AlreadyRunning


# A manager refreshes its state file at least this often while it runs (refresh_state), so a
# manager on another host sharing this directory is told apart from a dead one even where
# the file system does not share locks between hosts.
REFRESH_SECONDS = 30.0
STALE_AFTER_SECONDS = 3 * REFRESH_SECONDS


@dataclass(frozen=True)
class Liveness:
    state: str  # "running", "stopped" or "failed"
    pid: int | None = None
    host: str = ""
    reason: str = ""
    started_at: float | None = None


def process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def acquire_lock(paths: EndpointPaths) -> int:
    """Take the endpoint's lock for this process's lifetime; raise AlreadyRunning if held."""
    paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        st = read_state(paths) or {}
        raise AlreadyRunning(
            f"endpoint {paths.name!r} is already running",
            f"its manager (pid {st.get('pid')}{_on_host(st)}) holds {paths.lock_file}",
            hint=f"gce status {paths.name}, or gce stop {paths.name}",
        ) from None
    other = running_elsewhere(paths)
    if other is not None:
        os.close(fd)
        raise AlreadyRunning(
            f"endpoint {paths.name!r} is running on host {other.get('host')}",
            f"its manager (pid {other.get('pid')}) updated {paths.state_file} "
            f"{time.time() - float(other.get('updated_at', 0)):.0f} s ago and this directory is shared",
            hint=f"stop it on {other.get('host')} first (gce stop {paths.name} there)",
        )
    return fd


def _on_host(st: dict[str, Any]) -> str:
    host = st.get("host")
    return f" on host {host}" if host and host != socket.gethostname() else ""


def running_elsewhere(paths: EndpointPaths) -> dict[str, Any] | None:
    """The state of a live manager on another host sharing this directory, if there is one."""
    st = read_state(paths) or {}
    host = st.get("host")
    try:
        fresh = time.time() - float(st.get("updated_at", 0)) < STALE_AFTER_SECONDS
    except (TypeError, ValueError):
        fresh = False
    if st.get("state") == "running" and host and host != socket.gethostname() and fresh:
        return st
    return None


def refresh_state(paths: EndpointPaths) -> None:
    """Re-stamp a running manager's state file (see REFRESH_SECONDS)."""
    st = read_state(paths)
    if st is None or st.get("pid") != os.getpid():
        return
    extra = {k: v for k, v in st.items() if k not in ("state", "reason", "pid", "pid_start_time", "host", "updated_at")}
    write_state(paths, st.get("state", "running"), st.get("reason", ""), **extra)


def lock_is_held(paths: EndpointPaths) -> bool:
    try:
        fd = os.open(paths.lock_file, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except PermissionError:  # whether it runs cannot be told by this user: say why, as a GceError
        raise unreadable(paths, paths.lock_file) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_state(paths: EndpointPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.state_file.read_text())
        return data if isinstance(data, dict) else None
    except (FileNotFoundError, ValueError, OSError):
        return None


def write_state(paths: EndpointPaths, state: str, reason: str = "", **extra: Any) -> None:
    """Atomically record the manager's state (only the manager calls this)."""
    pid = os.getpid()
    data = {
        "state": state,
        "reason": reason,
        "pid": pid,
        "pid_start_time": process_start_time(pid),
        "host": socket.gethostname(),
        "updated_at": time.time(),
        **extra,
    }
    tmp = paths.state_file.with_name(paths.state_file.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # its reason may name users and why they were refused
            json.dump(data, f)
        os.replace(tmp, paths.state_file)
    except OSError as e:
        # A full or read-only disk must not stop the manager (DESIGN.md: resource exhaustion is a
        # state, not a crash); the lock still tells whether it runs, only this reason is lost.
        logging.getLogger(__name__).warning("cannot write %s: %s", paths.state_file, e.strerror or e)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def probe(paths: EndpointPaths) -> Liveness:
    """Tell whether the endpoint's manager runs, from its lock; say why not from its state file."""
    st = read_state(paths) or {}
    pid = st.get("pid")
    host = st.get("host", "")
    started = st.get("started_at")
    if lock_is_held(paths):
        return Liveness("running", pid, host, "", started)
    if running_elsewhere(paths) is not None:
        return Liveness("running", pid, host, f"on host {host}; its control socket is only reachable there", started)
    recorded = st.get("state")
    if recorded is None or recorded == "stopped":
        return Liveness("stopped", None, host, st.get("reason", ""), None)
    if recorded == "failed":
        return Liveness("failed", None, host, st.get("reason") or "the manager failed", None)
    if host and host != socket.gethostname():
        return Liveness("failed", pid, host, f"last seen on host {host} more than {STALE_AFTER_SECONDS:.0f} s ago; "
                        "no manager holds the lock from here")
    return Liveness(
        "failed", None, host, f"the manager (pid {pid}) exited without shutting down (killed, or it crashed); see its log"
    )
