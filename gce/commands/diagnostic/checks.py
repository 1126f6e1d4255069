"""Checks of one endpoint on this host: its config, files, process and systemd unit
(logs.py checks its log).

They run in order over one Context, so a check can use what an earlier one found (the
config that loaded, whether the manager runs, its status reply) instead of asking again.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gce.commands.diagnostic import journal
from gce.commands.diagnostic.journal import SYSTEMD_BOOTED
from gce.commands.diagnostic.result import Result, fail, ok, skip, warn
from gce.config.paths import EndpointPaths, refused
from gce.errors import GceError, PermissionDenied

MIN_FREE_BYTES = 100 * 1024 * 1024
CONTROL_TIMEOUT = 5.0
SYSTEMCTL_TIMEOUT = 5.0
UNIT = "gce-endpoint@{name}"

if TYPE_CHECKING:
    from gce.daemon.client import EndpointStatus, Liveness


@dataclass
class Context:
    paths: EndpointPaths
    config: Any = None  # gce.config.model.EndpointConfig once the config check passed
    live: Liveness | None = None  # whether the manager runs
    status: EndpointStatus | dict[str, Any] | None = None  # the running manager's status (or its JSON)
    unit: str | None = None  # the systemd unit that runs the endpoint, if systemd knows one


def _status(ctx: Context) -> EndpointStatus | None:
    """The manager's status, read as the client reads it when it was given as JSON."""
    if isinstance(ctx.status, dict):
        from gce.daemon.client import EndpointStatus

        ctx.status = EndpointStatus.from_dict(ctx.status)
    return ctx.status


def config(ctx: Context) -> Result:
    from gce.config import model

    try:
        ctx.config = model.load(ctx.paths, engine_options=True)
    except GceError as e:
        return fail("config", str(e), e.hint or f"fix {ctx.paths.config_file}", file=str(ctx.paths.config_file))
    c = ctx.config
    kind = "multi-user, templated" if c.multi_user else f"engine {c.engine.get('type')}"
    return ok("config", f"{ctx.paths.config_file} is valid ({kind}), endpoint id {c.endpoint_id}",
              file=str(ctx.paths.config_file), endpoint_id=c.endpoint_id, multi_user=c.multi_user,
              engine=c.engine.get("type"))


def _directories(paths: EndpointPaths) -> dict[str, Path]:
    dirs = {"config": paths.config_dir, "state": paths.state_dir, "log": paths.log_file.parent,
            "spool": paths.spool_dir}
    seen: dict[Path, str] = {}
    for role, d in dirs.items():
        seen.setdefault(d, role)
    return {role: d for d, role in seen.items()}


def files(ctx: Context) -> Result:
    """Directories exist, belong to whoever runs gce, and nobody else may write to them."""
    from gce.config import model

    problems: list[str] = []
    failures: list[str] = []
    me = os.geteuid()
    checked = []
    for role, d in _directories(ctx.paths).items():
        try:
            st = d.stat()
        except FileNotFoundError:
            if role == "spool":
                continue  # made at the first start
            problems.append(f"the {role} directory {d} does not exist")
            continue
        except PermissionError:
            continue  # a directory on the way refuses: said below, once
        checked.append(str(d))
        if st.st_uid != me:
            problems.append(f"{d} belongs to uid {st.st_uid}, not to uid {me} who runs this")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            failures.append(f"others may write to {d} (mode {stat.S_IMODE(st.st_mode):04o})")
    unreadable = _unreadable(ctx.paths)
    if unreadable:  # nothing else here can be judged right by this user
        return fail("files", "; ".join(unreadable + problems), "run gce diagnostic as the owner of those files, "
                    "or as root", directories=checked)
    try:
        exposed = ctx.config is not None and model.password_exposed(ctx.paths.config_file, ctx.config.broker_url)
        if exposed:
            failures.append(exposed)
    except FileNotFoundError:
        pass  # the config check says so
    if failures:
        return fail("files", "; ".join(failures + problems),
                    f"chmod go-rwx {ctx.paths.config_dir} {ctx.paths.config_file}", directories=checked)
    if problems:
        return warn("files", "; ".join(problems), f"run gce as the endpoint's owner, or gce configure "
                    f"{ctx.paths.name}", directories=checked)
    plural = "directories" if len(checked) != 1 else "directory"
    return ok("files", f"{len(checked)} {plural} present, owned by uid {me}, not writable by others",
              directories=checked)


def _unreadable(paths: EndpointPaths) -> list[str]:
    """What this user may not read of the files gce reads to judge the endpoint, with modes."""
    found: dict[Path, str] = {}
    for f in (paths.config_dir, paths.config_file, paths.endpoint_json, paths.state_dir, paths.state_file,
              paths.lock_file):
        r = refused(f)
        if r and r[0] not in found:  # a closed directory refuses every file in it: named once
            found[r[0]] = f"cannot read {r[0]}: it is mode {r[1]:04o}, owned by {r[2]}"
    return list(found.values())



