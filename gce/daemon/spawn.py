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
import socket
import subprocess
import sys
from pathlib import Path

from gce.daemon import privileges

# What a UEP may inherit from the manager's environment; everything else is dropped.
_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR", "GCE_DEBUG")


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


def uep_environment() -> dict[str, str]:
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
    stderr = open(log_path, "ab")
    env, cwd, credentials = uep_environment(), safe_cwd(conf["run_dir"]), {}
    if target is not None:
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
