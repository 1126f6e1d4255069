"""Driving a running systemd: over D-Bus with pystemd when it is installed
(``pip install 'gce[systemd]'``), else with systemctl. A helper of ``gce enable-on-boot`` and
the diagnostic, not a command of its own."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Protocol

from gce.errors import Unavailable

START_TIMEOUT = 180.0  # the unit's TimeoutStartSec plus a margin


def unit_name(name: str) -> str:
    """Endpoint NAME's unit: an instance of gce/templates/systemd/gce-endpoint@.service."""
    return f"gce-endpoint@{name}.service"


class Systemd(Protocol):
    def reload(self) -> None: ...
    def enable_start(self, unit: str) -> None: ...
    def stop_disable(self, unit: str) -> None: ...
    def show(self, unit: str) -> dict[str, str]: ...


class Systemctl:
    """systemd through the systemctl command; start/stop wait for their job to finish."""

    def __init__(self, user: bool) -> None:
        self.command = ["systemctl", "--user"] if user else ["systemctl"]

    def _run(self, *args: str, check: bool = True) -> str:
        try:
            proc = subprocess.run([*self.command, *args], capture_output=True, text=True)
        except FileNotFoundError:
            raise Unavailable("systemd runs but systemctl is not installed", hint="pip install 'gce[systemd]' "
                              "lets gce talk to systemd over D-Bus instead") from None
        if check and proc.returncode != 0:
            raise Unavailable(f"{' '.join(self.command + list(args))} failed", proc.stderr.strip())
        return proc.stdout

    def reload(self) -> None:
        self._run("daemon-reload")

    def enable_start(self, unit: str) -> None:
        self._run("enable", unit)
        self._run("start", unit, check=False)  # show() says how it went

    def stop_disable(self, unit: str) -> None:
        self._run("disable", "--now", unit)
        self._run("reset-failed", unit, check=False)

    def show(self, unit: str) -> dict[str, str]:
        text = self._run("show", "-p", "ActiveState,SubState,Result,StatusText,ExecMainStatus", unit)
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Pystemd:
    """systemd over D-Bus (pystemd); jobs are waited for by polling the unit's Job property."""

    def __init__(self, user: bool) -> None:
        from pystemd.dbuslib import DBus
        from pystemd.systemd1 import Manager

        self.bus = DBus(user_mode=user)
        self.bus.open()
        self.manager = Manager(bus=self.bus)
        self.manager.load()

    def _unit(self, unit: str):  # type: ignore[no-untyped-def]
        from pystemd.systemd1 import Unit

        u = Unit(unit.encode(), bus=self.bus)
        u.load()
        return u

    def _wait(self, unit: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while self._unit(unit).Unit.Job[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.1)

    def reload(self) -> None:
        self.manager.Manager.Reload()

    def enable_start(self, unit: str) -> None:
        self.manager.Manager.EnableUnitFiles([unit.encode()], False, True)
        self.manager.Manager.StartUnit(unit.encode(), b"replace")
        self._wait(unit)

    def stop_disable(self, unit: str) -> None:
        self.manager.Manager.DisableUnitFiles([unit.encode()], False)
        self.manager.Manager.StopUnit(unit.encode(), b"replace")
        self._wait(unit)
        try:
            self.manager.Manager.ResetFailedUnit(unit.encode())
        except Exception:  # not failed: nothing to reset (pystemd raises DBusError subclasses)
            pass

    def show(self, unit: str) -> dict[str, str]:
        u = self._unit(unit)
        raw = {k: getattr(u.Unit, k) for k in ("ActiveState", "SubState")}
        raw.update({k: getattr(u.Service, k) for k in ("Result", "StatusText", "ExecMainStatus")})
        return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in raw.items()}


def connect(user: bool) -> Systemd | None:
    """The running system manager, or the user's when USER; None if it does not run (sd_booted(3))."""
    if not Path("/run/systemd/system").is_dir():
        return None
    bus = Path("/run/dbus/system_bus_socket")
    if user:
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
        if not Path(runtime, "systemd", "private").exists():
            return None  # no user manager (a `su` session): print the commands instead
        os.environ.setdefault("XDG_RUNTIME_DIR", runtime)
        bus = Path(runtime, "bus")  # dbus-user-session's; systemctl --user does without it
    if bus.exists():
        try:
            return Pystemd(user)
        except ImportError:
            pass
    return Systemctl(user)