def disk_verdict(free_by_dir: dict[str, int], minimum: int = MIN_FREE_BYTES) -> Result:
    """The verdict on the free bytes of each directory: WARN naming those below MINIMUM."""
    lows = [f"{d}: {free // (1024 * 1024)} MiB free" for d, free in sorted(free_by_dir.items()) if free < minimum]
    if not free_by_dir:
        return skip("disk space", "the state and log directories do not exist")
    if lows:
        return warn("disk space", "low on space: " + "; ".join(lows),
                    "the spool and logs need room: free some space on that file system", free_bytes=free_by_dir)
    least = min(free_by_dir.values())
    return ok("disk space", f"{least // (1024 * 1024)} MiB free for state and logs", free_bytes=free_by_dir)


def disk(ctx: Context) -> Result:
    dirs = {ctx.paths.state_dir, ctx.paths.log_file.parent}
    return disk_verdict({str(d): shutil.disk_usage(d).free for d in dirs if d.exists()})


def process(ctx: Context) -> Result:
    from gce.daemon.client import EndpointClient

    name = ctx.paths.name
    try:
        live = ctx.live = EndpointClient(ctx.paths).liveness()
    except PermissionDenied as e:
        return warn("process", f"cannot tell whether it runs: {e.why}", e.hint)
    if live.state == "running":
        return ok("process", f"running, pid {live.pid} on {live.host or 'this host'}", pid=live.pid, host=live.host)
    if live.state == "failed":
        # "cause", not "reason": fail() takes the verdict's own reason by that name
        return fail("process", f"failed: {live.reason}", f"gce start {name} --detach; the log check below "
                    "shows its last lines", cause=live.reason)
    why = f" ({live.reason})" if live.reason else ""
    return warn("process", f"not running{why}", f"gce start {name} --detach")


def control(ctx: Context) -> Result:
    from gce.daemon.client import EndpointClient, ManagerError

    if ctx.live is None:
        return skip("control socket", "whether the endpoint runs is not known (see the process check)")
    if ctx.live.state != "running":
        return skip("control socket", "the endpoint is not running")
    if ctx.live.host and ctx.live.host != socket.gethostname():
        return skip("control socket", f"the manager runs on host {ctx.live.host}: its control socket is only "
                    "reachable there", f"run gce diagnostic on {ctx.live.host}")
    sock = ctx.paths.control_socket
    try:
        status = EndpointClient(ctx.paths, timeout=CONTROL_TIMEOUT).status()
    except ManagerError as e:
        return fail("control socket", f"{sock} answered with an error: {e.why}", socket=str(sock))
    except GceError as e:
        return fail("control socket", f"{sock}: {e}", e.hint or f"gce restart {ctx.paths.name}", socket=str(sock))
    except OSError as e:
        return fail("control socket", f"cannot connect to {sock}: {e.strerror or e}",
                    "run gce as the endpoint's owner (or root)", socket=str(sock))
    ctx.status = status
    # Failing blocks degrade a personal endpoint, yet its manager is well: the blocks check says that.
    blocks_only = status.blocks_failing and not status.spool.error and not status.broker.refused
    if status.state == "degraded" and not blocks_only:  # it runs, but takes no tasks: the reason is the manager's own
        return fail("control socket", f"the manager runs degraded: {status.reason or 'it gives no reason'}",
                    f"gce status {ctx.paths.name}", socket=str(sock))
    if not status.broker.connected:
        return warn("control socket", f"the manager answers on {sock} but is not connected to the broker: "
                    f"{status.broker.last_error or 'reconnecting'}", f"gce status {ctx.paths.name}", socket=str(sock))
    return ok("control socket", f"the manager answers on {sock}", socket=str(sock))


def spool(ctx: Context) -> Result:
    """The manager's own word on its spool: one it cannot write stops it taking tasks."""
    status = _status(ctx)
    if status is None:
        return skip("spool", "no status from a running manager")
    sp = status.spool
    if not sp.path:
        return skip("spool", "the manager does not report on its spool")
    if sp.error:
        return fail("spool", f"the manager is not taking tasks (they wait on the broker): {sp.error}",
                    f"make room on (or remount read-write) the file system of {sp.path}; the endpoint "
                    "takes tasks again by itself", path=sp.path, error=sp.error, since=sp.since)
    return ok("spool", f"the manager writes its spool in {sp.path}", path=sp.path)


