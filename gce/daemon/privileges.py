"""Who a user endpoint runs as, and what it is given to start with.

Only this module and ``spawn`` deal in uids (STYLE.md 4). The drop itself is done by
``subprocess.Popen(user=, group=, extra_groups=)`` in C between fork and exec; here we only
work out its arguments: the account's uid, primary gid and supplementary groups resolved
through NSS (``os.getgrouplist``, never ``grp.getgrall``), a working directory, and the
environment of a fresh login of that account (DESIGN.md, security invariant 2).
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """The account a user endpoint runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    def identity(self) -> dict[str, Any]:
        """What the UEP checks itself against before anything else (gce/uep/main.py)."""
        return {"uid": self.uid, "gid": self.gid, "groups": sorted(set(self.groups))}


def target_of(name: str, uid: int, gid: int, home: str, shell: str) -> Target:
    return Target(name, uid, gid, tuple(os.getgrouplist(name, gid)), home, shell)


def current_target() -> Target:
    """The account this process runs as (a personal endpoint: no mapping, no drop)."""
    pw = pwd.getpwuid(os.getuid())
    return Target(pw.pw_name, os.getuid(), os.getgid(), tuple(os.getgroups()), pw.pw_dir, pw.pw_shell)


def must_drop(target: Target) -> bool:
    """Whether starting a process for TARGET changes credentials (only root can, and must)."""
    return os.geteuid() == 0 and target.uid != os.geteuid()


def popen_credentials(target: Target) -> dict[str, Any]:
    """``Popen`` keyword arguments that start a process as TARGET, or none when no drop is due."""
    if not must_drop(target):
        return {}
    return {"user": target.uid, "group": target.gid, "extra_groups": list(target.groups)}


def working_directory(target: Target) -> str:
    """TARGET's home when it is a directory the account owns, else ``/``."""
    try:
        st = os.stat(target.home)
    except OSError:
        return "/"
    if stat.S_ISDIR(st.st_mode) and st.st_uid == target.uid:
        return target.home
    return "/"


def login_environment(target: Target) -> dict[str, str]:
    """The variables a login of TARGET sets for itself."""
    return {"HOME": target.home, "USER": target.name, "LOGNAME": target.name, "SHELL": target.shell or "/bin/sh"}


def admin_environment(path: str | None) -> dict[str, str]:
    """The admin's ``user_environment.yaml``: a mapping of names to strings; {} when absent.

    A file that is not such a mapping is reported in the log and ignored entry by entry,
    so one bad line does not stop every user's endpoint.
    """
    if not path:
        return {}
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as e:
        log.error("ignoring %s: %s", path, e)
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        log.error("ignoring %s: it must hold a mapping of variable names to strings", path)
        return {}
    env = {}
    for key, value in data.items():
        if isinstance(key, str) and key and "=" not in key and "\0" not in key and \
                isinstance(value, (str, int, float)) and not isinstance(value, bool) and "\0" not in str(value):
            env[key] = str(value)
        else:
            log.error("ignoring entry %.60r of %s: names and values must be strings", key, path)
    return env
