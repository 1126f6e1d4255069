"""Starting a user endpoint process.

The config travels on a stdin pipe and the channel is an inherited socketpair end, never
argv or the environment (DESIGN.md, security invariant 5). ``Popen`` does the session and
umask changes in C between fork and exec, so no Python runs in the child before exec
(STYLE.md 7). For a multi-user endpoint run by root, the same call drops to the mapped
account (gce/daemon/privileges.py works out its arguments).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from gce.config.uep import UepConfig
from gce.daemon import privileges, proctree
from gce.logfiles import open_append, rotate_if_large
from gce.transport.urls import has_password

# What a UEP of a multi-user endpoint may inherit from root's environment; all else is dropped.
# Not PATH (root's may name directories users can write, or root's own tools first) nor TMPDIR
# (root's private one): user_environment.yaml sets those for the users.
_KEEP_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "GCE_DEBUG")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Never passed on, not even to a personal endpoint's UEP: names that say "secret", gce's own
# broker URL variables, and (below) any value that is a URL with a password in it.
_SECRET_NAME = re.compile(r"PASSW|SECRET|TOKEN|CREDENTIAL|PRIVATE|(^|_)KEY$|^GCE_.*URL$|^AMQP", re.I)
# systemd's per-service variables: meant for the manager, not for what it starts.
_MANAGER_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def _secret(name: str, value: str) -> bool:
    return bool(_SECRET_NAME.search(name)) or ("://" in value and has_password(value.strip()))


def python_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE`` that does not import from the working directory.

    ``-m`` puts the cwd first on sys.path: a directory named ``gce`` there (parsl's run_dir
    has one, and so may any user's cwd) would be imported instead of the real package.
    ``-P`` (Python 3.11+) leaves the cwd out; older Pythons get the same effect from cwd="/".
    """
    safe = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe, "-m", module, *args]


def safe_cwd(preferred: str) -> str:
    return preferred if sys.version_info >= (3, 11) else "/"


def uep_environment(inherit: bool = False) -> dict[str, str]:
    """The environment a UEP starts with. A personal endpoint's (INHERIT) is its user's own, as
    they started it (SLURM_CONF, modules, a conda env: what their batch jobs need), less
    secrets; a multi-user endpoint's starts from a few harmless variables of root's."""
    # parsl's interchange and worker pool are console scripts next to this interpreter.
    bindir = str(Path(sys.executable).parent)
    if inherit:
        env = {k: v for k, v in os.environ.items() if k not in _MANAGER_ONLY and not _secret(k, v)}
        path = env.get("PATH", SAFE_PATH)
        env["PATH"] = path if bindir in path.split(os.pathsep) else bindir + os.pathsep + path
    else:
        env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
        env["PATH"] = bindir + os.pathsep + SAFE_PATH
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_environment(target: privileges.LocalUser | None, environment_file: str | None,
                      marker: str) -> dict[str, str]:
    """The environment of a process started for TARGET (a UEP, or what cancels its batch jobs),
    marked as that UEP's (gce.daemon.proctree)."""
    # A user's own endpoint keeps the environment they started it with; root's is never passed on.
    inherit = target is None or (os.geteuid() != 0 and not privileges.must_drop(target))
    env = uep_environment(inherit)
    if target is not None:
        if not inherit:
            env.update(privileges.login_environment(target))
        env.update(privileges.admin_environment(environment_file))
    # The admin's PATH comes first, but parsl must still find its worker pool.
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = env.get("PATH", "") + os.pathsep + bindir if env.get("PATH") else bindir
    env[proctree.MARKER] = marker
    return env


def _start(module: str, args: tuple[str, ...], conf: dict, log_path: Path, target: privileges.LocalUser | None,
           environment_file: str | None, marker: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """``python -m MODULE ARGS`` as TARGET, CONF on its stdin, its output appended to LOG_PATH."""
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rotate_if_large(log_path)
    cwd, credentials = safe_cwd(conf["run_dir"]), {}
    if target is not None:
        cwd = privileges.working_directory(target)
        credentials = privileges.popen_credentials(target)
    with open_append(log_path) as stderr:  # 0600, never through a planted link
        proc = subprocess.Popen(
            python_command(module, *args),
            stdin=subprocess.PIPE,
            stdout=stderr,
            stderr=stderr,
            pass_fds=pass_fds,
            close_fds=True,
            start_new_session=True,
            umask=0o077,
            env=start_environment(target, environment_file, marker),
            cwd=cwd,
            **credentials,
        )
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
    except BrokenPipeError:  # it died at once; its exit status and log say why
        pass
    return proc


def spawn_uep(conf: UepConfig, log_path: Path, target: privileges.LocalUser | None = None,
              environment_file: str | None = None, marker: str = "") -> tuple[subprocess.Popen, socket.socket]:
    """Start ``python -m gce.uep`` (as TARGET when given); return the process and the manager's
    end of the channel. LOG_PATH takes what the process writes before its own log is set up.
    MARKER goes into its environment, and so into that of all it starts."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    admin_fds: list[int] = []
    try:
        conf = _with_admin_fds(conf, admin_fds)
        proc = _start("gce.uep", ("--fd", str(theirs.fileno())), conf.to_dict(), log_path, target, environment_file,
                      marker or proctree.new_marker(), pass_fds=(theirs.fileno(), *admin_fds))
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
        for fd in admin_fds:
            os.close(fd)
    return proc, mine


def _with_admin_fds(conf: UepConfig, opened: list[int]) -> UepConfig:
    """CONF with descriptors of its template's directory (O_PATH) and its schema, opened here as
    root and appended to OPENED: the UEP reads them as the user, who may not enter the directories
    above them (/etc/gce is 0750), while O_PATH lets it list nothing. A file that cannot be opened
    gets no descriptor: the UEP then tries its path and says why it fails."""
    template = conf.template
    if template is None:
        return conf

    def open_fd(path: str | None, flags: int) -> int | None:
        if not path:
            return None
        try:
            fd = os.open(path, flags | os.O_CLOEXEC)
        except OSError:
            return None
        opened.append(fd)
        return fd

    path = template.template_path
    dir_fd = open_fd(path and os.path.dirname(os.path.abspath(path)), os.O_PATH | os.O_DIRECTORY)
    schema_fd = open_fd(template.schema_path, os.O_RDONLY)
    return dataclasses.replace(conf, template=dataclasses.replace(
        template, template_dir_fd=dir_fd, schema_fd=schema_fd))


def spawn_block_cancel(conf: dict, log_path: Path, target: privileges.LocalUser | None,
                       environment_file: str | None, marker: str) -> subprocess.Popen:
    """Start ``python -m gce.uep.blocks`` as TARGET, in the environment its UEP had: it cancels
    the batch jobs the UEP of CONF left behind (with the user's own scancel, qdel, ...)."""
    return _start("gce.uep.blocks", (), conf, log_path, target, environment_file, marker)
