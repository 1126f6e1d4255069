"""gce enable-on-boot / disable-on-boot: run an endpoint as a systemd service.

As root, endpoint NAME becomes ``gce-endpoint@NAME.service`` of the system manager, an instance
of ``/etc/systemd/system/gce-endpoint@.service``; as another user, the same unit of that user's
manager, in ``~/.config/systemd/user/``. Units come from ``gce/templates/systemd/``. systemd is
driven over D-Bus by pystemd when it is installed (``pip install 'gce[systemd]'``), else by
systemctl; where systemd does not run (a container, an image being built) the unit is written
and the commands to run are printed on stdout.

Installed from a .deb or .rpm (gce/commands/packaged.py), the package ships the template in
``/usr/lib/systemd/{system,user}``: the instance of that unit is enabled and started, and
nothing is written into ``/etc/systemd/system``, which belongs to the admin.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg, configured_paths
from gce.commands.packaged import TEMPLATE, Packaged, packaged, render_unit
from gce.commands.systemd import Systemd, connect, unit_name
from gce.config.paths import endpoint_paths
from gce.errors import AlreadyRunning, Unavailable, UsageError


@dataclass(frozen=True)
class Target:
    """Where the unit goes: the system manager's directory, or a user manager's."""

    user: bool
    unit_dir: Path

    @property
    def template(self) -> Path:
        return self.unit_dir / TEMPLATE

    @property
    def systemctl(self) -> str:
        return "systemctl --user" if self.user else "systemctl"

    def enabled(self) -> dict[str, list[Path]]:
        """Enabled endpoints: name -> the symlinks that enable it (in *.wants/, *.requires/)."""
        found: dict[str, list[Path]] = {}
        for link in sorted(self.unit_dir.glob("*.*/gce-endpoint@?*.service")):
            found.setdefault(link.name[len("gce-endpoint@"):-len(".service")], []).append(link)
        return found


def this_target() -> Target:
    if os.geteuid() == 0:
        return Target(False, Path("/etc/systemd/system"))
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Target(True, Path(config) / "systemd" / "user")


def gce_executable() -> str:
    """The gce next to the interpreter running this (a venv's bin, or /usr/bin): the unit runs
    the installation that enabled it, whatever PATH says."""
    return str(Path(sys.executable).parent / "gce")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _environment_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.startswith("Environment=")), "")


def install(name: str, target: Target, systemd: Systemd | None, gce: str, gce_home: str | None) -> dict | None:
    """Write the unit; if systemd runs, enable and start NAME's instance and return its state."""
    text = render_unit(target.user, gce, gce_home)
    others = sorted(set(target.enabled()) - {name})
    if others and target.template.exists():
        old = _environment_line(target.template.read_text())
        if old != _environment_line(text):
            raise UsageError(
                f"cannot enable endpoint {name!r} with {'GCE_HOME=' + gce_home if gce_home else 'no GCE_HOME'}",
                f"{target.template} runs endpoint(s) {', '.join(others)} with {old or 'no GCE_HOME'}",
                hint="use the same GCE_HOME, or gce disable-on-boot those endpoints first",
            )
    _write(target.template, text)
    if systemd is None:
        return None
    unit = unit_name(name)
    systemd.reload()
    systemd.enable_start(unit)
    return systemd.show(unit)


def shipped_template(package: Packaged | None, target: Target) -> Path | None:
    """The template unit the package that installed gce ships for TARGET's manager; None from a
    source checkout (or if the file is gone: then gce writes its own unit, as from a checkout)."""
    if package is None:
        return None
    path = Path(package.user_unit_dir if target.user else package.system_unit_dir) / TEMPLATE
    return path if path.is_file() else None


def environment_file(shipped: Path) -> str:
    """The environment file SHIPPED reads (EnvironmentFile=-PATH), where site-wide settings go."""
    for line in shipped.read_text().splitlines():
        if line.startswith("EnvironmentFile="):
            return line.split("=", 1)[1].lstrip("-")
    return "the package's environment file"


def install_shipped(name: str, target: Target, shipped: Path, systemd: Systemd | None,
                    gce_home: str | None) -> dict | None:
    """Enable and start NAME's instance of the package's SHIPPED template, writing no unit file;
    return its state, or None if systemd does not run."""
    unit, systemctl = unit_name(name), target.systemctl
    if gce_home:
        # The shipped unit is the package's, the same for every endpoint: gce does not write a
        # unit of its own over it, so where GCE_HOME comes from is the admin's to say.
        everywhere = "" if target.user else f", or for every endpoint in {environment_file(shipped)}"
        raise UsageError(
            f"cannot enable endpoint {name!r} with GCE_HOME={gce_home}",
            f"the packaged unit {shipped} runs endpoints without GCE_HOME",
            hint=f"give the unit its GCE_HOME in a drop-in: {systemctl} edit {unit}, with the lines "
                 f"[Service] and Environment=GCE_HOME={gce_home}{everywhere}; then run "
                 f"gce enable-on-boot {name} without GCE_HOME")
    if target.template.exists():
        output.warning(f"{target.template} (from an install of gce from source) shadows the packaged {shipped}: "
                       f"systemd runs every gce endpoint with the old file. To use the packaged unit, move your "
                       f"changes into a drop-in ({systemctl} edit {unit}), remove {target.template}, then "
                       f"{systemctl} daemon-reload and {systemctl} restart {unit}")
    if systemd is None:
        return None
    systemd.reload()  # a package just installed or upgraded may not have reloaded this manager
    systemd.enable_start(unit)
    return systemd.show(unit)


def uninstall(name: str, target: Target, systemd: Systemd | None, shipped: Path | None = None) -> list[Path]:
    """Stop and disable NAME's instance; remove the template once no endpoint uses it, unless a
    package SHIPPED the template (then the file in TARGET is the admin's). Return the files removed."""
    if systemd is not None and (shipped is not None or target.template.exists()):
        systemd.stop_disable(unit_name(name))
    removed = target.enabled().get(name, [])  # systemd is not running, or an admin linked more
    for link in removed:
        link.unlink()
    if shipped is None and not target.enabled() and target.template.exists():
        target.template.unlink()
        removed.append(target.template)
    if systemd is not None and removed:
        systemd.reload()
    return removed


def _why(state: dict) -> str:
    why = f"it is {state.get('ActiveState')} ({state.get('SubState')}), result {state.get('Result')}"
    if state.get("ExecMainStatus") not in (None, "", "0"):
        why += f", exit status {state['ExecMainStatus']}"
        if state["ExecMainStatus"] == "78":
            why += " (the endpoint's configuration is invalid)"
    return why + (f": {state['StatusText']}" if state.get("StatusText") else "")


def _linger_hint() -> None:
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    if not Path("/var/lib/systemd/linger", user).exists():
        output.hint(f"without lingering your user manager, and this endpoint, start at your first login, "
                    f"not at boot: loginctl enable-linger {user}")


def enable(name: DefaultNameArg = DEFAULT_NAME) -> None:
    """Run an endpoint as a systemd service: start it now and at every boot.

    As root this is the system service gce-endpoint@NAME.service, logging to the journal
    (journalctl -u gce-endpoint@NAME); as another user, the same unit of your own systemd user
    manager, which runs from boot only if lingering is on for you (loginctl enable-linger).
    The endpoint's configuration is checked first; the command returns once the endpoint is
    connected and ready, or says why it is not. systemd restarts the endpoint if it fails, but
    not when its configuration is invalid. Installed from a .deb or .rpm, this enables the unit
    the package ships (/usr/lib/systemd) and writes no unit file; GCE_HOME then goes in a
    drop-in (systemctl edit gce-endpoint@NAME). Where systemd does not run (an image being
    built), nothing starts: the unit file is written, a warning says so, and the commands to
    run later are printed on stdout.
    """
    from gce.config import model
    from gce.daemon.client import EndpointClient

    paths = configured_paths(name)
    model.load(paths)  # a broken configuration is refused here, not in a failing unit
    target, unit = this_target(), unit_name(name)
    systemd = connect(user=target.user)
    running = EndpointClient(paths).lock_is_held()
    if systemd is not None and running and systemd.show(unit).get("ActiveState") != "active":
        raise AlreadyRunning(f"endpoint {name!r} is running outside systemd", "its service could not start",
                             hint=f"gce stop {name}, then gce enable-on-boot {name}")
    shipped = shipped_template(packaged(), target)
    if shipped is not None:
        state = install_shipped(name, target, shipped, systemd, os.environ.get("GCE_HOME"))
    else:
        state = install(name, target, systemd, gce_executable(), os.environ.get("GCE_HOME"))
    if state is None:
        # Exit 0 all the same: building an image (a chroot, no systemd yet) is what this is for there.
        written = f"{shipped} is installed" if shipped else f"only {target.template} was written"
        output.warning(f"systemd does not run here: endpoint {name} is not running and will not start at boot; "
                       f"{written}. Where systemd runs, enable and start it with:")
        output.line(f"{target.systemctl} daemon-reload")
        output.line(f"{target.systemctl} enable --now {unit}")
    elif state.get("ActiveState") != "active":
        raise Unavailable(f"{unit} did not start", _why(state),
                          hint=f"{target.systemctl} status {unit} shows why; it stays enabled: fix the cause, "
                          f"then {target.systemctl} restart {unit}")
    else:
        output.success(f"endpoint {name} runs as {unit} and starts at boot")
        output.line(f"status: {state.get('StatusText', '')}")
    if target.user:
        _linger_hint()


def disable(name: DefaultNameArg = DEFAULT_NAME) -> None:
    """Stop an endpoint's systemd service and no longer start it at boot.

    The unit file goes with the last endpoint that uses it, unless the gce package installed
    it. The endpoint's configuration stays (gce delete removes it).
    """
    endpoint_paths(name)  # the name must be valid; the endpoint itself may be gone already
    target = this_target()
    was = name in target.enabled()
    systemd = connect(user=target.user)
    shipped = shipped_template(packaged(), target)
    removed = uninstall(name, target, systemd, shipped)
    if not was and not removed:
        output.line(f"endpoint {name} was not enabled on boot")
        return
    output.success(f"endpoint {name} {'is stopped and ' if systemd else ''}no longer starts at boot")
    for path in removed:
        output.line(f"removed {path}")
    others = sorted(target.enabled())
    if others and shipped is None:
        output.line(f"kept {target.template}: endpoint(s) {', '.join(others)} still use it")
