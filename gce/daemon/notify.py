"""sd_notify(3) without libsystemd: tell systemd we are ready, how we are doing, and alive.

The protocol is one datagram per message, ``KEY=value`` lines, sent to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a path, or an abstract name when it starts with '@').
``$WATCHDOG_USEC`` asks for ``WATCHDOG=1`` at least that often (systemd advises every
half interval), for us only when ``$WATCHDOG_PID`` is unset or ours.
Source: sd_notify(3), sd_watchdog_enabled(3), systemd.service(5) ``WatchdogSec=``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from gce.daemon.status import EndpointStatus

_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends notifications to the service manager; does nothing when none asked for them."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        # Only path and abstract sockets: systemd's vsock addresses are for VMs, not for us.
        self.address = "\0" + address[1:] if address.startswith("@") else address if address.startswith("/") else ""
        self.watchdog_usec = 0
        pid = environ.get("WATCHDOG_PID", "")
        if not pid or pid == str(os.getpid()):
            try:
                self.watchdog_usec = max(0, int(environ.get("WATCHDOG_USEC", "0")))
            except ValueError:
                pass
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls) -> Notifier:
        """A notifier for this process; the variables leave the environment, so that no child
        process (a user endpoint, a worker) talks to systemd in our name."""
        notifier = cls(os.environ)
        for key in _ENV:
            os.environ.pop(key, None)
        return notifier

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two WATCHDOG=1 pings, or None if no watchdog is armed."""
        if not self.enabled or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2e6

    def send(self, **fields: Any) -> bool:
        """Send KEY=value lines (READY=1, STATUS=...); False if nobody listens or it failed."""
        if not self.enabled:
            return False
        lines = [f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items()]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError:
            return False  # like sd_notify: a missing listener must never stop the daemon

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def journal_stderr(environ: Mapping[str, str]) -> bool:
    """Whether our stderr is connected to the journal: ``$JOURNAL_STREAM`` is "device:inode"
    of the stream systemd connected, and it counts only if stderr is still that stream
    (a process started from a service but with stderr redirected is not). systemd.exec(5)."""
    try:
        dev, ino = (int(x) for x in environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def status_text(status: EndpointStatus | Mapping[str, Any]) -> str:
    """The one-line STATUS= shown by ``systemctl status``, from ``Manager.status()``."""
    if isinstance(status, EndpointStatus):
        status = status.to_dict()
    t = status.get("tasks", {})
    ueps = status.get("user_endpoints", [])
    running = sum(1 for u in ueps if u.get("state") == "running")
    broker = "connected" if status.get("broker", {}).get("connected") else "disconnected"
    degraded = f"degraded: {status.get('reason') or 'see gce status'}; " if status.get("state") == "degraded" else ""
    return (f"{degraded}{t.get('received', 0)} tasks received, {t.get('completed', 0)} completed, "
            f"{t.get('failed', 0)} failed, {t.get('in_flight', 0)} in flight; "
            f"user endpoints: {running} running of {len(ueps)}; broker {broker}")
