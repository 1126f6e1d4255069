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


def others_could_change(path: str | os.PathLike) -> str | None:
    """Why someone other than root (or this process's own user) could change what the file at PATH
    says, or None when nobody else can. Root acts on such files for everyone (the identity mapping
    decides who runs as whom, user_environment.yaml what every user endpoint starts with), so
    whoever can change one can run as anyone. Checked: the file, the directories above it, and
    those above any symbolic link on the way; each must be owned by root or us and writable by
    no one else (a sticky directory such as /tmp may be world-writable: others cannot replace
    what is ours in it). Raises OSError when PATH cannot be looked at."""
    trusted = {0, os.geteuid()}
    seen: set[tuple[int, int]] = set()
    real = os.path.realpath(path)
    targets = [(real, os.stat(real))] + [(d, os.stat(d)) for d in (*_parents(real), *_parents(os.path.abspath(path)))]
    for where, st in targets:
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_uid not in trusted:
            return f"{where} is owned by {_account(st.st_uid)}"
        if st.st_mode & stat.S_IWOTH and not sticky:
            return f"{where} is writable by everyone"
        if st.st_mode & stat.S_IWGRP and st.st_gid != 0 and not sticky:
            return f"{where} is writable by group {_group(st.st_gid)}"
    return None


def _parents(path: str) -> list[str]:
    parents: list[str] = []
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return parents
        parents.append(parent)
        path = parent


def _account(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    import grp

    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def login_environment(target: LocalUser) -> dict[str, str]:
    """The variables a login of TARGET sets for itself."""
    return {"HOME": target.home, "USER": target.name, "LOGNAME": target.name, "SHELL": target.shell or "/bin/sh"}


def admin_environment(path: str | None) -> dict[str, str]:
    """The admin's ``user_environment.yaml``: a mapping of names to strings; {} when absent.

    A file that is not such a mapping is reported in the log and ignored entry by entry,
    so one bad line does not stop every user's endpoint; one that someone other than root could
    change is ignored whole.
    """
    if not path:
        return {}
    import yaml

    try:
        problem = others_could_change(path)
        if problem:  # it would reach every user's endpoint: LD_PRELOAD, PATH, PYTHONPATH...
            log.error("ignoring %s: %s, so someone other than root could change it", path, problem)
            return {}
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
