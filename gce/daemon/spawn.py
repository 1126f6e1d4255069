"""Starting a user endpoint process.

The config travels on a stdin pipe and the channel is an inherited socketpair end, never
argv or the environment (DESIGN.md, security invariant 5). ``Popen`` does the session and
umask changes in C between fork and exec, so no Python runs in the child before exec
(STYLE.md 7). For a multi-user endpoint run by root, the same call drops to the mapped
account (gce/daemon/privileges.py works out its arguments).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from gce.daemon import privileges
from gce.logfiles import open_append, rotate_if_large
from gce.transport.urls import has_password

# What a UEP of a multi-user endpoint may inherit from root's environment; all else is dropped.
_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR", "GCE_DEBUG")
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
    if inherit:
        env = {k: v for k, v in os.environ.items() if k not in _MANAGER_ONLY and not _secret(k, v)}
    else:
        env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
    # parsl's interchange and worker pool are console scripts next to this interpreter.
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if bindir not in path.split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + path
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn_uep(conf: dict, log_path: Path, target: privileges.LocalUser | None = None,
              environment_file: str | None = None) -> tuple[subprocess.Popen, socket.socket]:
    """Start ``python -m gce.uep`` (as TARGET when given); return the process and the manager's
    end of the channel. LOG_PATH takes what the process writes before its own log is set up."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rotate_if_large(log_path)
    stderr = open_append(log_path)  # 0600, never through a planted link
    # A user's own endpoint keeps the environment they started it with; root's is never passed on.
    inherit = target is None or (os.geteuid() != 0 and not privileges.must_drop(target))
    env, cwd, credentials = uep_environment(inherit), safe_cwd(conf["run_dir"]), {}
    if target is not None:
        if not inherit:
            env.update(privileges.login_environment(target))
        env.update(privileges.admin_environment(environment_file))
        cwd = privileges.working_directory(target)
        credentials = privileges.popen_credentials(target)
    try:
        proc = subprocess.Popen(
            python_command("gce.uep", "--fd", str(theirs.fileno())),
            stdin=subprocess.PIPE,
            stdout=stderr,
            stderr=stderr,
            pass_fds=(theirs.fileno(),),
            close_fds=True,
            start_new_session=True,
            umask=0o077,
            env=env,
            cwd=cwd,
            **credentials,
        )
    finally:
        theirs.close()
        stderr.close()
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    return proc, mine