def audit(ctx: Context) -> Result:
    """The manager's word on its audit log: lines that wait for a full or unwritable disk, or were lost."""
    status = _status(ctx)
    if status is None or not status.audit.path:
        return skip("audit", "no status from a running manager" if status is None else
                    "the manager does not report on its audit log")
    a = status.audit
    if a.error or a.lost:
        why = (f"cannot write {a.path}: {a.error}; " if a.error else "") + f"{a.waiting} lines wait, {a.lost} were lost"
        return warn("audit", f"{why} (tasks run all the same)", f"make room on (or remount read-write) the file "
                    f"system of {a.path}; what waits is written by itself", path=a.path, waiting=a.waiting,
                    lost=a.lost, error=a.error)
    return ok("audit", f"the manager writes its audit log {a.path}", path=a.path)


def uep_python(ctx: Context) -> Result:
    import platform

    status = _status(ctx)
    if status is None:
        return skip("uep python", "no status from a running manager")
    ueps = status.user_endpoints
    running = [u for u in ueps if u.state == "running"]
    if not running:
        down = "; ".join(f"{u.key}: {u.state}" + (f" ({u.reason})" if u.reason else "") for u in ueps)
        if any(u.state == "fatal" for u in ueps):
            return fail("uep python", f"no user endpoint runs: {down}", f"gce status {ctx.paths.name}")
        return skip("uep python", "no user endpoint is running yet" + (f" ({down})" if down else ""))
    versions = {u.key: u.python or "unknown" for u in running}
    mine = platform.python_version()
    minor = lambda v: v.split(".")[:2]  # noqa: E731
    shown = ", ".join(f"{k}: Python {v}" for k, v in versions.items())
    if any(minor(v) != minor(mine) for v in versions.values()):
        return warn("uep python", f"{shown}; gce here runs Python {mine}",
                    "functions pickled by one Python minor version often fail to load in another: "
                    "submit from the same Python as the user endpoint", user_endpoints=versions)
    return ok("uep python", shown, user_endpoints=versions)


def blocks(ctx: Context) -> Result:
    """User endpoints whose blocks kept failing (each answers its tasks BLOCKS_FAILING until resumed)."""
    status = _status(ctx)
    if status is None:
        return skip("blocks", "no status from a running manager")
    failing = {u.key: u.engine.breaker for u in status.user_endpoints if u.engine.breaker is not None}
    if failing:
        shown = "; ".join(f"user endpoint {key}: {b.short_reason()}" for key, b in failing.items())
        return fail("blocks", f"blocks failing, tasks are answered BLOCKS_FAILING: {shown}",
                    f"fix the engine's worker_init or provider (gce status {ctx.paths.name} shows the last "
                    f"block's output), then: gce resume {ctx.paths.name}",
                    user_endpoints={key: b.to_dict() for key, b in failing.items()})
    if status.blocks_failing:  # a local user of a multi-user endpoint: others' are only counted
        return warn("blocks", f"{status.blocks_failing} user endpoint(s) of other users: blocks failing",
                    "their owners or root: gce resume NAME", count=status.blocks_failing)
    return ok("blocks", "no user endpoint's blocks are failing")


def _systemctl(*args: str) -> str:
    scope = () if os.geteuid() == 0 else ("--user",)
    try:
        proc = subprocess.run(["systemctl", *scope, *args], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return "no answer"
    return (proc.stdout.strip() or proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()[0]


def systemd(ctx: Context) -> Result:
    if shutil.which("systemctl") is None:
        return skip("systemd unit", "systemctl is not installed")
    if not SYSTEMD_BOOTED.is_dir():
        return skip("systemd unit", f"systemd is not running on this machine (no {SYSTEMD_BOOTED})")
    unit = UNIT.format(name=ctx.paths.name)
    active, enabled = _systemctl("is-active", unit), _systemctl("is-enabled", unit)
    details = {"unit": unit, "active": active, "enabled": enabled}
    known = not (enabled in ("disabled", "not-found") or "No such file" in enabled or "not found" in enabled)
    if active in ("active", "activating", "deactivating", "failed"):
        ctx.unit = journal.unit_of(ctx.paths.name)  # it runs (or failed) there: the log check reads its journal
    if not known:
        if active == "active":
            return warn("systemd unit", f"{unit} is active but not enabled: it will not start at boot",
                        f"systemctl enable {unit}", **details)
        return skip("systemd unit", f"{unit} is not enabled (the endpoint is not started at boot)",
                    f"gce enable-on-boot {ctx.paths.name}", **details)
    if active == "active":
        return ok("systemd unit", f"{unit} is {enabled} and active", **details)
    where = "journalctl -u" if os.geteuid() == 0 else "journalctl --user -u"
    return fail("systemd unit", f"{unit} is {enabled} but {active}", f"{where} {unit}", **details)
