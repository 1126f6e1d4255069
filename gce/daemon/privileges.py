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
import re
import stat
from dataclasses import dataclass
from typing import Any, Tuple

from gce.errors import GceError

log = logging.getLogger(__name__)
# Not an account name, and dangerous in a path or a passwd line.
_BAD_USER_RE = re.compile(r"^$|^-|[/:\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class LocalUser:
    """A local account, resolved through NSS: whom a user endpoint runs as."""

    name: str
    uid: int
    gid: int
    groups: Tuple[int, ...]  # primary and supplementary gids through NSS (os.getgrouplist), sorted
    home: str
    shell: str

    def identity(self) -> dict[str, Any]:
        """What the UEP checks itself against before anything else (gce/uep/main.py)."""
        return {"uid": self.uid, "gid": self.gid, "groups": sorted(set(self.groups))}


class UnknownLocalUser(GceError):
    pass


def resolve_local_user(name: str) -> LocalUser:
    """Account NAME through NSS; UnknownLocalUser if there is none or NAME is malformed."""
    if len(name) > 256 or _BAD_USER_RE.search(name):
        raise UnknownLocalUser(f"no local user {name!r}", "this is not a valid user name")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise UnknownLocalUser(f"no local user {name!r}", "the user database (NSS) has no such account") from None
    groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    return LocalUser(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir, pw.pw_shell)


def current_target() -> LocalUser:
    """The account this process runs as (a personal endpoint: no mapping, no drop)."""
    pw = pwd.getpwuid(os.getuid())
    return LocalUser(pw.pw_name, os.getuid(), os.getgid(), tuple(sorted(set(os.getgroups()))), pw.pw_dir,
                     pw.pw_shell)


def must_drop(target: LocalUser) -> bool:
    """Whether starting a process for TARGET changes credentials (only root can, and must)."""
    return os.geteuid() == 0 and target.uid != os.geteuid()


def popen_credentials(target: LocalUser) -> dict[str, Any]:
    """``Popen`` keyword arguments that start a process as TARGET, or none when no drop is due."""
    if not must_drop(target):
        return {}
    return {"user": target.uid, "group": target.gid, "extra_groups": list(target.groups)}


def working_directory(target: LocalUser) -> str:
    """TARGET's home when it is a directory the account owns, else ``/``."""
    try:
        st = os.stat(target.home)
    except OSError:
        return "/"
    if stat.S_ISDIR(st.st_mode) and st.st_uid == target.uid:
        return target.home
    return "/"


def login_environment(target: LocalUser) -> dict[str, str]:
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
