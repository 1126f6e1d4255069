"""What a user endpoint proves and prepares before it runs anything a submitter sent.

It dies with its manager, checks that it holds exactly the mapped user's credentials in a
session of its own and cannot regain root (DESIGN.md, security invariant 2), and creates its
log and run directories as that user, naming the home directory when that fails.
"""

from __future__ import annotations

import logging
import os
import sys

from gce.config.uep import UepConfig, UepIdentity
from gce.transport.message import ErrorCode

log = logging.getLogger("gce.uep")


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the manager dies, even by SIGKILL (prctl(2) PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.warning("PR_SET_PDEATHSIG is unavailable: relying on the channel closing")
    if os.getppid() != parent or parent == 1:  # the manager died before we asked
        sys.exit(1)


class Refusal(Exception):
    """This process must not run: the reason (and an error code for the tasks) goes to the
    manager in a FATAL frame."""

    def __init__(self, reason: str, code: str = ErrorCode.ENDPOINT_FAILED) -> None:
        super().__init__(reason)
        self.code = code


def check_identity(expected: UepIdentity | None) -> None:
    """Refusal unless this process runs with exactly EXPECTED's uid, gid and groups, in a session of
    its own, with umask 077, and cannot become root again (after celery's platforms.py: prove the
    drop, do not assume it)."""
    if not expected:
        return
    uid, gid, groups = expected.uid, expected.gid, sorted(set(expected.groups))
    have = {"uid": (os.getuid(), os.geteuid()), "gid": (os.getgid(), os.getegid()),
            "groups": sorted(set(os.getgroups()))}
    want = {"uid": (uid, uid), "gid": (gid, gid), "groups": groups}
    for what in ("uid", "gid", "groups"):
        if have[what] != want[what]:
            raise Refusal(f"the user endpoint runs with {what} {have[what]} instead of {want[what]}: refusing to run")
    if os.getsid(0) != os.getpid():  # its own session: no terminal or job control of the manager's
        raise Refusal(f"the user endpoint runs in session {os.getsid(0)} instead of its own: refusing to run")
    umask = os.umask(0o077)
    if umask != 0o077:
        raise Refusal(f"the user endpoint started with umask {umask:04o} instead of 0077: refusing to run")
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise Refusal("the user endpoint could become root again after dropping its privileges: refusing to run")


def prepare_directories(conf: UepConfig) -> None:
    """Create the log and run directories (as this process's user); Refusal naming the home
    directory when it is missing or not writable."""
    try:
        for d in (os.path.dirname(conf.log_file or ""), conf.run_dir):
            if d:
                os.makedirs(d, mode=0o700, exist_ok=True)
        if conf.log_file:
            with open(conf.log_file, "a"):
                pass
    except OSError as e:
        home = conf.home
        if home and not os.path.isdir(home):
            raise Refusal(f"the home directory {home} of user {_user_name()} does not exist, so the user "
                          "endpoint has nowhere to keep its logs and files; ask the administrator to "
                          "create it") from None
        if home:
            raise Refusal(f"the home directory {home} of user {_user_name()} is not writable, so the user "
                          f"endpoint cannot keep its logs and files there: {e.strerror or e}") from None
        raise Refusal(f"cannot create the user endpoint's files: {e}") from None


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
